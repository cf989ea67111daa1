"""The worker's HTTP interface: customer lookup, health and Prometheus metrics."""

from __future__ import annotations

from typing import Any

import faust
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from journey.customer import decode_state
from stream.metrics import JourneyMetrics

__all__ = ["register_views"]


def register_views(app: faust.App, customers: Any, metrics: JourneyMetrics) -> None:
    """`GET /customers/{id}` (asks the owning worker), `GET /health`, `GET /metrics`."""

    @app.page("/customers/{customer_id}")
    @app.table_route(table=customers, match_info="customer_id")
    async def customer(web: View, request: Request, customer_id: str) -> Response:
        held: bytes | None = customers.get(customer_id)
        if held is None:
            return web.json({"error": f"unknown customer {customer_id!r}"}, status=404)
        return web.json(decode_state(held).view())

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
