"""What the client sends is what the worker reads back, number for number."""

from __future__ import annotations

from hypothesis import given, settings

from schemas.decode import parse_event
from schemas.events import Event
from schemas.wire import event_json
from tests.unit.strategies import RATES, customer_events


@settings(max_examples=200, deadline=None)
@given(customer_events(max_size=10))
def test_event_json_round_trips_through_validation(events: list[Event]) -> None:
    for event in events:
        assert parse_event(event_json(event), expected_type=event.type, currencies=RATES) == event
        assert parse_event(event_json(event), expected_type=None, currencies=RATES) == event
