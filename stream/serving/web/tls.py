"""TLS for the worker's own HTTP interface (JOURNEY_WEB_TLS_CERT, JOURNEY_WEB_TLS_KEY), so
that an access token never travels in clear text; the page's sign-in cookie is then
`Secure` (`routes`: it is whenever the request came over TLS)."""

from __future__ import annotations

import ssl

from journey.settings import Settings

__all__ = ["web_tls_context"]


def web_tls_context(settings: Settings) -> ssl.SSLContext | None:
    """The server's TLS context, or None for plain http. A key that does not match its
    certificate is an `ssl.SSLError` (an OSError: one line at start-up)."""
    if settings.web_tls_cert is None or settings.web_tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(settings.web_tls_cert), str(settings.web_tls_key))
    return context
