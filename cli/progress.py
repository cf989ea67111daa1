"""Progress of long work on stderr: a live bar on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["Progress"]


class Progress:
    """Counts work done out of `total`; shows the rate and the time left."""

    def __init__(self, total: int, unit: str, *, stream: TextIO | None = None, every: float = 0.2) -> None:
        self.total = total
        self.unit = unit
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        # Logs are read later, so plain lines come less often than a terminal redraws.
        self.every = every if self.tty else 5.0
        self.count = 0
        self.started = time.monotonic()
        self._shown = self.started

    def advance(self, n: int = 1) -> None:
        self.count += n
        now = time.monotonic()
        if now - self._shown >= self.every:
            self._shown = now
            self._show(now)

    def _line(self, now: float) -> str:
        elapsed = max(now - self.started, 1e-9)
        rate = self.count / elapsed
        left = (self.total - self.count) / rate if rate > 0 else 0.0
        share = self.count / self.total if self.total else 1.0
        return f"{self.count}/{self.total} {self.unit} ({share:4.0%}), {rate:,.0f}/s, ETA {left:4.1f}s"

    def _show(self, now: float) -> None:
        if self.tty:
            width = 30
            filled = int(width * (self.count / self.total if self.total else 1))
            self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {self._line(now)}\033[K")
        else:
            self.stream.write(self._line(now) + "\n")
        self.stream.flush()

    def done(self) -> None:
        now = time.monotonic()
        self._show(now)
        if self.tty:
            self.stream.write("\n")
        self.stream.flush()
