"""The platinum customers: the candidates' top equals sorting everyone, after any changes."""

from __future__ import annotations

from decimal import Decimal

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from journey.customer import CustomerState, encode_state
from journey.leaders import Leaders, ranked
from stream.serving.leaders import LeaderBoard

_CHANGES = st.lists(
    st.tuples(st.integers(0, 60), st.integers(-5, 500)),  # (customer, PPP in whole units)
    max_size=400,
)


def _brute_force(latest: dict[str, Decimal], count: int) -> list[str]:
    return [c for c, _ in sorted(latest.items(), key=lambda item: (-item[1], item[0]))][:count]


@given(_CHANGES, st.integers(1, 12))
@settings(max_examples=300, deadline=None)
def test_top_is_exact_unless_a_rebuild_is_asked_for(changes: list[tuple[int, int]], keep: int) -> None:
    leaders = Leaders(keep=keep + 3)
    latest: dict[str, Decimal] = {}
    for customer, ppp in changes:
        customer_id = f"c-{customer:03d}"
        latest[customer_id] = Decimal(ppp)
        leaders.offer(customer_id, Decimal(ppp), customer_id)
        if leaders.needs_rebuild(keep):
            # What the holder does: every customer offered again, to fresh candidates.
            leaders = Leaders(keep=keep + 3)
            for other, value in latest.items():
                leaders.offer(other, value, other)
            assert not leaders.needs_rebuild(keep)
        assert leaders.top(keep) == _brute_force(latest, keep)


def test_a_customer_below_the_floor_costs_no_view() -> None:
    leaders = Leaders(keep=2)
    for customer_id, ppp in (("a", 10), ("b", 20), ("c", 30)):
        leaders.offer(customer_id, Decimal(ppp), customer_id)
    assert leaders.floor == Decimal(10)

    def fail() -> str:
        raise AssertionError("a view was built for a customer outside the candidates")

    assert leaders.offer("d", Decimal(5), fail) is False
    assert leaders.top(2) == ["c", "b"]


def test_partitions_are_ranked_together_by_ppp_then_id() -> None:
    views = [
        {"customer_id": "b", "ppp": 10.5},
        {"customer_id": "a", "ppp": 10.5},
        {"customer_id": "c", "ppp": 99.0},
        {"customer_id": "d", "ppp": -1.0},
    ]
    assert [v["customer_id"] for v in ranked(views, 3)] == ["c", "a", "b"]


async def test_the_board_rebuilds_owned_partitions_from_the_store() -> None:
    store: dict[str, bytes] = {}
    for number in range(50):
        state = CustomerState(f"c-{number}", version=1, ppp=Decimal(number))
        store[state.customer_id] = encode_state(state)
    store["linked-only"] = encode_state(CustomerState("linked-only", version=0, ppp=Decimal(1000)))
    board = LeaderBoard(store, partitions=4)
    board.reset()
    board.assign(frozenset({0, 1, 2, 3}))
    assert board.stale() == {0, 1, 2, 3}
    await board.rebuild(board.stale())
    published = board.take_dirty()
    assert set(published) == {0, 1, 2, 3}

    everyone = [view for raw in published.values() for view in orjson.loads(raw)["top"]]
    assert [v["customer_id"] for v in ranked(everyone, 10)] == [f"c-{n}" for n in range(49, 39, -1)]
    # A change after the rebuild reaches the partition's candidates and is published once.
    partition = next(p for p, raw in published.items() if b'"c-49"' in raw)
    top = CustomerState("c-49", version=2, ppp=Decimal(5000))
    board.offer(partition, top)
    assert list(board.take_dirty()) == [partition]
    assert board.take_dirty() == {}
    # An erased customer leaves its partition's top at the next publication.
    del store["c-49"]
    board.discard(partition, "c-49")
    again = board.take_dirty()
    assert list(again) == [partition] and b'"c-49"' not in again[partition]
    everyone = [view for raw in {**published, **again}.values() for view in orjson.loads(raw)["top"]]
    assert ranked(everyone, 1)[0]["customer_id"] == "c-48"
