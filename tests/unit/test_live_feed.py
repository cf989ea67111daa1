"""The page's live feed draws once per change for every client, and pauses after a long
drawing so that a page never costs a busy worker more than a tenth of its time."""

from __future__ import annotations

import orjson
import pytest

from stream.serving.web import live
from stream.serving.web.live import LiveFeed


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def monotonic(self) -> float:
        return self.now


def test_sections_are_drawn_once_per_change_and_paused_after_a_slow_drawing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = _Clock()
    monkeypatch.setattr(live.time, "monotonic", clock.monotonic)
    drawn: list[int] = []

    def render() -> dict[str, str]:
        drawn.append(1)
        clock.now += 0.2  # a drawing that takes 200 ms (hundreds of thousands of keys)
        return {"north": f"<p>{len(drawn)}</p>"}

    feed = LiveFeed(render, lambda: 0)
    first = feed._payload(1)
    assert first is not None and orjson.loads(first)["sections"] == {"north": "<p>1</p>"}
    assert feed._payload(1) == first and len(drawn) == 1  # every client, one drawing
    clock.now += 1.0
    assert feed._payload(2) is None and len(drawn) == 1  # 10 x 200 ms not yet over
    clock.now += 1.5
    second = feed._payload(2)
    assert second is not None and len(drawn) == 2
    assert orjson.loads(second)["sections"] == {"north": "<p>2</p>"}


def test_a_page_load_reuses_the_last_drawing_of_the_same_data() -> None:
    drawn: list[int] = []
    version = [1]

    def render() -> dict[str, str]:
        drawn.append(1)
        return {"north": str(len(drawn))}

    feed = LiveFeed(render, lambda: version[0])
    assert feed._payload(1) is not None and len(drawn) == 1
    assert feed.sections() == {"north": "1"} and len(drawn) == 1  # the stream's drawing, reused
    version[0] = 2
    assert feed.sections() == {"north": "2"} and len(drawn) == 2
    assert feed.sections() == {"north": "2"} and len(drawn) == 2
