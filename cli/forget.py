"""`journey forget`: erasure requests sent, and what the workers erased printed."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import click

from cli.common import UserError, kafka_options, load_settings, user_errors

__all__ = ["forget"]


def _moment(text: str | None) -> datetime:
    if text is None:
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UserError(f"--at {text!r}: not an RFC 3339 time such as 2026-03-01T10:00:00Z") from None
    if moment.tzinfo is None:
        raise UserError(f"--at {text!r}: give an offset or Z (e.g. 2026-03-01T10:00:00Z)")
    return moment


def _described(message: dict[str, Any]) -> str:
    links = message.get("links_retracted") or []
    retracted = "".join(
        f"\n  retracted link {link['share_id']}: {link['referrer_id']} -> {link['referred_id']}"
        for link in links
    )
    events = message.get("events_erased", 0)
    return (
        f"{message['customer_id']}: {events} event{'s' * (events != 1)} erased up to "
        f"{message['requested_at']}, {len(links)} link{'s' * (len(links) != 1)} retracted "
        f"(request {message['request_id']}){retracted}"
    )


@click.command()
@click.argument("customer_ids", nargs=-1, required=True, metavar="CUSTOMER_ID...")
@click.option(
    "--at",
    "at",
    metavar="TIME",
    help="Erase the events that occurred at or before TIME (RFC 3339). Default: now, i.e. everything so far.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=30.0,
    show_default=True,
    help="Seconds to wait for the workers' erasure-log messages.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the erasure-log messages as JSON lines.")
@user_errors
def forget(customer_ids: tuple[str, ...], at: str | None, timeout: float, as_json: bool) -> None:
    """Erase customers (SPEC.md, "Erasure"): send a request per CUSTOMER_ID to `erasures`,
    wait for the workers' `erasure-log` messages and print what each erased.

    Events that arrive later with a time at or before the request's are erased too."""
    from pydantic import ValidationError  # noqa: PLC0415

    from schemas.events import ErasureRequest  # noqa: PLC0415
    from stream.clients.forgetting import send_erasures  # noqa: PLC0415
    from stream.kafka.topics import TopicNames  # noqa: PLC0415

    settings = load_settings()
    moment = _moment(at)
    requests = []
    for customer_id in dict.fromkeys(customer_ids):
        try:
            requests.append(
                ErasureRequest(
                    request_id=f"forget-{uuid.uuid4()}", customer_id=customer_id, requested_at=moment
                )
            )
        except ValidationError as exc:
            raise UserError(f"customer id {customer_id!r}: {exc.errors()[0]['msg']}") from None
    names = TopicNames(settings.topic_prefix, settings.app_id)
    click.echo(
        f"sending {len(requests)} erasure request{'s' * (len(requests) != 1)} to {names.erasures}; "
        f"waiting up to {timeout:g} s for the workers' {names.erasure_log}",
        err=True,
    )
    answers = asyncio.run(send_erasures(kafka_options(settings), names, requests, timeout_s=timeout))
    for request in requests:
        message = answers.get(request.request_id)
        if message is not None:
            click.echo(json.dumps(message, ensure_ascii=False) if as_json else _described(message))
    missing = [request for request in requests if request.request_id not in answers]
    if missing:
        who = ", ".join(request.customer_id for request in missing)
        raise UserError(
            f"no worker logged the erasure of {who} within {timeout:g} s; the requests are on "
            f"{names.erasures} and are carried out when a worker runs (is one running?)"
        )
