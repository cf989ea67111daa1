"""Settings: one typed place, documented in full on the configuration page."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError

from journey.settings import Settings

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_the_configuration_page_documents_every_setting_and_nothing_else() -> None:
    from docs.hooks.reference import on_page_markdown  # the site's own generator

    page = on_page_markdown((DOCS / "configuration.md").read_text())
    table = set(re.findall(r"^\| `(JOURNEY_[A-Z_]+)` \|", page, re.MULTILINE))
    assert table == {f"JOURNEY_{name.upper()}" for name in Settings.model_fields}


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    rates = tmp_path / "fx.json"
    rates.write_text('{"EUR": 1.5}')
    monkeypatch.setenv("JOURNEY_BROKER", "kafka://a:9092, b:9093")
    monkeypatch.setenv("JOURNEY_FX_RATES", str(rates))
    monkeypatch.setenv("JOURNEY_SENTIMENT_WEIGHT", "0.5")
    settings = Settings()
    assert settings.bootstrap_servers == ["a:9092", "b:9093"]
    assert settings.rules.rates.rates == {"EUR": Decimal("1.5"), "USD": Decimal(1)}
    assert settings.rules.sentiment_weight == Decimal("0.5")
    assert settings.web_url == "http://127.0.0.1:6066"


def test_a_bad_broker_url_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOURNEY_BROKER", "localhost:9092")
    with pytest.raises(ValidationError, match="kafka://"):
        Settings()


def test_the_sasl_password_can_come_from_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "password"
    secret.write_text("from-a-secret\n")
    monkeypatch.setenv("JOURNEY_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("JOURNEY_SASL_USERNAME", "journey")
    monkeypatch.setenv("JOURNEY_SASL_PASSWORD_FILE", str(secret))
    settings = Settings()
    assert settings.sasl_password is not None
    assert settings.sasl_password.get_secret_value() == "from-a-secret"
    assert "from-a-secret" not in repr(settings) and "from-a-secret" not in str(settings.public_view())
    secret.write_text("")
    with pytest.raises(ValueError, match=r"JOURNEY_SASL_PASSWORD_FILE .* is empty"):
        Settings()
