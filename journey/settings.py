"""Every setting of journey, read once from `JOURNEY_*` environment variables.

This class is the one list of configuration; the README's table is written from it and a
test keeps the two in step.
"""

from __future__ import annotations

from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from journey.money import FxRates, load_rates
from journey.scoring import ScoringRules

__all__ = ["Settings"]


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
    canonical_url: str | None = Field(
        default=None,
        description="URL other workers use to reach this one (default http://WEB_HOST:WEB_PORT).",
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
    lag_interval: float = Field(default=5.0, gt=0, description="Seconds between consumer-lag refreshes.")
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

    @property
    def broker_url(self) -> str:
        return self.broker or f"kafka://127.0.0.1:{self.embedded_port}"

    @property
    def bootstrap_servers(self) -> list[str]:
        return [part.strip() for part in self.broker_url.removeprefix("kafka://").split(",") if part.strip()]

    @property
    def web_url(self) -> str:
        return self.canonical_url or f"http://{self.web_host}:{self.web_port}"

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
