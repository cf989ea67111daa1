"""The `journey` command line. Every failure a user can cause ends in one line and exit 1 or 2.

Each command lives in the module named after what it works on; this one puts them together.
"""

from __future__ import annotations

import logging
import sys

import click

from cli.common import fail
from cli.files import publish, replay, simulate
from cli.forget import forget
from cli.impact import impact
from cli.kafka import kafka
from cli.run import up, worker
from cli.schemas import schemas
from cli.topics import tail, topics

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="journey")
def cli() -> None:
    """journey: customer journeys in, PPP = CSAT x CLTV out, on Kafka.

    Configuration comes from JOURNEY_* environment variables (docs/configuration.md).
    """


for command in (up, worker, replay, simulate, publish, tail, impact, forget, topics, schemas, kafka):
    cli.add_command(command)


def main() -> None:
    # Client commands speak for themselves in one line; the Kafka client's own connection
    # chatter would only repeat it, but its reason for a refused connection goes into that
    # line (`watch_connect_failures`). Workers set up their logging through Faust.
    from stream.kafka.refusals import watch_connect_failures  # noqa: PLC0415  # keep --help fast

    chatter = logging.getLogger("aiokafka")
    chatter.setLevel(logging.ERROR)
    chatter.propagate = False
    watch_connect_failures()
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        fail("aborted", 130)
    except click.UsageError as exc:
        hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx else ""
        fail(f"{exc.format_message()}{hint}", 2)
    except click.ClickException as exc:
        fail(exc.format_message(), exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
