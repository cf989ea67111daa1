"""The journey page in a real browser (Debian's chromium, headless), against a live worker
fed the public `impact/` set: what the page shows is read back from its `data-*`
attributes and compared with the expected entries and states."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from typing import Any

import pytest

from tests.fixtures.browser import PageProblems, screenshot_path
from tests.fixtures.conformance import impact_mismatches
from tests.integration.helpers import publish_conformance, wait_for_impact, wait_for_platinum, wait_for_states
from tests.integration.outputs import assert_outputs_valid
from tests.integration.test_commands import journey

pytestmark = pytest.mark.integration

_DIMENSIONS = ("campaign", "channel", "referral_channel", "referrer")
_XSS = '<script>window.__xss = 1</script><img src="x" onerror="window.__xss = 2">'

# Every figure of the page: (data-entry, data-field) -> the value, as the API gives it.
_READ_FIGURES = """() => Array.from(document.querySelectorAll('[data-entry][data-field]'))
    .map(e => [e.dataset.entry, e.dataset.field, JSON.parse(e.dataset.value)])"""


async def _figures(page: Any) -> dict[tuple[str, str], Any]:
    return {(entry, field): value for entry, field, value in await page.evaluate(_READ_FIGURES)}


def _entries_on_page(figures: dict[tuple[str, str], Any]) -> list[dict[str, Any]]:
    """The impact entries the page shows, rebuilt from its figures (`moments.zmot` nested)."""
    entries: dict[str, dict[str, Any]] = {}
    for (entry, field), value in figures.items():
        # Cards, arrows, the second moment's summary; and `recovery`, which the impact set
        # predates (the second moment's own test reads those).
        if (
            entry.startswith(("customer/", "recovery/"))
            or entry == "second_moment"
            or field.startswith("onward.")
        ):
            continue
        dimension, key = entry.split("/", 1)
        shown = entries.setdefault(entry, {"dimension": dimension, "key": key})
        if field.startswith("moments."):
            shown.setdefault("moments", {})[field.split(".", 1)[1]] = value
        else:
            shown[field] = value
    return list(entries.values())


def _shown_fields(expected: dict[str, Any], shown: dict[str, Any]) -> dict[str, Any]:
    """The expected entry, cut to the fields the page shows of it."""
    return {name: value for name, value in expected.items() if name in shown or name in ("dimension", "key")}


def _top(entries: list[dict[str, Any]], dimension: str, count: int) -> list[dict[str, Any]]:
    mine = [e for e in entries if e["dimension"] == dimension]
    return sorted(mine, key=lambda e: (-Decimal(str(e["attributed_ppp"])), e["key"]))[:count]


async def _wait_for(page: Any, script: str, arg: Any = None, timeout_s: float = 15) -> None:
    await page.wait_for_function(script, arg=arg, timeout=timeout_s * 1000)


async def test_the_page_shows_the_impact_set_live(
    journey_env: Any, impact_conformance: Any, chromium: Any
) -> None:
    env = journey_env
    worker = env.worker()
    await publish_conformance(env, impact_conformance)
    await wait_for_states(worker, impact_conformance.expected_states)
    expected = impact_conformance.expected_impact
    await wait_for_impact(env, [worker], expected)

    # The platinum customers of the API first: every partition's top, ranked as replay would.
    platinum_states = await wait_for_platinum(worker, impact_conformance.expected_states)
    states = [impact_conformance.expected_states[s["customer_id"]] for s in platinum_states]
    assert worker.get("/customers?top=11")[0] == 400

    context = await chromium.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    problems = PageProblems().watch(page)
    response = await page.goto(worker.url + "/")
    assert response is not None and response.status == 200
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "'unsafe-inline'" not in policy
    await _wait_for(page, "() => document.getElementById('live').dataset.state === 'live'")

    # Every entry the page shows is an expected one, with the same figures; and it shows
    # the `all` entry and the top 10 of every dimension by attributed PPP.
    figures = await _figures(page)
    shown = _entries_on_page(figures)
    by_key = {(e["dimension"], e["key"]): e for e in expected}
    want_keys = {("all", "*")} | {
        (e["dimension"], e["key"]) for d in _DIMENSIONS for e in _top(expected, d, 10)
    }
    assert {(e["dimension"], e["key"]) for e in shown} == want_keys
    cut = [_shown_fields(by_key[(e["dimension"], e["key"])], e) for e in shown]
    assert impact_mismatches(cut, shown) == []
    checked = {field for entry in shown for field in entry}
    assert {
        "ppp",
        "attributed_ppp",
        "conversion_uplift",
        "csat_uplift",
        "harms_experience",
        "k_factor",
    } <= checked
    # The circle's moments and arrows are the `all` entry's, as `/circle` gives them.
    circle = worker.get("/circle")[1]
    for moment, count in by_key[("all", "*")]["moments"].items():
        assert figures[("all/*", f"moments.{moment}")] == count
    for moment, share in circle["onward"].items():
        assert figures[("all/*", f"onward.{moment}")] == share

    # Flags in words: every entry that harms the experience says so on its row.
    for entry in shown:
        if entry["dimension"] != "all" and by_key[(entry["dimension"], entry["key"])]["harms_experience"]:
            flag = page.locator(
                f'[data-entry="{entry["dimension"]}/{entry["key"]}"][data-field="harms_experience"]'
            )
            assert "Converts but satisfies less" in await flag.inner_text()

    # The platinum customers, with the figures of their states.
    platinum = await page.eval_on_selector_all(
        "#platinum tbody th a", "links => links.map(a => a.textContent)"
    )
    assert platinum == [s["customer_id"] for s in states]
    for state in states:
        entry = f"customer/{state['customer_id']}"
        for field in ("ppp", "csat", "cltv", "referred_by"):
            assert figures[(entry, field)] == state[field], (entry, field)

    # A moment says what it is when focused from the keyboard.
    await page.focus(".moment.fmot")
    assert await page.locator(".moment.fmot .explain").is_visible()

    # Live: a new customer changes the figures on the open page, without a reload.
    await page.evaluate("() => { window.__stayed = true }")
    before = figures[("all/*", "customers")]
    newcomer = [
        _event("touchpoint", "live-1", "live customer", moment="zmot", channel="search", campaign=_XSS),
        _event("purchase", "live-2", "live customer", amount="120.00", currency="USD"),
    ]
    await env.produce(
        [(env.names.for_type(e["type"]), e["customer_id"].encode(), json.dumps(e).encode()) for e in newcomer]
    )
    await _wait_for(
        page,
        '(n) => document.querySelector(\'[data-entry="all/*"][data-field="customers"]\').dataset.value == n',
        before + 1,
    )
    assert await page.evaluate("() => window.__stayed") is True

    # An untrusted campaign name shows as text and runs nothing.
    await _wait_for(
        page, '(key) => !!document.querySelector(`[data-entry="campaign/${CSS.escape(key)}"]`)', _XSS
    )
    assert _XSS in await page.locator("#impact-campaign").inner_text()
    assert await page.evaluate("() => window.__xss") is None
    await page.screenshot(path=screenshot_path("journey-page-1280"), full_page=True)

    # Look up a customer: its card, with the state's figures, and its referrer's card by a link.
    referred = next(s for s in impact_conformance.expected_states.values() if s["referred_by"])
    await page.fill("#customer", referred["customer_id"])
    await page.click(".lookup button")
    await page.wait_for_selector(".card")
    card = await _figures(page)
    entry = f"customer/{referred['customer_id']}"
    for field in (
        "ppp",
        "csat",
        "cltv",
        "cltv_365d",
        "campaigns",
        "channels",
        "referred_by",
        "referral_channels",
    ):
        assert card[(entry, field)] == referred[field], field
    await page.click(f'.card [data-field="referred_by"] a >> text="{referred["referred_by"][0]}"')
    await page.wait_for_selector(f'.card [data-entry="customer/{referred["referred_by"][0]}"]')
    await page.fill("#customer", "nobody-at-all")
    await page.click(".lookup button")
    assert "No customer \u201cnobody-at-all\u201d" in await page.locator(".notice").inner_text()
    assert problems.none(), problems

    # A phone: nothing wider than the screen.
    phone = await chromium.new_context(viewport={"width": 375, "height": 812})
    small = await phone.new_page()
    small_problems = PageProblems().watch(small)
    await small.goto(worker.url + "/")
    await _wait_for(small, "() => document.getElementById('live').dataset.state === 'live'")
    assert await small.evaluate("() => document.documentElement.scrollWidth") <= 375
    await small.screenshot(path=screenshot_path("journey-page-375"), full_page=True)
    assert small_problems.none(), small_problems

    # A wide screen, and a browser with scripts off: the first paint is the whole page.
    wide = await chromium.new_context(viewport={"width": 1920, "height": 1080})
    large = await wide.new_page()
    await large.goto(worker.url + "/")
    assert await large.evaluate("() => document.documentElement.scrollWidth") <= 1920
    still = await chromium.new_context(java_script_enabled=False)
    plain = await still.new_page()
    await plain.goto(worker.url + "/")
    assert await plain.locator("#live").get_attribute("data-state") == "snapshot"  # no script ran
    cells = plain.locator('[data-entry="all/*"][data-field="customers"]')
    assert await cells.count() == 1 and await cells.get_attribute("data-value") == str(before + 1)

    # The page and its assets are small (the issue allows 150 KB in all).
    html = await (await small.request.get(worker.url + "/")).text()
    sizes = [len(await (await small.request.get(worker.url + path)).body()) for path in _asset_paths(html)]
    assert sum(sizes) < 150_000, sizes

    # The worker goes away: the open page says so (and keeps retrying), it does not go blank.
    worker.kill()
    await _wait_for(small, "() => document.getElementById('live').dataset.state === 'lost'")
    assert "lost" in await small.locator("#live").inner_text()
    assert await small.locator('[data-entry="all/*"][data-field="customers"]').count() == 1


def _asset_paths(html: str) -> list[str]:
    paths = ["/"]
    for marker in ('href="/assets/', 'src="/assets/'):
        start = 0
        while (found := html.find(marker, start)) >= 0:
            begin = found + len(marker.split('"')[0]) + 1
            end = html.index('"', begin)
            paths.append(html[begin:end])
            start = end
    return paths


def _event(kind: str, event_id: str, customer_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "type": kind,
        "event_id": event_id,
        "customer_id": customer_id,
        "occurred_at": "2026-05-30T10:00:00Z",
        **fields,
    }


async def test_the_page_shows_the_second_moment(
    journey_env: Any, recovery_conformance: Any, chromium: Any
) -> None:
    """The `recovery/` set through a worker: every state's `smot_failures` and `recovery` over
    HTTP, the `recovery` entries on the topic and over HTTP, the customers at risk, and the
    panel, the SMOT node and a card as headless Chromium shows them."""
    env = journey_env
    worker = env.worker()
    await publish_conformance(env, recovery_conformance)
    states = await wait_for_states(worker, recovery_conformance.expected_states)
    assert {s["recovery"] for s in states.values()} >= {"smooth", "recovered", "unrecovered"}
    await wait_for_impact(env, [worker], recovery_conformance.expected_impact)

    want = recovery_conformance.expected_states.values()
    at_risk = sum(1 for s in want if s["smot_failures"] >= 2 and s["recovery"] == "unrecovered")
    assert at_risk > 0
    expected = {e["key"]: e for e in recovery_conformance.expected_impact if e["dimension"] == "recovery"}
    # The customers at risk travel with the platinum customers (published once a second).
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        status, ranking = worker.get("/impact/recovery")
        if status == 200 and ranking["second_moment"]["at_risk"] == at_risk:
            break
        assert asyncio.get_running_loop().time() < deadline, ranking
        await asyncio.sleep(0.5)
    moment = ranking["second_moment"]
    assert moment["failed"] == expected["recovered"]["customers"] + expected["unrecovered"]["customers"]
    assert moment["recovered"] == expected["recovered"]["customers"]
    assert moment["smooth"] == expected["smooth"]["customers"]
    assert "less in mean PPP than smooth ones" in moment["verdict"]  # 229.53 against 1429.49
    circle = worker.get("/circle")[1]
    assert (circle["smot_failed"], circle["smot_recovered"]) == (moment["failed"], moment["recovered"])

    shown = journey(env.env, "impact", "recovery", "--url", worker.url)
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout.decode()
    assert "recovery: top 3 of 3" in text and f"at risk: {at_risk} customers" in text
    assert f"{moment['recovered']} of {moment['failed']} customers with a SMOT failure recovered" in text

    context = await chromium.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    problems = PageProblems().watch(page)
    await page.goto(worker.url + "/")
    await _wait_for(page, "() => document.getElementById('live').dataset.state === 'live'")
    await _wait_for(
        page,
        '(n) => document.querySelector(\'#second [data-entry="second_moment"][data-field="at_risk"]\')'
        ".dataset.value == n",
        at_risk,
    )
    figures = await _figures(page)
    for key, entry in expected.items():
        for field in ("customers", "mean_ppp", "conversion", "mean_csat"):
            assert figures[(f"recovery/{key}", field)] == entry[field], (key, field)
    for field in ("failed", "recovered", "recovery_rate", "at_risk", "recovered_vs_smooth", "verdict"):
        assert figures[("second_moment", field)] == moment[field], field
    panel = await page.locator("#second").inner_text()
    assert moment["verdict"] in panel and "customers at risk" in panel
    node = await page.locator(".moment.smot .failures").text_content() or ""
    assert f"{moment['failed']} failed" in node and f"{moment['recovered']} recovered" in node
    await page.screenshot(path=screenshot_path("second-moment-1280"), full_page=True)

    # A customer's card says how many failures it had and whether it was recovered.
    risky = next(s for s in want if s["smot_failures"] >= 2 and s["recovery"] == "unrecovered")
    await page.fill("#customer", risky["customer_id"])
    await page.click(".lookup button")
    await page.wait_for_selector(".card")
    card = await _figures(page)
    entry = f"customer/{risky['customer_id']}"
    assert card[(entry, "smot_failures")] == risky["smot_failures"]
    assert card[(entry, "recovery")] == "unrecovered"
    assert "Unrecovered" in await page.locator(".card").inner_text()
    assert problems.none(), problems
    counts = await assert_outputs_valid(env)
    assert counts["impact"] and counts["ppp-updates"], counts


async def test_the_page_finds_a_person_by_any_of_its_ids(
    broker: Any, tmp_path: Any, identity_conformance: Any, chromium: Any
) -> None:
    """The `identity/` set through a worker: looking up an anonymous id on the page shows the
    person's card, under its canonical id, with every alias; `journey tail merges` prints
    the merges."""
    from tests.fixtures.broker import make_env

    fx = identity_conformance
    env = await make_env(broker, tmp_path, fx.events_path.parent / "fx.json")
    worker = env.worker()
    try:
        await publish_conformance(env, fx)
        await wait_for_states(worker, fx.expected_states)
        person = max(fx.expected_states.values(), key=lambda state: len(state["aliases"]))
        alias = person["aliases"][-1]
        context = await chromium.new_context(viewport={"width": 1280, "height": 900})
        page = await context.new_page()
        problems = PageProblems().watch(page)
        await page.goto(worker.url + "/")
        await page.fill("#customer", alias)
        await page.click(".lookup button")
        await page.wait_for_selector(".card")
        card = await _figures(page)
        entry = f"customer/{person['customer_id']}"
        assert card[(entry, "aliases")] == person["aliases"]
        assert card[(entry, "ppp")] == person["ppp"]
        text = await page.locator(".card").inner_text()
        assert f"Customer {person['customer_id']}" in text and alias in text
        assert problems.none(), problems

        tailed = journey(env.env, "tail", "merges", "--from-beginning", "--limit", "3")
        assert tailed.returncode == 0, tailed.stderr
        merges = [json.loads(line) for line in tailed.stdout.decode().splitlines()]
        assert len(merges) == 3 and all(m["merged_ids"] and "links_retracted" in m for m in merges)
    finally:
        worker.kill()
