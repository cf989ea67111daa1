"""The worker's JSON interface: customers, impact, the circle, health and metrics.

The page (`stream.serving.web.page`) is drawn from these same answers (`Answers`), so that it
shows no figure the JSON endpoints do not also give.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import faust
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from journey.customer import RECOVERY_KEYS
from journey.identity import decode_id_record
from journey.impact import DIMENSIONS
from journey.leaders import LEADERS
from journey.recovery import second_moment
from journey.stored import decode_head
from stream.kafka.silence import seconds_since_a_broker_answered
from stream.serving.impact_view import ImpactView
from stream.serving.leaders import LeadersView
from stream.serving.metrics import JourneyMetrics

__all__ = ["MAX_TOP", "Answers", "held_state", "person_of", "register_api"]

MAX_TOP = 1000
# A worker hears from a broker at least every heartbeat (a second): this long without an
# answer is a cut connection or a broker down, not a quiet stream.
BROKER_SILENCE_LIMIT = 10.0
_DEFAULT_TOP = 20


def _top(raw: str | None, default: int, most: int) -> int | str:
    """The `top` query parameter, or the one-line reason it is refused."""
    if raw is None:
        return default
    try:
        top = int(raw)
    except ValueError:
        return f"top must be a whole number from 0 to {most}, not {raw!r}"
    if not 0 <= top <= most:
        return f"top must be from 0 to {most}, not {top}"
    return top


@dataclass(frozen=True, slots=True)
class Answers:
    """What the JSON endpoints answer, for them and for the page."""

    impact: ImpactView
    leaders: LeadersView

    def summary(self) -> dict[str, Any]:
        return self.impact.summary()

    def circle(self, moment: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The circle, and the SMOT node's failures and recoveries (of `moment`, the second
        moment already at hand, when given)."""
        if moment is None:
            moment = self.second_moment()
        return {
            **self.impact.circle(),
            "smot_failed": moment["failed"],
            "smot_recovered": moment["recovered"],
        }

    def ranking(self, dimension: str, top: int) -> dict[str, Any]:
        ranking = self.impact.ranking(dimension, top)
        if dimension == "recovery":
            ranking["second_moment"] = self.second_moment()
        return ranking

    def recovery_entries(self) -> dict[str, dict[str, Any] | None]:
        """The `recovery` entries with their comparisons, by key (None: no customer)."""
        return {key: self.impact.entry("recovery", key) for key in RECOVERY_KEYS}

    def second_moment(self, entries: Mapping[str, Mapping[str, Any] | None] | None = None) -> dict[str, Any]:
        """The `recovery` entries (`entries`, when already at hand) side by side, with the
        customers at risk."""
        return second_moment(self.recovery_entries() if entries is None else entries, self.leaders.at_risk())

    def platinum(self, top: int = LEADERS) -> list[dict[str, Any]]:
        return self.leaders.top(top)

    def version(self) -> int:
        """Grows whenever anything these answers come from changed."""
        return self.impact.changes + self.leaders.changes


def held_state(customers: Any, customer_id: str) -> dict[str, Any] | None:
    """The customer's state as `GET /customers/{id}` answers it, from this worker's table."""
    held: bytes | None = customers.get(customer_id)
    state = None if held is None else decode_head(held)
    # A state of version 0 holds a referral link whose customer's events are yet to come.
    if state is None or state.version == 0:
        return None
    return state.view()


def person_of(persons: Any, customer_id: str) -> str | None:
    """Where the person of an id that stopped being canonical went (SPEC.md, "Identity"),
    from this worker's `persons` table; None for any other id."""
    held: bytes | None = None if persons is None else persons.get(customer_id)
    return None if held is None else decode_id_record(held).to


# How many ids a lookup follows before it gives up: a person moves rarely, and a chain
# longer than this is a merge still on its way.
_MOST_HOPS = 8


def _owned_here(app: faust.App, customers: Any, customer_id: str) -> bool:
    router: Any = app.router
    try:
        owner = router.key_store(customers.name, customer_id)
    except KeyError:
        return False
    return bool(router._urlident(owner) == router._urlident(app.conf.canonical_url))  # noqa: SLF001  # Faust's own test


async def _ask_owner(
    app: faust.App, customers: Any, web: View, request: Request, customer_id: str
) -> Response:
    """`GET /customers/{customer_id}` as its owner answers it, passing the caller's headers
    (the token) on: an alias's lookup goes on to its person's canonical id."""
    router: Any = app.router
    try:
        owner = router.key_store(customers.name, customer_id)
    except KeyError:
        return web.json({"error": "no worker owns that customer yet; try again"}, status=503)
    url = owner.with_path(f"/customers/{quote(customer_id, safe='')}")
    headers = {name: value for name, value in request.headers.items() if name.lower() == "authorization"}
    async with app.http_client.get(url, headers=headers) as response:
        return web.text(await response.text(), content_type=response.content_type, status=response.status)


def register_api(
    app: faust.App, customers: Any, metrics: JourneyMetrics, answers: Answers, persons: Any = None
) -> None:
    """`GET /customers/{id}` (asks the owning worker; an alias answers its person's state),
    `GET /customers?top=N`, `GET /impact...` and `GET /circle` (from this worker's view of
    every partition), `/health`, `/metrics`."""
    # Every JSON route in one place (86 lines), each a few lines over the same views: the
    # whole HTTP API reads as one list.

    @app.page("/customers/{customer_id}")
    @app.table_route(table=customers, match_info="customer_id")
    async def customer(web: View, request: Request, customer_id: str) -> Response:
        state = held_state(customers, customer_id)
        hops = 0
        while state is None and hops < _MOST_HOPS and (to := person_of(persons, customer_id)) is not None:
            hops += 1
            if not _owned_here(app, customers, to):
                return await _ask_owner(app, customers, web, request, to)
            customer_id, state = to, held_state(customers, to)  # held here: no request needed
        if state is None:
            return web.json({"error": f"unknown customer {customer_id!r}"}, status=404)
        return web.json(state)

    @app.page("/customers")
    async def platinum(web: View, request: Request) -> Response:
        top = _top(request.query.get("top"), LEADERS, LEADERS)
        if isinstance(top, str):
            return web.json({"error": top}, status=400)
        return web.json({"top": answers.platinum(top)})

    def unknown_dimension(web: View, dimension: str) -> Response:
        known = ", ".join(DIMENSIONS)
        return web.json({"error": f"unknown dimension {dimension!r} (one of {known})"}, status=404)

    @app.page("/impact")
    async def impact_summary(web: View, request: Request) -> Response:
        return web.json(answers.summary())

    @app.page("/circle")
    async def circle(web: View, request: Request) -> Response:
        return web.json(answers.circle())

    @app.page("/impact/{dimension}")
    async def impact_ranking(web: View, request: Request, dimension: str) -> Response:
        if not ImpactView.known(dimension):
            return unknown_dimension(web, dimension)
        top = _top(request.query.get("top"), _DEFAULT_TOP, MAX_TOP)
        if isinstance(top, str):
            return web.json({"error": top}, status=400)
        return web.json(answers.ranking(dimension, top))

    # `{key:.+}`: a key may hold `/` (percent-encoded or not); aiohttp decodes the rest.
    @app.page("/impact/{dimension}/{key:.+}")
    async def impact_entry(web: View, request: Request, dimension: str, key: str) -> Response:
        if not ImpactView.known(dimension):
            return unknown_dimension(web, dimension)
        entry = answers.impact.entry(dimension, key)
        if entry is None:
            return web.json({"error": f"no {dimension} {key!r} in impact (yet)"}, status=404)
        return web.json(entry)

    @app.page("/health")
    async def health(web: View, request: Request) -> Response:
        assigned: dict[str, list[int]] = {}
        for tp in app.consumer.assignment() if app.consumer else ():
            assigned.setdefault(tp.topic, []).append(tp.partition)
        silence = seconds_since_a_broker_answered()
        transactions = getattr(app, "transactions", None)
        return web.json(
            {
                # 200 and "ok" while the worker itself is well, brokers or not: a probe that
                # restarted workers for a broker's outage would only add rebalances to it.
                "status": "ok",
                "rebalancing": bool(app.rebalancing),
                "assigned": {topic: sorted(parts) for topic, parts in sorted(assigned.items())},
                # Kafka transactions (JOURNEY_EXACTLY_ONCE), and how many committed so far.
                "processing": "at_least_once" if transactions is None else "exactly_once",
                "transactions_committed": None if transactions is None else transactions.commits,
                "broker": {
                    "reachable": silence is not None and silence < BROKER_SILENCE_LIMIT,
                    "last_answer_seconds_ago": None if silence is None else round(silence, 1),
                },
            }
        )

    @app.page("/metrics")
    async def prometheus(web: View, request: Request) -> Response:
        return web.bytes(generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})
