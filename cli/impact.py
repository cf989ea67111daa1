"""`journey impact`: what each campaign, channel and referrer is worth, asked of a worker.

The figures are the worker's (`GET /impact...`): this only lays them out for a person, the
flags in words, and untrusted keys (producers name campaigns) shown without their control
characters, so that a key cannot move the cursor or recolour the terminal.
"""

from __future__ import annotations

import json
import unicodedata
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from typing import Any

import click

from cli.common import UserError, load_settings, user_errors
from journey.impact import DIMENSIONS

__all__ = ["impact", "render_ranking", "render_summary"]

CAVEAT = "Uplifts compare the customers a key reached with everyone else: association, not proof of cause."
_FLAG_WORDS = {
    "past_six_percent": "past the 6% line",
    "harms_experience": "converts but satisfies less",
}


def printable(text: str, width: int | None = None) -> str:
    """`text` with control and format characters shown as escapes, cut to `width`."""
    shown = "".join(
        f"\\u{ord(char):04x}" if unicodedata.category(char) in ("Cc", "Cf") else char for char in text
    )
    if width is not None and len(shown) > width:
        shown = shown[: width - 1] + "…"
    return shown


def _money(value: float | None) -> str:
    return "–" if value is None else f"{value:,.2f}"


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:+.1f}%"


def _ratio(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


def flags_in_words(entry: dict[str, Any]) -> str:
    return "; ".join(words for flag, words in _FLAG_WORDS.items() if entry.get(flag))


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> list[str]:
    """Columns as wide as their widest cell; the first `left` columns flush left."""
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.ljust(width) if i < left or i == len(cells) - 1 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return [line(headers), *(line(row) for row in rows)]


def render_ranking(ranking: dict[str, Any]) -> str:
    """A dimension's top entries as a table, with the flags in words."""
    dimension = ranking["dimension"]
    entries = ranking["top"]
    title = f"{dimension}: top {len(entries)} of {ranking['entries']} by attributed PPP"
    if not entries:
        return f"{title}\n  (nothing yet)"
    headers = [
        "key",
        "customers",
        "attributed PPP",
        "mean PPP",
        "conversion",
        "PPP",
        "conv.",
        "CSAT",
        "flags",
    ]
    rows = [
        [
            printable(entry["key"], 32),
            str(entry["customers"]),
            _money(entry["attributed_ppp"]),
            _money(entry["mean_ppp"]),
            _ratio(entry["conversion"]),
            _percent(entry["ppp_uplift"]),
            _percent(entry["conversion_uplift"]),
            _percent(entry["csat_uplift"]),
            flags_in_words(entry),
        ]
        for entry in entries
    ]
    lines = [title, *_table(headers, rows)]
    lines.append("(PPP, conv., CSAT: uplift against the customers outside the key)")
    return "\n".join(lines)


def render_summary(summary: dict[str, Any]) -> str:
    """The `all` entry: the north star in a few lines."""
    counts = ", ".join(f"{dimension} {count}" for dimension, count in summary["dimensions"].items() if count)
    moments = summary["moments"]
    k_factor = summary.get("k_factor")
    return "\n".join(
        [
            f"PPP {_money(summary['ppp'])} from {summary['customers']} customers "
            f"(mean {_money(summary['mean_ppp'])}), CLTV {_money(summary['cltv'])}",
            f"buyers {summary['buyers']} (conversion {_ratio(summary['conversion'])}), "
            f"mean CSAT {'–' if summary['mean_csat'] is None else summary['mean_csat']} "
            f"of {summary['surveyed']} surveyed",
            f"moments reached: ZMOT {moments['zmot']}, FMOT {moments['fmot']}, SMOT {moments['smot']}, "
            f"UMOT {moments['umot']}; referred {summary['referred']} "
            f"(K-factor {'–' if k_factor is None else k_factor})",
            f"entries: {counts or 'none yet'}",
        ]
    )


def render_second_moment(moment: dict[str, Any]) -> str:
    """The second moment in words: recoveries, at-risk customers, which way it goes."""
    rate = moment["recovery_rate"]
    return "\n".join(
        [
            f"second moment: {moment['recovered']} of {moment['failed']} customers with a SMOT failure "
            f"recovered ({_ratio(rate)}); {moment['smooth']} smooth",
            f"at risk: {moment['at_risk']} customers ({moment['at_risk_rule']})",
            moment["verdict"],
        ]
    )


def fetch_json(url: str, token: str | None = None) -> Any:
    """GET `url` as JSON (with the API token, when there is one); a worker's JSON error, or
    an unreachable worker, as a UserError."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, headers=headers)  # noqa: S310  # the user's own worker URL
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310  # the user's own worker URL
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            reason = json.loads(exc.read())["error"]
        except (ValueError, KeyError, TypeError):
            reason = exc.reason
        if exc.code == 401:
            reason = f"{reason}; set JOURNEY_API_TOKEN to the workers' token"
        raise UserError(f"{url}: {exc.code} {reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise UserError(
            f"cannot reach a worker at {url} ({getattr(exc, 'reason', exc)}); is `journey up` or "
            "`journey worker` running? (--url)"
        ) from None


@click.command()
@click.argument("dimension", required=False, type=click.Choice(DIMENSIONS[1:]))
@click.argument("key", required=False)
@click.option(
    "--top",
    default=None,
    type=click.IntRange(min=1, max=1000),
    help="Rows per dimension (default 20 for one dimension, 5 for all of them).",
)
@click.option("--url", help="A worker's HTTP address (default: this machine's, from JOURNEY_WEB_*).")
@click.option("--json", "as_json", is_flag=True, help="Print the worker's JSON answers instead of tables.")
@user_errors
def impact(dimension: str | None, key: str | None, top: int | None, url: str | None, as_json: bool) -> None:
    """What each campaign, channel, referrer, referral channel and recovery is worth in PPP.

    `journey impact recovery` adds the second moment: how many failures were recovered,
    the customers at risk, and whether recovered customers are worth more than smooth ones.

    Without DIMENSION: the north star and the top entries of every dimension. With
    DIMENSION: its top entries by attributed PPP. With DIMENSION and KEY: that one entry."""
    settings = load_settings()
    base = (url or settings.web_url).rstrip("/")
    secret = settings.web_token
    token = None if secret is None else secret.get_secret_value()

    def fetch(path: str) -> Any:
        return fetch_json(base + path, token)

    if key is not None:
        assert dimension is not None  # click fills arguments in order
        entry = fetch(f"/impact/{dimension}/{urllib.parse.quote(key, safe='')}")
        if as_json:
            click.echo(json.dumps(entry, ensure_ascii=False))
            return
        for name, value in entry.items():
            shown = printable(value) if isinstance(value, str) else value
            click.echo(f"{name:>18}  {shown}")
        flags = flags_in_words(entry)
        click.echo(f"{'in words':>18}  {flags or 'no flag raised'}")
        click.echo(CAVEAT)
        return
    dimensions = [dimension] if dimension else list(DIMENSIONS[1:])
    rows = top or (20 if dimension else 5)
    summary = None if dimension else fetch("/impact")
    rankings = [fetch(f"/impact/{name}?top={rows}") for name in dimensions]
    if as_json:
        for answer in [summary, *rankings]:
            if answer is not None:
                click.echo(json.dumps(answer, ensure_ascii=False))
        return
    blocks = [] if summary is None else [render_summary(summary)]
    blocks += [render_ranking(ranking) for ranking in rankings]
    blocks += [render_second_moment(r["second_moment"]) for r in rankings if "second_moment" in r]
    click.echo("\n\n".join(blocks))
    click.echo(f"\n{CAVEAT}")
