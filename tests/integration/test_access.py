"""Access (SPEC.md): with JOURNEY_API_TOKEN set, every data endpoint wants the token; the
page's sign-in form keeps a session cookie; workers forward the token to the owner."""

from __future__ import annotations

import asyncio
import http.client
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import pytest

from tests.fixtures.broker import ON_BOTH_BROKERS
from tests.fixtures.browser import PageProblems
from tests.integration.helpers import conformance_traffic, partition_of, wait_for_states

pytestmark = pytest.mark.integration

TOKEN = "correct horse battery staple 42"
RIGHT = {"Authorization": f"Bearer {TOKEN}"}
DATA_PATHS = [
    "/",
    "/customers/anyone",
    "/customers?top=3",
    "/impact",
    "/impact/campaign",
    "/impact/campaign/spring-sale",
    "/circle",
    "/live",
]


@dataclass
class _Answer:
    status: int
    headers: http.client.HTTPMessage
    body: str

    def getheader(self, name: str) -> str:
        return self.headers.get(name, "")

    def read(self) -> str:
        return self.body


def _request(
    url: str, method: str, path: str, body: str | None = None, headers: dict[str, str] | None = None
) -> _Answer:
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return _Answer(response.status, response.headers, response.read().decode())
    finally:
        connection.close()


async def test_every_data_endpoint_wants_the_token(journey_env: Any, conformance: Any) -> None:
    env = journey_env
    worker = env.worker(JOURNEY_API_TOKEN=TOKEN)
    await _assigned(worker, env.names.public("touchpoints"))
    for path in DATA_PATHS:
        for headers in (
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": TOKEN},
            {"Cookie": "journey_session=x"},
        ):
            response = _request(worker.url, "GET", path, headers=headers)
            assert response.status == 401, (path, headers)
            assert json.loads(response.read()) == {"error": _REFUSED}
            assert response.getheader("WWW-Authenticate") == 'Bearer realm="journey"'
        if path != "/live":  # an event stream does not end
            assert worker.get(path, RIGHT)[0] in (200, 404), path
    # Probes and Prometheus stay open; the page's assets hold no data.
    assert worker.get("/health")[0] == 200
    assert worker.get("/metrics")[0] == 200
    assert _request(worker.url, "GET", "/assets/journey.css").status == 200
    # The token is never written to the log, and there is no "API is open" warning.
    log = worker.log_path.read_text()
    assert TOKEN not in log and "JOURNEY_API_TOKEN is not set" not in log

    # The sign-in form: a wrong token is refused without saying why, then slowed down.
    refused = _request(worker.url, "POST", "/signin", urlencode({"token": "nope"}), _FORM)
    assert refused.status == 401 and "That token was not accepted." in refused.read()
    started = time.monotonic()
    for _ in range(4):
        _request(worker.url, "POST", "/signin", urlencode({"token": "nope"}), _FORM).read()
    assert time.monotonic() - started >= 0.7  # 0.25 s, then 0.5 s: repeated failures wait
    # The right one: a session cookie, HttpOnly and SameSite=Strict, that opens the data.
    signed = _request(worker.url, "POST", "/signin", urlencode({"token": TOKEN}), _FORM)
    assert signed.status == 303 and signed.getheader("Location") == "/"
    cookie = signed.getheader("Set-Cookie")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert TOKEN not in cookie  # the session is an HMAC of the token, not the token
    session = cookie.split(";", 1)[0]
    assert worker.get("/impact", {"Cookie": session})[0] == 200
    page = _request(worker.url, "GET", "/", headers={"Cookie": session, "Accept": "text/html"})
    assert page.status == 200 and "Sign out" in page.read()
    # A browser without a session gets the form, not JSON.
    form = _request(worker.url, "GET", "/", headers={"Accept": "text/html"})
    assert form.status == 401 and 'action="/signin"' in form.read()


async def _assigned(worker: Any, topic: str) -> None:
    """Until the worker owns partitions (before that, a lookup has no owner to ask: 503)."""
    deadline = time.monotonic() + 60
    while True:
        status, health = worker.get("/health")
        if status == 200 and health["assigned"].get(topic) and not health["rebalancing"]:
            return
        assert time.monotonic() < deadline, worker.log_tail()
        await asyncio.sleep(0.2)


async def test_an_open_worker_says_so_once(journey_env: Any) -> None:
    worker = journey_env.worker()
    deadline = time.monotonic() + 20
    while "JOURNEY_API_TOKEN is not set" not in worker.log_path.read_text():
        assert time.monotonic() < deadline, worker.log_tail()
        await asyncio.sleep(0.2)
    assert worker.log_path.read_text().count("JOURNEY_API_TOKEN is not set") == 1
    assert worker.get("/impact")[0] == 200


@ON_BOTH_BROKERS
async def test_workers_forward_the_token_to_the_owner(journey_env: Any, conformance: Any) -> None:
    env = journey_env
    first, second = env.worker(JOURNEY_API_TOKEN=TOKEN), env.worker(JOURNEY_API_TOKEN=TOKEN)
    touchpoints = env.names.public("touchpoints")

    def owned(worker: Any) -> set[int]:
        status, health = worker.get("/health")
        return set(health["assigned"].get(touchpoints, [])) if status == 200 else set()

    deadline = time.monotonic() + 60
    while not (owned(first) and owned(second) and not owned(first) & owned(second)):
        assert time.monotonic() < deadline, "the two workers never shared the partitions"
        await asyncio.sleep(0.2)
    keyed, misplaced, _ = conformance_traffic(
        conformance.events, conformance.raw_lines, env.names, env.partitions
    )
    await env.produce(keyed)
    for topic, partition, key, raw in misplaced:
        await env.produce_to_partition(topic, partition, key, raw)
    await wait_for_states(first, conformance.expected_states, headers=RIGHT)
    # A customer the second worker owns, asked of the first: forwarded, with the token.
    theirs = next(
        c
        for c in sorted(conformance.expected_states)
        if partition_of(c.encode(), env.partitions) in owned(second)
    )
    status, state = first.get(f"/customers/{quote(theirs, safe='')}", RIGHT)
    assert status == 200 and state["customer_id"] == theirs
    assert first.get(f"/customers/{quote(theirs, safe='')}")[0] == 401
    # The page's lookup goes to the owner too, with the session cookie.
    signed = _request(first.url, "POST", "/signin", urlencode({"token": TOKEN}), _FORM)
    session = signed.getheader("Set-Cookie").split(";", 1)[0]
    page = _request(first.url, "GET", f"/?customer={quote(theirs)}", headers={"Cookie": session})
    assert page.status == 200 and f'data-entry="customer/{theirs}"' in page.read()


async def test_signing_in_to_the_page_in_a_browser(journey_env: Any, chromium: Any) -> None:
    worker = journey_env.worker(JOURNEY_API_TOKEN=TOKEN)
    context = await chromium.new_context()
    page = await context.new_page()
    problems = PageProblems().watch(page)
    await page.goto(worker.url + "/")
    await page.fill("#token", "not the token")
    await page.click("button[type=submit]")
    assert "That token was not accepted." in await page.locator(".notice").inner_text()
    await page.fill("#token", TOKEN)
    await page.click("button[type=submit]")
    await page.wait_for_function("() => document.getElementById('live')?.dataset.state === 'live'")
    assert await page.locator('[data-entry="all/*"][data-field="customers"]').count() == 1
    (cookie,) = [c for c in await context.cookies() if c["name"] == "journey_session"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert await page.evaluate("() => document.cookie") == ""  # out of scripts' reach
    # The sign-in page itself answered 401 twice: the browser logs those, nothing else.
    assert all("401" in text for text in problems.console_errors), problems
    assert not problems.exceptions and not problems.dialogs


_FORM = {"Content-Type": "application/x-www-form-urlencoded"}
_REFUSED = "unauthorized: send the API token as `Authorization: Bearer <token>` (JOURNEY_API_TOKEN)"
