"""What every command shares: settings, one-line errors, and the few Kafka helpers."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, NoReturn, TypeVar

import click
from pydantic import ValidationError

from journey.settings import Settings

__all__ = [
    "UserError",
    "as_text",
    "create_topics_now",
    "fail",
    "kafka_options",
    "load_settings",
    "self_command",
    "stop_on_sigterm",
    "user_errors",
]

F = TypeVar("F", bound=Callable[..., Any])


class UserError(click.ClickException):
    """A problem the user can fix: printed as one line, exit 1."""


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"journey: error: {message}", err=True)
    sys.exit(code)


def load_settings() -> Settings:
    try:
        settings = Settings()
        _ = settings.rates  # a broken FX file should stop us here, not at the first purchase
        _ = settings.web_token  # and an unreadable token file
    except ValidationError as exc:
        first = exc.errors()[0]
        message = first["msg"].removeprefix("Value error, ")
        if first["loc"]:
            message = "JOURNEY_" + "_".join(str(p) for p in first["loc"]).upper() + ": " + message
        raise UserError(message) from None
    except ValueError as exc:
        raise UserError(str(exc)) from None
    return settings


def kafka_options(settings: Settings) -> dict[str, Any]:
    from stream.kafka.connection import kafka_options as options  # noqa: PLC0415  # keep --help fast

    return options(settings)


def self_command() -> str:
    """How the user can run journey again: `.venv/bin/journey` when that is how it started."""
    return sys.argv[0] if sys.argv[0].endswith("journey") else "journey"


def create_topics_now(settings: Settings) -> list[str]:
    """Create what is missing of journey's topics; the names created."""
    from stream.kafka.admin import create_topics  # noqa: PLC0415
    from stream.kafka.topics import TopicNames  # noqa: PLC0415

    names = TopicNames(settings.topic_prefix, settings.app_id)
    return asyncio.run(
        create_topics(
            kafka_options(settings),
            names,
            partitions=settings.partitions,
            replication_factor=settings.replication_factor,
        )
    )


def user_errors(fun: F) -> F:
    """Turn the errors a user can cause into one-line messages instead of tracebacks."""

    @wraps(fun)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from aiokafka.errors import KafkaConnectionError, KafkaError  # noqa: PLC0415  # keep --help fast

        from stream.brokers.embedded import BrokerError  # noqa: PLC0415
        from stream.kafka.admin import TopicsError  # noqa: PLC0415
        from stream.kafka.connection import KafkaSetupError  # noqa: PLC0415

        try:
            return fun(*args, **kwargs)
        except (BrokerError, TopicsError, KafkaSetupError) as exc:
            raise UserError(str(exc)) from None
        except KafkaConnectionError:
            from stream.kafka.refusals import refusal  # noqa: PLC0415

            reason = refusal()
            said = "" if reason is None else f": {reason}"
            raise UserError(f"cannot reach the broker at {load_settings().broker_url}{said}") from None
        except KafkaError as exc:
            raise UserError(f"broker error: {exc}") from None
        except OSError as exc:
            where = f" {exc.filename}" if exc.filename else ""
            raise UserError(f"{exc.strerror or exc}{':' if where else ''}{where}") from None

    return wrapper  # type: ignore[return-value]  # wraps keeps the signature


def stop_on_sigterm() -> None:
    # Until Faust installs its own handlers, SIGTERM must still unwind through `finally`
    # so that the embedded broker is stopped, not orphaned.
    def handler(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def as_text(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode("utf-8", errors="replace")
