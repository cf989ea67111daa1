"""The page's live feed: Server-Sent Events with the page's live sections as they change.

Each client's stream looks a few times a second whether the impact entries or the
platinum customers moved (`FollowedTopic.changes`), and sends the sections rendered once
for everyone: however busy the stream, a page gets at most `1 / interval` updates a second,
each the newest. A comment line every `heartbeat` seconds tells the page the worker is there.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web

__all__ = ["LiveFeed"]


class LiveFeed:
    def __init__(
        self,
        render: Callable[[], dict[str, str]],
        version: Callable[[], int],
        *,
        interval: float = 0.5,
        heartbeat: float = 5.0,
    ) -> None:
        self._render = render
        self._version = version
        self.interval = interval
        self.heartbeat = heartbeat
        self._rendered: tuple[int, bytes] | None = None
        self._sections: tuple[int, dict[str, str]] | None = None
        # Drawing the sections reads every impact entry of the ranked dimensions: with
        # hundreds of thousands of referrers that takes a while, so the next drawing waits
        # ten times as long as the last one took, and the page never costs a busy worker
        # more than a tenth of its time, however many are watching.
        self._next_render = 0.0
        self._closing = asyncio.Event()
        self.clients = 0

    def sections(self) -> dict[str, str]:
        """The live sections as they are now, for a page load: drawn again only when the
        data changed since the last drawing (a page load never waits for the pause)."""
        version = self._version()
        if self._sections is None or self._sections[0] != version:
            self._sections = (version, self._render())
        return self._sections[1]

    def _payload(self, version: int) -> bytes | None:
        """The sections for `version` of the data, rendered once for every client; None
        while the last drawing's pause lasts (the client asks again)."""
        if self._rendered is not None and self._rendered[0] == version:
            return self._rendered[1]
        started = time.monotonic()
        if self._rendered is not None and started < self._next_render:
            return None
        sections = self._render()
        self._sections = (version, sections)
        at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self._rendered = (version, orjson.dumps({"sections": sections, "at": at}))
        self._next_render = time.monotonic() + 10 * (time.monotonic() - started)
        return self._rendered[1]

    async def close(self, *_: Any) -> None:
        """Ends every stream (the web server waits for open requests when it stops)."""
        self._closing.set()

    async def stream(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",  # a proxy in front must not hold events back
            }
        )
        await response.prepare(request)
        self.clients += 1
        seen = -1
        quiet_since = time.monotonic()
        try:
            # A reconnecting page waits this long (ms) after losing the stream.
            await response.write(b"retry: 2000\n\n")
            while not self._closing.is_set():
                version = self._version()
                payload = self._payload(version) if version != seen else None
                if payload is not None:
                    await response.write(b"event: sections\ndata: " + payload + b"\n\n")
                    seen, quiet_since = version, time.monotonic()
                elif time.monotonic() - quiet_since >= self.heartbeat:
                    await response.write(b"event: heartbeat\ndata: {}\n\n")
                    quiet_since = time.monotonic()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), self.interval)
        except (ConnectionResetError, asyncio.CancelledError):
            pass  # the page went away
        finally:
            self.clients -= 1
        return response
