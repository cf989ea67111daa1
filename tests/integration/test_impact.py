"""Impact through a live worker: the public `impact/` set in, the `impact` topic and every
impact HTTP answer read back and compared with the expected entries."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import quote

import pytest

from schemas.outputs import CustomerState, ImpactEntry
from tests.fixtures.broker import ON_BOTH_BROKERS
from tests.integration.helpers import (
    metric_sum,
    metric_values,
    publish_conformance,
    wait_for_impact,
    wait_for_states,
)
from tests.integration.outputs import assert_outputs_valid
from tests.integration.test_commands import journey

pytestmark = pytest.mark.integration


@ON_BOTH_BROKERS
async def test_impact_set_through_a_worker(journey_env: Any, impact_conformance: Any) -> None:
    env = journey_env
    worker = env.worker()
    await publish_conformance(env, impact_conformance)

    # The customers' keys, the referral ones included (they come from links made elsewhere).
    await wait_for_states(worker, impact_conformance.expected_states)
    await wait_for_impact(env, [worker], impact_conformance.expected_impact)

    # Every key round-trips through a URL, percent-encoded (`/`, spaces, non-ASCII).
    for want in impact_conformance.expected_impact:
        if want["dimension"] == "all":
            continue
        status, body = worker.get(f"/impact/{want['dimension']}/{quote(want['key'], safe='')}")
        assert status == 200, (want["key"], body)
        assert (body["dimension"], body["key"], body["customers"]) == (
            want["dimension"],
            want["key"],
            want["customers"],
        )
    status, body = worker.get("/impact/campaign/b2b/enterprise")  # a `/` left as it is
    assert status == 200 and body["key"] == "b2b/enterprise"

    # The command line shows the same, as a person reads it, and as JSON for scripts.
    shown = journey(env.env, "impact", "campaign", "--url", worker.url)
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout.decode()
    assert "b2b/enterprise" in text and "été 2026" in text
    assert "converts but satisfies less" in text and "past the 6% line" in text
    assert "association, not proof of cause" in text
    as_json = journey(env.env, "impact", "campaign", "--json", "--url", worker.url)
    assert json.loads(as_json.stdout) == worker.get("/impact/campaign?top=20")[1]
    one = journey(env.env, "impact", "campaign", "été 2026", "--json", "--url", worker.url)
    assert json.loads(one.stdout)["key"] == "été 2026"
    everything = journey(env.env, "impact", "--url", worker.url)
    assert everything.returncode == 0 and "referral_channel: top" in everything.stdout.decode()

    # A `%` (and a `/`) in a key, percent-encoded in the URL and as it is in the topic key.
    odd = {
        "type": "touchpoint",
        "event_id": "odd-1",
        "customer_id": "odd customer é",
        "occurred_at": "2026-05-01T10:00:00Z",
        "moment": "zmot",
        "channel": "search",
        "campaign": "50% off/now",
    }
    await env.produce(
        [(env.names.for_type("touchpoint"), odd["customer_id"].encode(), json.dumps(odd).encode())]
    )
    path = "/impact/campaign/" + quote("50% off/now", safe="")
    assert path.endswith("50%25%20off%2Fnow")
    for _ in range(100):
        status, body = worker.get(path)
        if status == 200:
            break
        await asyncio.sleep(0.2)
    assert (status, body["key"], body["customers"]) == (200, "50% off/now", 1), body
    status, body = worker.get("/customers/" + quote("odd customer é", safe=""))
    assert status == 200 and body["campaigns"] == ["50% off/now"]

    records = await env.read_topic(env.names.impact)
    assert b"campaign/50% off/now" in {r.key for r in records}
    for record in records:
        ImpactEntry.model_validate_json(record.value)
    status, state = worker.get("/customers/cust-2-00001")
    CustomerState.model_validate(state)
    everyone = [r for r in records if r.key == b"all/*"]
    # Changes are summed per chunk of a batch, and entries sent once per batch: the hot `all`
    # entry gets far fewer messages than there were events.
    assert 0 < len(everyone) < len(impact_conformance.raw_lines) / 4
    values = metric_values(worker.get("/metrics")[1])
    assert metric_sum(values, "journey_impact_updates_total") == len(records)
    counts = await assert_outputs_valid(env)
    assert counts["impact"] == len(records) and counts["referral-links"], counts


async def test_bad_impact_requests_get_a_json_reason(journey_env: Any) -> None:
    worker = journey_env.worker()
    status, body = worker.get("/impact")
    assert status == 200 and body["customers"] == 0 and body["dimensions"]["campaign"] == 0
    for path, code, words in [
        ("/impact/planet", 404, "unknown dimension"),
        ("/impact/planet/earth", 404, "unknown dimension"),
        ("/impact/campaign/never-ran", 404, "never-ran"),
        ("/impact/campaign?top=ten", 400, "whole number"),
        ("/impact/campaign?top=-1", 400, "from 0 to 1000"),
        ("/impact/campaign?top=1001", 400, "from 0 to 1000"),
    ]:
        status, body = worker.get(path)
        assert status == code, path
        assert words in body["error"], (path, body)
    status, body = worker.get("/impact/referrer?top=0")
    assert status == 200 and body == {"dimension": "referrer", "entries": 0, "top": []}
