"""Why a connection to the broker failed, in the words aiokafka logged: its
KafkaConnectionError names only the address, and a secured cluster's user wants to know
whether SASL refused the user or a certificate was not trusted. Light on imports: the CLI
installs it before anything else."""

from __future__ import annotations

import logging
import time

__all__ = ["explain", "refusal", "watch_connect_failures"]


# A reason older than this belongs to another attempt (a worker runs for days).
_FRESH_S = 60.0


class _ConnectFailures(logging.Handler):
    """The reason aiokafka logged for its last failed connection, and when."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.last: str | None = None
        self.at = 0.0

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("Unable connect to") and '": ' in message:
            self.last, self.at = message.split('": ', 1)[1], record.created

    def recent(self) -> str | None:
        return self.last if time.time() - self.at <= _FRESH_S else None


_FAILURES = _ConnectFailures()


def watch_connect_failures() -> None:
    """Keep the reason aiokafka logs when it cannot connect (SASL refused the user, the
    broker's certificate is not trusted): its KafkaConnectionError names only the address,
    and a secured cluster's user wants to know which. The broker's words carry no secret."""
    logger = logging.getLogger("aiokafka")
    if _FAILURES not in logger.handlers:
        logger.addHandler(_FAILURES)


def refusal() -> str | None:
    """Why the last connection failed, as aiokafka logged it within the last minute."""
    reason = _FAILURES.recent()
    if reason is None:
        return None
    if not reason:
        # Seen from a TLS client at a listener without TLS: the handshake just ends.
        reason = "the connection ended in the handshake (is JOURNEY_SECURITY_PROTOCOL the listener's?)"
    elif reason.endswith("closed"):
        # Seen from a client certificate the broker does not trust: it hangs up.
        reason += " (the broker hung up: does it trust the client certificate and take this protocol?)"
    return reason


def explain(exc: BaseException) -> str:
    """`exc` in one line; for a connection that failed, with the reason aiokafka logged."""
    from aiokafka.errors import KafkaConnectionError  # noqa: PLC0415  # the CLI keeps --help fast

    reason = refusal() if isinstance(exc, KafkaConnectionError) else None
    return str(exc) if reason is None else f"cannot connect: {reason}"
