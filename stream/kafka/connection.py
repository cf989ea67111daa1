"""How every Kafka client of journey connects: bootstrap servers, TLS and SASL from Settings."""

from __future__ import annotations

import ssl
from typing import Any

import faust

from journey.settings import Settings

__all__ = ["KafkaSetupError", "faust_credentials", "kafka_options", "start_client"]


class KafkaSetupError(RuntimeError):
    """The connection settings cannot be used (e.g. an unreadable certificate)."""


def _ssl_context(settings: Settings) -> ssl.SSLContext:
    files = {
        "JOURNEY_SSL_CA_FILE": settings.ssl_ca_file,
        "JOURNEY_SSL_CERT_FILE": settings.ssl_cert_file,
        "JOURNEY_SSL_KEY_FILE": settings.ssl_key_file,
    }
    for name, path in files.items():
        if path is not None and not path.is_file():
            raise KafkaSetupError(f"cannot set up TLS: {name} names {path}, which is not a readable file")
    try:
        context = ssl.create_default_context(
            cafile=str(settings.ssl_ca_file) if settings.ssl_ca_file else None
        )
        if settings.ssl_cert_file and settings.ssl_key_file:
            password = settings.ssl_key_password.get_secret_value() if settings.ssl_key_password else None
            context.load_cert_chain(
                str(settings.ssl_cert_file), str(settings.ssl_key_file), password=password
            )
    except (OSError, ssl.SSLError) as exc:
        # The message names the file and the problem, never a password.
        raise KafkaSetupError(f"cannot set up TLS: {exc}") from None
    return context


def kafka_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for aiokafka's producer, consumer and admin client."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "security_protocol": settings.security_protocol,
    }
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = _ssl_context(settings)
    if settings.security_protocol.startswith("SASL"):
        assert settings.sasl_password is not None  # checked by Settings
        options["sasl_mechanism"] = settings.sasl_mechanism
        options["sasl_plain_username"] = settings.sasl_username
        options["sasl_plain_password"] = settings.sasl_password.get_secret_value()
    return options


def faust_credentials(settings: Settings) -> faust.types.auth.CredentialsT | None:
    """The same connection for the Faust app's own clients."""
    protocol = settings.security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = _ssl_context(settings) if protocol in ("SSL", "SASL_SSL") else None
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    assert settings.sasl_password is not None
    credentials = faust.SASLCredentials(
        username=settings.sasl_username,
        password=settings.sasl_password.get_secret_value(),
        mechanism=settings.sasl_mechanism,
        ssl_context=context,
    )
    return credentials


async def start_client(client: Any) -> None:
    """Start an aiokafka client; if that fails, stop it before raising, so nothing leaks."""
    try:
        await client.start()
    except BaseException:
        await client.stop()
        raise
