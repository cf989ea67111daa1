"""The collector's settings for bulk work are scoped: what was set before comes back."""

from __future__ import annotations

import gc

import pytest

from journey.collector import THRESHOLDS, fewer_collections


def test_bulk_work_collects_in_larger_steps_then_as_before() -> None:
    before = gc.get_threshold()
    with fewer_collections():
        assert gc.get_threshold() == THRESHOLDS
    assert gc.get_threshold() == before


def test_the_previous_thresholds_come_back_after_an_error() -> None:
    before = gc.get_threshold()
    with pytest.raises(OSError), fewer_collections():
        raise OSError("unreadable file")
    assert gc.get_threshold() == before
