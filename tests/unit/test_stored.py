"""The stored layout of a customer (`journey.stored`): read back, it is the state written,
whatever the events, their order and duplicates, and wherever the stores fall; and what a
store writes does not grow with the customer's history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from journey.customer import CustomerState, encode_state
from journey.identity import merge_states
from journey.journal import SEGMENT, Layout
from journey.scoring import ScoringRules, apply_event
from journey.stored import Written, decode_head, head_format, load, removed, segment_key, to_store
from schemas.events import Event, Purchase, Survey, Touchpoint
from tests.unit.strategies import RATES, customer_events, deliveries

RULES = ScoringRules(rates=RATES)
WINDOWS = (RULES.csat_window_us, RULES.cltv_window_us)
PROFILE = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def comparable(state: CustomerState) -> CustomerState:
    """The state with its heaps sorted: equal states may hold their heaps in other orders."""
    for heap in (state.window_surveys, state.sentiments, state.recent_money):
        heap.sort()
    return state


def fold(events: list[Event], state: CustomerState | None = None) -> CustomerState:
    state = state or CustomerState(events[0].customer_id)
    for event in events:
        apply_event(state, event, RULES)
    return state


class Store:
    """The customers and history tables of one worker, as dicts."""

    def __init__(self) -> None:
        self.heads: dict[str, bytes] = {}
        self.history: dict[str, bytes] = {}

    def write(self, customer_id: str, head: bytes | None, written: Written) -> None:
        if head is None:
            self.heads.pop(customer_id, None)
        else:
            self.heads[customer_id] = head
        for key, value in written:
            if value is None:
                self.history.pop(key, None)
            else:
                self.history[key] = value

    def store(self, state: CustomerState, prior: Layout | None) -> None:
        head, written = to_store(state, prior, *WINDOWS)
        self.write(state.customer_id, head, written)

    def load(self, customer_id: str) -> CustomerState:
        return load(self.heads[customer_id], self.history.get, *WINDOWS)


def expected_keys(state: CustomerState) -> set[str]:
    assert state.layout is not None
    return {
        segment_key(state.customer_id, name, number)
        for name, log in state.layout.logs()
        for number in range(log.lo, log.hi)
    }


@PROFILE
@given(st.data())
def test_a_state_read_back_is_the_state_written(data: st.DataObject) -> None:
    events = data.draw(customer_events(max_size=120))
    delivered = data.draw(deliveries(events))
    stores = data.draw(st.sets(st.integers(0, len(delivered) - 1)))
    store = Store()
    state = CustomerState(events[0].customer_id, layout=Layout())
    for index, event in enumerate(delivered):
        apply_event(state, event, RULES)
        if index in stores:
            store.store(state, state.layout)
            state = store.load(state.customer_id)
    store.store(state, state.layout)
    assert comparable(store.load(state.customer_id)) == comparable(fold(delivered))
    # Nothing is stored that the head does not name: deleted segments are deleted.
    assert set(store.history) == expected_keys(state)


def _long_history(customer_id: str, count: int, step: timedelta) -> list[Event]:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    events: list[Event] = []
    for index in range(count):
        common = {
            "event_id": f"{customer_id}-{index}",
            "customer_id": customer_id,
            "occurred_at": start + step * index,
        }
        if index % 3 == 0:
            events.append(Touchpoint(**common, moment="smot", channel="app", sentiment=Decimal("0.25")))
        elif index % 3 == 1:
            events.append(Purchase(**common, order_id=f"o-{index}", amount=Decimal("12.50"), currency="USD"))
        else:
            events.append(Survey(**common, score=Decimal(1 + index % 10), scale="1-10"))
    return events


def test_what_a_store_writes_does_not_grow_with_history() -> None:
    """One event more, stored, for customers of 10 and 1,000 prior events: the head stays
    about the same size, and a store writes at most one sealed segment per log."""
    sizes = {}
    for prior in (10, 1_000):
        events = _long_history("c", prior + SEGMENT, timedelta(hours=17))
        store = Store()
        state = fold(events[:prior], CustomerState("c", layout=Layout()))
        store.store(state, state.layout)
        heads, writes = [], []
        for event in events[prior:]:
            state = store.load("c")
            apply_event(state, event, RULES)
            head, written = to_store(state, state.layout, *WINDOWS)
            store.write("c", head, written)
            heads.append(len(head))
            writes.append(sum(len(value or b"") for _, value in written))
        sizes[prior] = (max(heads), sum(heads) / len(heads), max(writes))
        assert comparable(store.load("c")) == comparable(fold(events))
    assert sizes[1_000][0] < 2_048, sizes
    assert sizes[1_000][1] <= 1.5 * sizes[10][1], sizes
    assert sizes[1_000][2] <= 2 * sizes[10][2] + 1_000, sizes


def test_a_record_of_format_4_is_read_and_written_again_as_a_head() -> None:
    events = _long_history("c", 200, timedelta(hours=17))
    state = fold(events[:150])
    store = Store()
    store.heads["c"] = encode_state(state)  # as the previous release stored it
    read = store.load("c")
    assert read.layout is None and comparable(read) == comparable(fold(events[:150]))
    fold(events[150:], read)
    store.store(read, None)
    assert head_format(store.heads["c"]) == 5 and store.history
    assert comparable(store.load("c")) == comparable(fold(events))
    assert decode_head(store.heads["c"]).view() == fold(events).view()


def test_a_merged_state_is_written_whole_and_the_old_segments_deleted() -> None:
    store = Store()
    parts = []
    for customer_id, count in (("a", 100), ("b", 60)):
        state = fold(
            _long_history(customer_id, count, timedelta(days=1)), CustomerState(customer_id, layout=Layout())
        )
        store.store(state, state.layout)
        parts.append(store.load(customer_id))
    prior = parts[0].layout
    merged, _ = merge_states("a", parts, RULES)
    store.store(merged, prior)
    store.write("b", None, removed("b", parts[1].layout))
    assert set(store.history) == expected_keys(merged)
    read = store.load("a")
    assert comparable(read) == comparable(merged)
    assert read.alias_seen["b"] == {f"b-{index}" for index in range(60)}
    # A duplicate of the absorbed id's events is still one.
    assert apply_event(read, _long_history("b", 3, timedelta(days=1))[2], RULES).duplicate
