"""Every route of the worker's web server, and the headers every answer carries."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any, cast
from urllib.parse import quote

import faust
from aiohttp import web as aiohttp_web
from faust.exceptions import SameNode
from faust.web import Request, Response, View
from pydantic import SecretStr

from journey.leaders import LEADERS
from stream.serving.impact_view import ImpactView
from stream.serving.leaders import LeadersView
from stream.serving.metrics import JourneyMetrics
from stream.serving.web.access import COOKIE, Access
from stream.serving.web.api import Answers, held_state, person_of, register_api
from stream.serving.web.live import LiveFeed
from stream.serving.web.page import (
    DIMENSION_TITLES,
    render_card,
    render_page,
    render_sections,
    render_sign_in,
)

__all__ = ["CONTENT_SECURITY_POLICY", "register_views"]

log = logging.getLogger(__name__)

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


def _see_other(location: str) -> aiohttp_web.Response:
    return aiohttp_web.Response(status=303, headers={"Location": location, "Cache-Control": "no-store"})


def _assets() -> dict[str, bytes]:
    folder = resources.files("stream.serving.web") / "assets"
    return {name: (folder / name).read_bytes() for name in _ASSET_TYPES}


def register_views(
    app: faust.App,
    customers: Any,
    metrics: JourneyMetrics,
    impact: ImpactView,
    leaders: LeadersView,
    token: SecretStr | None = None,
    persons: Any = None,
) -> None:
    answers = Answers(impact, leaders)
    access = Access(token)
    register_api(app, customers, metrics, answers, persons)
    asset_url = _register_assets(app)

    def sections() -> dict[str, str]:
        rankings = {dimension: answers.ranking(dimension, PAGE_TOP) for dimension in DIMENSION_TITLES}
        entries = answers.recovery_entries()
        moment = answers.second_moment(entries)
        return render_sections(
            answers.summary(), answers.circle(moment), rankings, answers.platinum(LEADERS), (moment, entries)
        )

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
        if customer_id is not None and state is None and (to := person_of(persons, customer_id)) is not None:
            # An alias: the page of its person, under the canonical id.
            return cast(Response, _see_other(f"/?customer={quote(to, safe='')}"))
        # An unknown customer is a message on the page, which itself was found: 200.
        card = render_card(customer_id, state)
        body = render_page(feed.sections(), card, asset=asset_url, signed_in=not access.open)
        return web.html(body, headers={"Cache-Control": "no-store"})

    sign_in_page = _register_sign_in(app, access, asset_url)

    @app.page("/live")
    async def live(web: View, request: Request) -> Any:
        return await feed.stream(cast(aiohttp_web.Request, request))  # Faust's driver is aiohttp

    async def secure(request: aiohttp_web.Request, response: aiohttp_web.StreamResponse) -> None:
        response.headers.update(_HEADERS)

    server: aiohttp_web.Application = cast(Any, app.web).web_app
    server.middlewares.append(access.middleware(sign_in_page))
    server.on_response_prepare.append(secure)
    server.on_shutdown.append(feed.close)

    if access.open:

        @app.task
        async def say_the_api_is_open() -> None:
            log.warning(
                "JOURNEY_API_TOKEN is not set: every HTTP endpoint, customers' data included, "
                "is open to anyone who can reach this worker"
            )


SignInPage = Callable[..., Awaitable[aiohttp_web.Response]]


def _register_sign_in(app: faust.App, access: Access, asset_url: Callable[[str], str]) -> SignInPage:
    """`/signin` and `/signout`; returns the sign-in page, which the access middleware
    answers a request without a token with."""

    async def sign_in_page(
        request: aiohttp_web.Request, *, refused: bool = False, status: int = 401
    ) -> aiohttp_web.Response:
        return aiohttp_web.Response(
            text=render_sign_in(asset=asset_url, refused=refused),
            content_type="text/html",
            status=status,
            headers={"Cache-Control": "no-store", "WWW-Authenticate": 'Bearer realm="journey"'},
        )

    @app.page("/signin")
    class SignIn(View):
        async def get(self, request: Request) -> Any:
            if access.open:
                return _see_other("/")
            return await sign_in_page(cast(aiohttp_web.Request, request), status=200)

        async def post(self, request: Request) -> Any:
            plain = cast(aiohttp_web.Request, request)
            form = await plain.post()
            candidate = form.get("token")
            if access.open:
                return _see_other("/")
            if not isinstance(candidate, str) or not access.token_matches(candidate.strip()):
                await access.sign_in_failures.failed(plain.remote or "")
                return await sign_in_page(plain, refused=True)
            response = _see_other("/")
            response.set_cookie(
                COOKIE,
                access.session_value(),
                httponly=True,
                samesite="Strict",
                secure=plain.secure,
                path="/",
            )
            return response

    @app.page("/signout")
    class SignOut(View):
        async def post(self, request: Request) -> Any:
            response = _see_other("/")
            response.del_cookie(COOKIE, path="/")
            return response

    return sign_in_page


def _register_assets(app: faust.App) -> Callable[[str], str]:
    """`/assets/{name}`; returns an asset's URL, which changes with its content, so that it
    can be cached for long."""
    assets = _assets()
    versions = {name: hashlib.sha256(body).hexdigest()[:12] for name, body in assets.items()}

    def asset_url(name: str) -> str:
        return f"/assets/{name}?v={versions[name]}"

    @app.page("/assets/{name}")
    async def asset(web: View, request: Request, name: str) -> Response:
        body = assets.get(name)
        if body is None:
            return web.json({"error": f"no asset {quote(name)!r}"}, status=404)
        cache = (
            "public, max-age=31536000, immutable" if request.query.get("v") == versions[name] else "no-cache"
        )
        return web.bytes(body, headers={"Content-Type": _ASSET_TYPES[name], "Cache-Control": cache})

    return asset_url
