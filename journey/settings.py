"""Every setting of journey, read once from `JOURNEY_*` environment variables.

This class is the one list of configuration; docs/configuration.md's table is generated from it and a
test keeps the two in step.
"""

from __future__ import annotations

import socket
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from journey.money import FxRates, load_rates
from journey.scoring import ScoringRules

__all__ = ["Settings"]


def _secret_file(variable: str, path: Path) -> str:
    """The secret a mounted file holds (a Docker or Kubernetes secret), stripped; a
    ValueError naming `variable` and the file when it is unreadable or empty."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(f"cannot read {variable} {path}: {exc.strerror}") from exc
    if not text:
        raise ValueError(f"{variable} {path} is empty")
    return text


class Settings(BaseSettings):
    """Configuration of workers and commands (environment variables `JOURNEY_<NAME>`)."""

    model_config = SettingsConfigDict(env_prefix="JOURNEY_", frozen=True, extra="ignore")

    broker: str | None = Field(
        default=None,
        description="Kafka bootstrap servers as kafka://host:9092,host2:9092. Unset: "
        "`journey up` starts the embedded broker; other commands use kafka://127.0.0.1:9092.",
    )
    embedded_port: int = Field(default=9092, ge=1, le=65535, description="Port of the embedded broker.")
    topic_prefix: str = Field(default="", description="Put in front of every topic name, e.g. `acme.`.")
    app_id: str = Field(default="journey", description="Consumer group and Faust application id.")
    partitions: int = Field(
        default=4, ge=1, description="Partitions of every topic journey creates (inputs are co-partitioned)."
    )
    replication_factor: int = Field(default=1, ge=1, description="Replication factor of created topics.")
    web_host: str = Field(default="127.0.0.1", description="Address the HTTP interface binds to.")
    web_port: int = Field(default=6066, ge=1, le=65535, description="Port of the HTTP interface.")
    web_tls_cert: Path | None = Field(
        default=None,
        description="Certificate chain (PEM) the HTTP interface serves over TLS (https), with "
        "JOURNEY_WEB_TLS_KEY; unset: plain http (put a TLS proxy in front).",
    )
    web_tls_key: Path | None = Field(default=None, description="Private key (PEM) of JOURNEY_WEB_TLS_CERT.")
    canonical_url: str | None = Field(
        default=None,
        description="URL other workers use to reach this one (default http://WEB_HOST:WEB_PORT, "
        "with the host name when WEB_HOST is 0.0.0.0).",
    )
    data_dir: Path = Field(default=Path(".journey-data"), description="Faust's local data directory.")
    csat_window_days: int = Field(default=90, ge=1, description="CSAT window in days.")
    sentiment_weight: Decimal = Field(default=Decimal(1), description="Weight w of sentiment in CSAT.")
    base_currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$", description="Currency of CLTV.")
    fx_rates: Path | None = Field(
        default=None, description='JSON file of rates into the base currency, e.g. {"EUR": 1.08}.'
    )
    max_event_bytes: int = Field(
        default=1_048_576, ge=256, description="Larger input messages go to dead-letters."
    )
    session_timeout: float = Field(
        default=10.0,
        gt=0,
        description="Consumer group session timeout, seconds (a dead worker's partitions move after it).",
    )
    heartbeat_interval: float = Field(default=1.0, gt=0, description="Consumer heartbeat interval, seconds.")
    fetch_max_wait_ms: int = Field(
        default=10,
        ge=1,
        le=1500,
        description="Longest a worker's fetch waits at the broker for new messages (latency floor).",
    )
    max_poll_records: int = Field(
        default=20_000,
        ge=1,
        description=(
            "Most input messages a worker handles in one batch (one broker round trip each). "
            "Only a worker behind reaches it; a batch of 20,000 takes about a second, which a "
            "rebalance and, with exactly-once, the commit wait for."
        ),
    )
    updates_with_states: bool = Field(
        default=True,
        description=(
            "Send a batch's ppp-updates in the produce request of their customers' states when one "
            "broker leads every partition of both; false: always after the states' acknowledgement."
        ),
    )
    idempotence: Literal["auto", "on", "off"] = Field(
        default="auto",
        description=(
            "Idempotent producer (a retried send is written once): auto turns it on where the broker "
            "supports it (Apache Kafka; the embedded broker does not), on requires it, off never."
        ),
    )
    exactly_once: Literal["auto", "on", "off"] = Field(
        default="auto",
        description=(
            "Kafka transactions: a worker's outputs, table records and input offsets commit together "
            "(read them with isolation_level=read_committed); auto turns them on where the broker runs "
            "them (Apache Kafka; the embedded broker does not), on requires them, off never."
        ),
    )
    worker_name: str = Field(
        default="",
        description=(
            "Names the worker's transactional producer; unique per running worker, the same after a "
            "restart (a StatefulSet pod's name). Empty: host name and web port."
        ),
    )
    cached_customers: int = Field(
        default=10_000,
        ge=0,
        description=(
            "Customers a worker keeps decoded between batches (about 4 KB each; 0: none). "
            "One not kept is read back whole, its history included, at its next event."
        ),
    )
    lag_interval: float = Field(default=5.0, gt=0, description="Seconds between consumer-lag refreshes.")
    store: Literal["memory://", "rocksdb://"] = Field(
        default="memory://",
        description="Table store: memory:// (recovers from the changelog at start) or rocksdb:// (kept on disk in DATA_DIR).",
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", description="How to talk to the brokers."
    )
    ssl_ca_file: Path | None = Field(
        default=None, description="CA bundle (PEM) that signed the brokers' certificates."
    )
    ssl_cert_file: Path | None = Field(default=None, description="Client certificate (PEM) for mutual TLS.")
    ssl_key_file: Path | None = Field(
        default=None, description="Private key (PEM) of the client certificate."
    )
    ssl_key_password: SecretStr | None = Field(
        default=None, description="Password of the client key, if any."
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        default="PLAIN", description="SASL mechanism with SASL_PLAINTEXT or SASL_SSL."
    )
    sasl_username: str | None = Field(default=None, description="SASL user name.")
    sasl_password: SecretStr | None = Field(default=None, description="SASL password (never printed).")
    sasl_password_file: Path | None = Field(
        default=None,
        description="A file holding SASL_PASSWORD (a mounted Docker or Kubernetes secret); SASL_PASSWORD wins.",
    )
    api_token: SecretStr | None = Field(
        default=None,
        description="Bearer token every HTTP endpoint but /health and /metrics requires (never printed). "
        "Unset: the API is open, and the worker says so at start-up.",
    )
    api_token_file: Path | None = Field(
        default=None,
        description="A file holding API_TOKEN (a mounted Docker or Kubernetes secret); API_TOKEN wins.",
    )
    log_level: Literal["debug", "info", "warning", "error"] | None = Field(
        default=None, description="Log level (default: info for `journey worker`, warning for `journey up`)."
    )

    @field_validator("broker")
    @classmethod
    def _broker_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith("kafka://"):
            raise ValueError("must look like kafka://host:9092[,host2:9092]")
        return value

    @field_validator("api_token")
    @classmethod
    def _token_or_unset(cls, value: SecretStr | None) -> SecretStr | None:
        # An empty variable (a compose file's `${JOURNEY_API_TOKEN:-}`) means unset.
        if value is None or not value.get_secret_value().strip():
            return None
        return SecretStr(value.get_secret_value().strip())

    @model_validator(mode="before")
    @classmethod
    def _password_from_file(cls, data: Any) -> Any:
        # The password from a mounted secret, unless given itself (settings are frozen).
        if not isinstance(data, dict) or data.get("sasl_password") or not data.get("sasl_password_file"):
            return data
        text = _secret_file("JOURNEY_SASL_PASSWORD_FILE", Path(str(data["sasl_password_file"])))
        return {**data, "sasl_password": text}

    @model_validator(mode="after")
    def _security_is_complete(self) -> Settings:
        if self.security_protocol.startswith("SASL") and not (self.sasl_username and self.sasl_password):
            raise ValueError("SASL needs JOURNEY_SASL_USERNAME and JOURNEY_SASL_PASSWORD")
        if (self.ssl_cert_file is None) != (self.ssl_key_file is None):
            raise ValueError("a client certificate needs both JOURNEY_SSL_CERT_FILE and JOURNEY_SSL_KEY_FILE")
        if (self.web_tls_cert is None) != (self.web_tls_key is None):
            raise ValueError(
                "TLS for the HTTP interface needs both JOURNEY_WEB_TLS_CERT and JOURNEY_WEB_TLS_KEY"
            )
        for name, path in (
            ("JOURNEY_WEB_TLS_CERT", self.web_tls_cert),
            ("JOURNEY_WEB_TLS_KEY", self.web_tls_key),
        ):
            if path is not None and not path.is_file():
                raise ValueError(f"{name} names {path}, which is not a readable file")
        return self

    @cached_property
    def web_token(self) -> SecretStr | None:
        """The API token, from API_TOKEN or else from the file API_TOKEN_FILE names."""
        if self.api_token is not None or self.api_token_file is None:
            return self.api_token
        return SecretStr(_secret_file("JOURNEY_API_TOKEN_FILE", self.api_token_file))

    def public_view(self) -> dict[str, object]:
        """Every setting, secrets masked: what may go to a log."""
        return {name: ("********" if isinstance(value, SecretStr) else value) for name, value in self}

    @property
    def broker_url(self) -> str:
        return self.broker or f"kafka://127.0.0.1:{self.embedded_port}"

    @property
    def bootstrap_servers(self) -> list[str]:
        return [part.strip() for part in self.broker_url.removeprefix("kafka://").split(",") if part.strip()]

    @property
    def transactional_id(self) -> str:
        """The worker's transactional.id (`stream.kafka.transactions`): unique per running worker."""
        name = self.worker_name or f"{socket.gethostname()}-{self.web_port}"
        return f"{self.topic_prefix}{self.app_id}-{name}"

    @property
    def web_url(self) -> str:
        if self.canonical_url:
            return self.canonical_url
        # Bound to every interface (a container): other workers reach it by its host name.
        host = socket.gethostname() if self.web_host in ("0.0.0.0", "::", "") else self.web_host
        scheme = "https" if self.web_tls_cert else "http"
        return f"{scheme}://{host}:{self.web_port}"

    @cached_property
    def rates(self) -> FxRates:
        return load_rates(self.fx_rates, self.base_currency)

    @cached_property
    def rules(self) -> ScoringRules:
        return ScoringRules(
            rates=self.rates,
            csat_window_days=self.csat_window_days,
            sentiment_weight=self.sentiment_weight,
        )
