"""The worker's erasure bookkeeping (`stream.processing.erasure.eraser.Eraser`) without a broker: what a
request records, logs and asks of the share joins."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import orjson

from journey.customer import CustomerState
from journey.erasure import decode_record, encode_record
from journey.scoring import ScoringRules, apply_event
from schemas.events import ErasureRequest, Share, Touchpoint
from stream.kafka.topics import TopicNames
from stream.processing.erasure.eraser import Eraser, ErasureWork
from tests.unit.strategies import BASE, RATES

RULES = ScoringRules(rates=RATES)


def _eraser() -> Eraser:
    return Eraser(SimpleNamespace(data={}), TopicNames(), RULES, {}, 1_000_000)


def _state() -> CustomerState:
    state = CustomerState("c-1")
    apply_event(
        state,
        Share(event_id="e-1", customer_id="c-1", occurred_at=BASE, share_id="s-1", channel="web"),
        RULES,
    )
    touchpoint = Touchpoint(
        event_id="e-2",
        customer_id="c-1",
        occurred_at=BASE + timedelta(days=1),
        moment="zmot",
        channel="web",
        referral_share_id="s-9",
    )
    apply_event(state, touchpoint, RULES)
    return state


def _request(request_id: str, days: int) -> ErasureRequest:
    return ErasureRequest(request_id=request_id, customer_id="c-1", requested_at=BASE + timedelta(days=days))


def _erase(eraser: Eraser, work: ErasureWork, request: ErasureRequest, state: CustomerState) -> Any:
    return asyncio.run(eraser.erase(work, request, state, 0))


def test_a_request_erases_asks_every_join_and_logs_once_all_have_answered() -> None:
    eraser, work = _eraser(), ErasureWork()
    fresh, horizon, replacement = _erase(eraser, work, _request("r-1", 5), _state())
    assert fresh and replacement is not None and replacement.version == 0  # nothing left
    assert sorted(orjson.loads(message)["share_id"] for _, message in work.forgets) == ["s-1", "s-9"]
    assert work.logs == []  # waits for both joins
    record = work.records[0]["c-1"]
    assert record.horizon_us == horizon and record.pending["r-1"].events_erased == 2
    retracted = [{"share_id": "s-1", "referrer_id": "c-1", "referred_id": "c-2"}]
    eraser.answer(
        work, {"request_id": "r-1", "customer_id": "c-1", "share_id": "s-1", "retracted": retracted}, 0
    )
    eraser.answer(
        work, {"request_id": "r-1", "customer_id": "c-1", "share_id": "s-1", "retracted": retracted}, 0
    )
    assert work.logs == []  # an answer delivered again counts once
    eraser.answer(work, {"request_id": "r-1", "customer_id": "c-1", "share_id": "s-9", "retracted": []}, 0)
    ((key, message),) = work.logs
    log = orjson.loads(message)
    assert (key, log["request_id"], log["events_erased"], log["links_retracted"]) == (
        b"c-1",
        "r-1",
        2,
        retracted,
    )
    assert log["ids"] == ["c-1"]
    assert not work.records[0]["c-1"].pending


def test_a_repeated_request_id_is_a_duplicate_whatever_its_time() -> None:
    eraser, work = _eraser(), ErasureWork()
    state = _state()
    _, horizon, _ = _erase(eraser, work, _request("r-1", 1), state)
    fresh, again, replacement = _erase(eraser, work, _request("r-1", 20), CustomerState("c-1"))
    assert not fresh and again == horizon and replacement is None
    assert decode_record(encode_record(work.records[0]["c-1"])).horizon_us == horizon
    fresh, later, _ = _erase(eraser, work, _request("r-2", 20), CustomerState("c-1"))
    assert fresh and later > horizon
    assert [orjson.loads(m)["request_id"] for _, m in work.logs] == ["r-2"]  # r-1 waits for its joins
