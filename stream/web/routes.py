"""Every route of the worker's web server, and the headers every answer carries."""

from __future__ import annotations

import hashlib
from importlib import resources
from typing import Any, cast
from urllib.parse import quote

import faust
from aiohttp import web as aiohttp_web
from faust.exceptions import SameNode
from faust.web import Request, Response, View

from journey.leaders import LEADERS
from stream.impact_view import ImpactView
from stream.leaders import LeadersView
from stream.metrics import JourneyMetrics
from stream.web.api import Answers, held_state, register_api
from stream.web.live import LiveFeed
from stream.web.page import DIMENSION_TITLES, render_card, render_page, render_sections

__all__ = ["CONTENT_SECURITY_POLICY", "register_views"]

# Scripts, styles and everything else from this worker only, and nothing inline: a producer's
# text that slipped past escaping still could not run.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
_ASSET_TYPES = {
    "journey.css": "text/css; charset=utf-8",
    "journey.js": "text/javascript; charset=utf-8",
    "icon.svg": "image/svg+xml",
}
# The rankings shown on the page: the top of each dimension by attributed PPP.
PAGE_TOP = 10


def _assets() -> dict[str, bytes]:
    folder = resources.files("stream.web") / "assets"
    return {name: (folder / name).read_bytes() for name in _ASSET_TYPES}


def register_views(
    app: faust.App, customers: Any, metrics: JourneyMetrics, impact: ImpactView, leaders: LeadersView
) -> None:
    answers = Answers(impact, leaders)
    register_api(app, customers, metrics, answers)
    assets = _assets()
    # An asset's URL changes with its content, so that it can be cached for long.
    versions = {name: hashlib.sha256(body).hexdigest()[:12] for name, body in assets.items()}

    def asset_url(name: str) -> str:
        return f"/assets/{name}?v={versions[name]}"

    def sections() -> dict[str, str]:
        rankings = {dimension: answers.ranking(dimension, PAGE_TOP) for dimension in DIMENSION_TITLES}
        return render_sections(answers.summary(), answers.circle(), rankings, answers.platinum(LEADERS))

    feed = LiveFeed(sections, answers.version)

    @app.page("/")
    async def page(web: View, request: Request) -> Response:
        customer_id = request.query.get("customer", "").strip() or None
        if customer_id is not None:
            # The customer's owner draws the whole page: it holds the card's state.
            try:
                return await app.router.route_req(customers.name, customer_id, web.web, request)
            except SameNode:
                pass
        state = None if customer_id is None else held_state(customers, customer_id)
        # An unknown customer is a message on the page, which itself was found: 200.
        body = render_page(sections(), render_card(customer_id, state), asset=asset_url)
        return web.html(body, headers={"Cache-Control": "no-store"})

    @app.page("/live")
    async def live(web: View, request: Request) -> Any:
        return await feed.stream(cast(aiohttp_web.Request, request))  # Faust's driver is aiohttp

    @app.page("/assets/{name}")
    async def asset(web: View, request: Request, name: str) -> Response:
        body = assets.get(name)
        if body is None:
            return web.json({"error": f"no asset {quote(name)!r}"}, status=404)
        cache = (
            "public, max-age=31536000, immutable" if request.query.get("v") == versions[name] else "no-cache"
        )
        return web.bytes(body, headers={"Content-Type": _ASSET_TYPES[name], "Cache-Control": cache})

    async def secure(request: aiohttp_web.Request, response: aiohttp_web.StreamResponse) -> None:
        response.headers.update(_HEADERS)

    server: aiohttp_web.Application = cast(Any, app.web).web_app
    server.on_response_prepare.append(secure)
    server.on_shutdown.append(feed.close)
