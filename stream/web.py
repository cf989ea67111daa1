"""The worker's HTTP interface: customer lookup, impact, health and Prometheus metrics."""

from __future__ import annotations

from typing import Any

import faust
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from journey.customer import decode_state
from journey.impact import DIMENSIONS
from stream.impact_view import ImpactView
from stream.metrics import JourneyMetrics

__all__ = ["MAX_TOP", "register_views"]

MAX_TOP = 1000
_DEFAULT_TOP = 20


def _top(raw: str | None) -> int | str:
    """The `top` query parameter, or the one-line reason it is refused."""
    if raw is None:
        return _DEFAULT_TOP
    try:
        top = int(raw)
    except ValueError:
        return f"top must be a whole number from 0 to {MAX_TOP}, not {raw!r}"
    if not 0 <= top <= MAX_TOP:
        return f"top must be from 0 to {MAX_TOP}, not {top}"
    return top


def register_views(app: faust.App, customers: Any, metrics: JourneyMetrics, impact: ImpactView) -> None:
    """`GET /customers/{id}` (asks the owning worker), `GET /impact...` (from this worker's
    view of every entry), `GET /health`, `GET /metrics`."""

    @app.page("/customers/{customer_id}")
    @app.table_route(table=customers, match_info="customer_id")
    async def customer(web: View, request: Request, customer_id: str) -> Response:
        held: bytes | None = customers.get(customer_id)
        state = None if held is None else decode_state(held)
        # A state of version 0 holds a referral link whose customer's events are yet to come.
        if state is None or state.version == 0:
            return web.json({"error": f"unknown customer {customer_id!r}"}, status=404)
        return web.json(state.view())

    def unknown_dimension(web: View, dimension: str) -> Response:
        known = ", ".join(DIMENSIONS)
        return web.json({"error": f"unknown dimension {dimension!r} (one of {known})"}, status=404)

    @app.page("/impact")
    async def impact_summary(web: View, request: Request) -> Response:
        return web.json(impact.summary())

    @app.page("/impact/{dimension}")
    async def impact_ranking(web: View, request: Request, dimension: str) -> Response:
        if not impact.known(dimension):
            return unknown_dimension(web, dimension)
        top = _top(request.query.get("top"))
        if isinstance(top, str):
            return web.json({"error": top}, status=400)
        return web.json(impact.ranking(dimension, top))

    # `{key:.+}`: a key may hold `/` (percent-encoded or not); aiohttp decodes the rest.
    @app.page("/impact/{dimension}/{key:.+}")
    async def impact_entry(web: View, request: Request, dimension: str, key: str) -> Response:
        if not impact.known(dimension):
            return unknown_dimension(web, dimension)
        entry = impact.entry(dimension, key)
        if entry is None:
            return web.json({"error": f"no {dimension} {key!r} in impact (yet)"}, status=404)
        return web.json(entry)

    @app.page("/health")
    async def health(web: View, request: Request) -> Response:
        assigned: dict[str, list[int]] = {}
        for tp in app.consumer.assignment() if app.consumer else ():
            assigned.setdefault(tp.topic, []).append(tp.partition)
        return web.json(
            {
                "status": "ok",
                "rebalancing": bool(app.rebalancing),
                "assigned": {topic: sorted(parts) for topic, parts in sorted(assigned.items())},
            }
        )

    @app.page("/metrics")
    async def prometheus(web: View, request: Request) -> Response:
        return web.bytes(generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})
