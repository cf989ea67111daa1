"""Connection settings for secured brokers: the right client options, secrets kept out of sight."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import pytest

from journey.settings import Settings
from stream.kafka.connection import KafkaSetupError, faust_credentials, kafka_options


def test_plaintext_by_default() -> None:
    settings = Settings(broker="kafka://a:9092,b:9092")
    assert kafka_options(settings) == {
        "bootstrap_servers": ["a:9092", "b:9092"],
        "security_protocol": "PLAINTEXT",
    }
    assert faust_credentials(settings) is None


def test_sasl_scram_options_and_no_password_in_sight() -> None:
    settings = Settings(
        broker="kafka://a:9092",
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="svc",
        sasl_password="s3cret-value",  # type: ignore[arg-type]  # pydantic coerces str
    )
    options = kafka_options(settings)
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "svc" and options["sasl_plain_password"] == "s3cret-value"
    assert "s3cret-value" not in repr(settings) and "s3cret-value" not in str(settings.public_view())
    credentials = faust_credentials(settings)
    assert credentials is not None and "s3cret-value" not in repr(credentials)


def test_tls_with_a_ca_and_a_client_certificate(tmp_path: Path) -> None:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=journey-test",
        ],
        check=True,
        capture_output=True,
    )
    settings = Settings(
        broker="kafka://a:9093",
        security_protocol="SSL",
        ssl_ca_file=cert,
        ssl_cert_file=cert,
        ssl_key_file=key,
    )
    context = kafka_options(settings)["ssl_context"]
    assert isinstance(context, ssl.SSLContext) and context.verify_mode == ssl.CERT_REQUIRED
    assert faust_credentials(settings) is not None


def test_unusable_tls_files_are_named() -> None:
    settings = Settings(broker="kafka://a:9093", security_protocol="SSL", ssl_ca_file=Path("/no/ca.pem"))
    with pytest.raises(KafkaSetupError, match=r"JOURNEY_SSL_CA_FILE names /no/ca\.pem"):
        kafka_options(settings)


def test_incomplete_security_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="SASL needs"):
        Settings(security_protocol="SASL_SSL", sasl_username="x")
    with pytest.raises(ValueError, match="needs both"):
        Settings(ssl_cert_file=Path("c.pem"))


def test_a_refused_connection_says_why_while_the_reason_is_fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    import logging
    import time

    from aiokafka.errors import KafkaConnectionError

    from stream.kafka import refusals

    refusals.watch_connect_failures()
    logger = logging.getLogger("aiokafka")
    monkeypatch.setattr(logger, "level", logging.ERROR)
    bootstrap = KafkaConnectionError("Unable to bootstrap from [('127.0.0.1', 9094, 2)]")
    logger.error(
        'Unable connect to "%s:%s": %s', "127.0.0.1", 9094, "[Error 58] SaslAuthenticationFailed: bad"
    )
    assert refusals.explain(bootstrap) == "cannot connect: [Error 58] SaslAuthenticationFailed: bad"
    # Another kind of error, or a reason from long ago, is not explained by it.
    assert refusals.explain(ValueError("x")) == "x"
    monkeypatch.setattr(time, "time", lambda: refusals._FAILURES.at + 3600)
    assert refusals.explain(bootstrap) == str(bootstrap)
