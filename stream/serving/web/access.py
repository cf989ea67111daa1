"""Access to the worker's HTTP interface (SPEC.md, "Access"): a bearer token on every
endpoint but `/health` and `/metrics`, and a sign-in form for the page that keeps a
session in an `HttpOnly`, `SameSite=Strict` cookie.

Tokens are compared as SHA-256 digests with `hmac.compare_digest`: equal lengths, and no
early exit, so the time a wrong token takes says nothing about how much of it matched.
The cookie holds an HMAC of the token, not the token: reading a cookie jar does not give
the API token away, and a new token ends every session.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable

from aiohttp import web
from pydantic import SecretStr

__all__ = ["COOKIE", "OPEN_PATHS", "Access", "Throttle", "token_matches"]

log = logging.getLogger(__name__)

COOKIE = "journey_session"
# Probes and Prometheus need no token; the page's assets and the sign-in form hold no data.
OPEN_PATHS = frozenset({"/health", "/metrics", "/signin", "/signout"})
_OPEN_PREFIXES = ("/assets/",)
REFUSED = "unauthorized: send the API token as `Authorization: Bearer <token>` (JOURNEY_API_TOKEN)"
# Failures from one address within this many seconds slow its next answers down.
_FAILURE_WINDOW = 60.0
_MOST_DELAY = 5.0
_ADDRESSES = 10_000  # addresses remembered, the oldest forgotten first


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


def token_matches(candidate: str, expected_digest: bytes) -> bool:
    """Whether `candidate` is the token whose SHA-256 is `expected_digest`, in constant time."""
    return hmac.compare_digest(_digest(candidate), expected_digest)


class Throttle:
    """Failures per address in the last minute; past `free` of them, each answer waits
    longer (a quarter second, doubling, at most five)."""

    def __init__(self, free: int) -> None:
        self.free = free
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    async def failed(self, address: str) -> None:
        now = time.monotonic()
        failures = self._failures.pop(address, None) or deque()
        while failures and now - failures[0] > _FAILURE_WINDOW:
            failures.popleft()
        failures.append(now)
        self._failures[address] = failures
        while len(self._failures) > _ADDRESSES:
            self._failures.popitem(last=False)
        beyond = len(failures) - self.free
        if beyond > 0:
            await asyncio.sleep(min(_MOST_DELAY, 0.25 * 2 ** (beyond - 1)))


class Access:
    def __init__(self, token: SecretStr | None) -> None:
        self.open = token is None
        secret = "" if token is None else token.get_secret_value()
        self._digest = _digest(secret)
        self._session = hmac.new(secret.encode("utf-8"), b"journey page session", hashlib.sha256).hexdigest()
        # A person mistypes a token a few times; a program with a wrong one fails on every call.
        self.sign_in_failures = Throttle(free=3)
        self.api_failures = Throttle(free=30)

    def session_value(self) -> str:
        return self._session

    def token_matches(self, candidate: str) -> bool:
        return token_matches(candidate, self._digest)

    def authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() == "bearer" and credentials:
            return self.token_matches(credentials.strip())
        cookie = request.cookies.get(COOKIE)
        return cookie is not None and hmac.compare_digest(cookie.encode(), self._session.encode())

    @staticmethod
    def presented(request: web.Request) -> bool:
        """Whether the request tried a credential (a wrong one, if it was refused)."""
        return "Authorization" in request.headers or COOKIE in request.cookies

    def middleware(
        self, sign_in_page: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> Callable[..., Awaitable[web.StreamResponse]]:
        @web.middleware
        async def require_token(
            request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
        ) -> web.StreamResponse:
            path = request.path
            if self.open or path in OPEN_PATHS or path.startswith(_OPEN_PREFIXES) or self.authorized(request):
                return await handler(request)
            if self.presented(request):
                await self.api_failures.failed(request.remote or "")
            # A person at a browser gets the sign-in form; a program gets JSON.
            if path == "/" and "text/html" in request.headers.get("Accept", ""):
                return await sign_in_page(request)
            return web.json_response(
                {"error": REFUSED}, status=401, headers={"WWW-Authenticate": 'Bearer realm="journey"'}
            )

        return require_token
