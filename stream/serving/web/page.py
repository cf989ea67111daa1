"""The journey page as HTML: the circle of moments, the north star, what campaigns,
channels and referrers are worth, the platinum customers and a customer's card.

Rendered on the server, complete at first paint; the live feed sends the same sections
again as they change (`stream.serving.web.live`). Every figure is the value the JSON API gives,
held in `data-entry`, `data-field` and `data-value`, and only shown in a friendlier format.
Every text that came from a producer goes through `escape` (with quotes), and the page
carries no inline script or style: the Content-Security-Policy forbids both.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from html import escape
from typing import Any

from journey.recovery import second_moment
from stream.serving.web.figures import (
    DASH,
    attr,
    compact,
    count,
    customer_link,
    figure,
    holder,
    percent,
    plain,
)

__all__ = ["DIMENSION_TITLES", "LIVE_SECTIONS", "render_page", "render_sections", "render_sign_in"]

# The live sections, by element id, in page order; the customer card is not live.
LIVE_SECTIONS = ("north", "circle", "second", "impact", "platinum")

DIMENSION_TITLES = {
    "campaign": "Campaigns",
    "channel": "Channels",
    "referral_channel": "Referral channels",
    "referrer": "Referrers",
}
_DIMENSION_KEY = {
    "campaign": "Campaign",
    "channel": "Channel",
    "referral_channel": "Share channel",
    "referrer": "Referrer",
}

# SPEC.md, "The journey model": one sentence each.
_MOMENTS = {
    "zmot": ("ZMOT", "Zero moment: researching before buying (search, reviews, a friend's post)."),
    "fmot": ("FMOT", "First moment: the first impression of the product (shelf, product page, store)."),
    "smot": ("SMOT", "Second moment: using it, at every visit; a bad one recovered well keeps the customer."),
    "umot": ("UMOT", "Ultimate moment: sharing the experience, which becomes another person's ZMOT."),
}
CAVEAT = (
    "These compare the customers a key reached with those it did not: an association, "
    "not proof that the key caused the difference."
)


def _now() -> str:
    return datetime.now(UTC).strftime("%H:%M:%S UTC")


def render_north(everyone: Mapping[str, Any]) -> str:
    entry = "all/*"
    tiles = [
        ("Total PPP", "ppp", compact(everyone["ppp"])),
        ("Mean PPP", "mean_ppp", plain(everyone["mean_ppp"])),
        ("Mean CSAT", "mean_csat", plain(everyone["mean_csat"])),
        ("Total CLTV", "cltv", compact(everyone["cltv"])),
        ("Customers", "customers", count(everyone["customers"])),
        ("Buyers", "buyers", count(everyone["buyers"])),
    ]
    items = "".join(
        f'<div class="tile"><dt>{label}</dt>{figure(entry, field, everyone[field], shown, tag="dd")}</div>'
        for label, field, shown in tiles
    )
    return f'<h2 id="north-title">The north star: PPP = CSAT \u00d7 CLTV</h2><dl class="tiles">{items}</dl>'


# The circle: four moments clockwise from the top, on a ring of radius 140 around (200, 200).
_CENTRE, _RING, _NODE = 200, 140, 50
_NODES = {"zmot": (200, 60), "fmot": (340, 200), "smot": (200, 340), "umot": (60, 200)}
# Each arc from one moment to the next along the ring, and where its label sits.
_ARCS = {
    "fmot": ("M 248 72 A 140 140 0 0 1 328 152", (312, 88)),
    "smot": ("M 328 248 A 140 140 0 0 1 248 328", (312, 318)),
    "umot": ("M 152 328 A 140 140 0 0 1 72 248", (88, 318)),
}
_BACK = ("M 72 152 A 140 140 0 0 1 152 72", (88, 88))


def render_circle(circle: Mapping[str, Any]) -> str:
    # One SVG drawn top to bottom (76 lines): its parts share the coordinates set here.
    entry = "all/*"
    moments, onward = circle["moments"], circle["onward"]
    parts = [
        '<defs><marker id="head" viewBox="0 0 10 10" refX="8" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" class="head"/></marker></defs>',
        f'<circle cx="{_CENTRE}" cy="{_CENTRE}" r="{_RING}" class="ring"/>',
    ]
    for moment, (path, (x, y)) in _ARCS.items():
        before = list(_MOMENTS)[list(_MOMENTS).index(moment) - 1]
        share = onward[moment]
        label = (
            f"{percent(share)} of the customers who reached {_MOMENTS[before][0]} also reached "
            f"{_MOMENTS[moment][0]}"
            if share is not None
            else f"How many of the customers at {_MOMENTS[before][0]} also reached {_MOMENTS[moment][0]}: "
            "not known (no customer there yet, or counts kept from before this release)"
        )
        parts.append(f'<path d="{path}" class="arc" marker-end="url(#head)"><title>{label}</title></path>')
        parts.append(
            figure(
                entry,
                f"onward.{moment}",
                onward[moment],
                percent(onward[moment]),
                tag="text",
                extra=f' x="{x}" y="{y}" class="share" text-anchor="middle"',
            )
        )
    path, (x, y) = _BACK
    parts.append(
        f'<path d="{path}" class="arc back" marker-end="url(#head)"><title>UMOT becomes the next '
        f"person's ZMOT: {count(circle['referred'])} customers brought in by referrals</title></path>"
    )
    parts.append(
        f'<text x="{x - 30}" y="{y - 28}" class="share back" text-anchor="middle">'
        + figure(entry, "referred", circle["referred"], f"+{count(circle['referred'])} referred", tag="tspan")
        + "</text>"
        f'<text x="{x - 30}" y="{y - 10}" class="share back" text-anchor="middle">K '
        + figure(entry, "k_factor", circle["k_factor"], plain(circle["k_factor"]), tag="tspan")
        + "</text>"
    )
    nodes = []
    for moment, (x, y) in _NODES.items():
        name, sentence = _MOMENTS[moment]
        reached = moments[moment]
        nodes.append(
            f'<g class="moment {moment}" tabindex="0" role="img" '
            f'aria-label="{name}: {count(reached)} customers. {attr(sentence)}">'
            f"<title>{escape(sentence)}</title>"
            f'<circle cx="{x}" cy="{y}" r="{_NODE}" class="node"/>'
            f'<text x="{x}" y="{y - 6}" class="name" text-anchor="middle">{name}</text>'
            + figure(
                entry,
                f"moments.{moment}",
                reached,
                count(reached),
                tag="text",
                extra=f' x="{x}" y="{y + 18}" class="reached" text-anchor="middle"',
            )
            + (_smot_failures(circle, x, y) if moment == "smot" else "")
            + f'<foreignObject x="{_CENTRE - 85}" y="{_CENTRE - 45}" width="170" height="90" class="explain">'
            f'<p xmlns="http://www.w3.org/1999/xhtml">{escape(sentence)}</p></foreignObject></g>'
        )
    parts.append(holder(entry, "moments", dict(moments), "".join(nodes), tag="g"))
    svg = (
        '<svg viewBox="0 0 400 400" role="group" aria-labelledby="circle-title" class="circle">'
        + "".join(parts)
        + "</svg>"
    )
    legend = "".join(f"<li><b>{name}</b> {escape(sentence)}</li>" for name, sentence in _MOMENTS.values())
    return (
        '<h2 id="circle-title">The circle of moments</h2>'
        f"{svg}"
        '<p class="hint">Each moment shows the customers who reached it; each arrow, the share of '
        "the customers at the moment before who also reached the next one; the arc back to ZMOT, the customers "
        "brought in by referrals and the K-factor (referred per customer who shared). "
        "Hover over or focus a moment for what it is.</p>"
        f'<ul class="legend">{legend}</ul>'
    )


def _smot_failures(circle: Mapping[str, Any], x: int, y: int) -> str:
    """Under the SMOT node's count: customers with a failure, and how many were recovered."""
    failed, recovered = circle.get("smot_failed", 0), circle.get("smot_recovered", 0)
    return (
        f'<text x="{x}" y="{y + 34}" class="failures" text-anchor="middle">'
        + figure(_SECOND, "failed", failed, f"{count(failed)} failed", tag="tspan")
        + ", "
        + figure(_SECOND, "recovered", recovered, f"{count(recovered)} recovered", tag="tspan")
        + "</text>"
    )


# The second moment's figures that no impact entry holds (`GET /impact/recovery`'s
# `second_moment`) are published under this entry name.
_SECOND = "second_moment"
_RECOVERY_TITLES = (
    ("smooth", "Smooth", "SMOT touchpoints and no failure"),
    ("recovered", "Recovered", "a good SMOT after the latest failure"),
    ("unrecovered", "Unrecovered", "no good SMOT after the latest failure"),
)


def render_second(moment: Mapping[str, Any], entries: Mapping[str, Mapping[str, Any] | None]) -> str:
    """The second moment: smooth, recovered and unrecovered customers side by side, which
    way it goes in words, and the customers the model warns about."""
    rows = []
    for key, title, meaning in _RECOVERY_TITLES:
        entry = f"recovery/{key}"
        row = entries.get(key)
        if row is None:
            rows.append(
                f'<tr><th scope="row">{title} <small>{meaning}</small></th>'
                f'<td class="num">0</td><td class="num">{DASH}</td><td class="num">{DASH}</td>'
                f'<td class="num">{DASH}</td></tr>'
            )
            continue
        rows.append(
            f'<tr><th scope="row">{title} <small>{meaning}</small></th>'
            + _cell(entry, row, "customers", count)
            + _cell(entry, row, "mean_ppp", plain)
            + _cell(entry, row, "conversion", percent)
            + _cell(entry, row, "mean_csat", plain)
            + "</tr>"
        )
    rate = moment["recovery_rate"]
    at_risk = moment["at_risk"]
    return (
        '<h2 id="second-title">The second moment: failures and recoveries</h2>'
        '<p class="verdict">' + figure(_SECOND, "verdict", moment["verdict"], moment["verdict"]) + "</p>"
        '<div class="scroll"><table><thead><tr><th scope="col">Customers</th><th scope="col">Count</th>'
        '<th scope="col">Mean PPP</th><th scope="col">Conversion</th><th scope="col">Mean CSAT</th>'
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
        "<p>"
        + figure(_SECOND, "recovered", moment["recovered"], count(moment["recovered"]))
        + " of "
        + figure(_SECOND, "failed", moment["failed"], count(moment["failed"]))
        + " customers with a SMOT failure were recovered ("
        + figure(_SECOND, "recovery_rate", rate, percent(rate))
        + "); recovered against smooth in mean PPP: "
        + figure(
            _SECOND,
            "recovered_vs_smooth",
            moment["recovered_vs_smooth"],
            percent(moment["recovered_vs_smooth"], signed=True),
        )
        + ".</p>"
        f'<p class="{"warn" if at_risk else "calm"}">'
        + figure(_SECOND, "at_risk", at_risk, count(at_risk))
        + f" customers at risk: {escape(moment['at_risk_rule'])}. A failure recovered well keeps a "
        "customer; the same failure again and again loses them.</p>"
        f'<p class="caveat">{CAVEAT}</p>'
    )


def _flags(entry: str, row: Mapping[str, Any]) -> str:
    six, harm = row.get("past_six_percent"), row.get("harms_experience")
    return figure(
        entry,
        "harms_experience",
        harm,
        "\u26a0 Converts but satisfies less" if harm else "",
        extra=' class="flag harm"' if harm else ' class="flag"',
    ) + figure(
        entry,
        "past_six_percent",
        six,
        "\u2197 Past the 6% line: invest in the experience" if six else "",
        extra=' class="flag six"' if six else ' class="flag"',
    )


def _uplift(entry: str, field: str, value: float | None) -> str:
    tone = "" if value is None or value == 0 else (" up" if value > 0 else " down")
    return figure(entry, field, value, percent(value, signed=True), tag="td", extra=f' class="num{tone}"')


# The figures of a ranking's row, each with how a person reads it.
_RANKED: tuple[tuple[str, Callable[[Any], str]], ...] = (
    ("customers", count),
    ("attributed_ppp", compact),
    ("mean_ppp", plain),
    ("conversion", percent),
)


def _cell(entry: str, row: Mapping[str, Any], field: str, shown: Callable[[Any], str]) -> str:
    return figure(entry, field, row[field], shown(row[field]), tag="td", extra=' class="num"')


def render_ranking(dimension: str, ranking: Mapping[str, Any], *, link_keys: bool = False) -> str:
    title = DIMENSION_TITLES[dimension]
    rows = []
    for row in ranking["top"]:
        entry = f"{dimension}/{row['key']}"
        key = holder(entry, "key", row["key"], customer_link(row["key"]) if link_keys else escape(row["key"]))
        tone = " harm" if row.get("harms_experience") else (" six" if row.get("past_six_percent") else "")
        rows.append(
            f'<tr class="entry{tone}"><th scope="row">{key}</th>'
            + "".join(_cell(entry, row, field, shown) for field, shown in _RANKED)
            + _uplift(entry, "ppp_uplift", row["ppp_uplift"])
            + _uplift(entry, "conversion_uplift", row["conversion_uplift"])
            + _uplift(entry, "csat_uplift", row["csat_uplift"])
            + f"<td>{_flags(entry, row)}</td></tr>"
        )
    shown, total = len(ranking["top"]), ranking["entries"]
    body = "".join(rows) or f'<tr><td colspan="9" class="empty">No {title.lower()} yet.</td></tr>'
    return (
        f'<section class="ranking" id="impact-{dimension}" aria-labelledby="title-{dimension}">'
        f'<h3 id="title-{dimension}">{title} <small>top {shown} of {total:,} by attributed PPP</small></h3>'
        '<div class="scroll"><table>'
        f'<thead><tr><th scope="col">{_DIMENSION_KEY[dimension]}</th><th scope="col">Customers</th>'
        '<th scope="col">Attributed PPP</th><th scope="col">Mean PPP</th><th scope="col">Conversion</th>'
        '<th scope="col">PPP uplift</th><th scope="col">Conversion uplift</th><th scope="col">CSAT uplift</th>'
        '<th scope="col">Signal</th></tr></thead>'
        f"<tbody>{body}</tbody></table></div></section>"
    )


def render_impact(rankings: Mapping[str, Mapping[str, Any]]) -> str:
    nav = "".join(f'<li><a href="#impact-{d}">{title}</a></li>' for d, title in DIMENSION_TITLES.items())
    sections = "".join(
        render_ranking(dimension, rankings[dimension], link_keys=dimension == "referrer")
        for dimension in DIMENSION_TITLES
    )
    return (
        '<h2 id="impact-title">What each campaign, channel and referrer is worth</h2>'
        f'<nav aria-label="Dimensions"><ul class="tabs">{nav}</ul></nav>'
        f'<p class="caveat">{CAVEAT} Uplifts compare the customers with a key to everyone else; '
        "\u201cpast the 6% line\u201d means a conversion uplift of 6% or more, where more money for "
        "conversion brings less and the experience is where to invest.</p>"
        f"{sections}"
    )


def _moments(entry: str, moments: Mapping[str, int]) -> str:
    parts = " ".join(
        f'<abbr title="{_MOMENTS[m][0]}">{_MOMENTS[m][0][0]}</abbr>\u00a0'
        + figure(entry, f"moments.{m}", moments[m], count(moments[m]))
        for m in _MOMENTS
    )
    return holder(entry, "moments", dict(moments), parts)


def _links(entry: str, field: str, ids: Sequence[str]) -> str:
    return holder(entry, field, list(ids), ", ".join(customer_link(i) for i in ids) if ids else DASH)


_PLATINUM: tuple[tuple[str, Callable[[Any], str]], ...] = (
    ("ppp", compact),
    ("csat", plain),
    ("cltv", compact),
)


def render_platinum(customers: Sequence[Mapping[str, Any]]) -> str:
    rows = []
    for rank, state in enumerate(customers, 1):
        entry = f"customer/{state['customer_id']}"
        rows.append(
            f'<tr><td class="num">{rank}</td><th scope="row">'
            + holder(entry, "customer_id", state["customer_id"], customer_link(state["customer_id"]))
            + "</th>"
            + "".join(_cell(entry, state, field, shown) for field, shown in _PLATINUM)
            + f"<td>{_moments(entry, state['moments'])}</td>"
            + f"<td>{_links(entry, 'referred_by', state['referred_by'])}</td></tr>"
        )
    body = "".join(rows) or '<tr><td colspan="7" class="empty">No customers yet.</td></tr>'
    return (
        '<h2 id="platinum-title">Platinum customers <small>the top 10 by PPP</small></h2>'
        '<div class="scroll"><table><thead><tr><th scope="col">#</th><th scope="col">Customer</th>'
        '<th scope="col">PPP</th><th scope="col">CSAT</th><th scope="col">CLTV</th>'
        '<th scope="col">Moments</th><th scope="col">Referred by</th></tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


def render_card(customer_id: str | None, state: Mapping[str, Any] | None) -> str:
    """The looked-up customer's card, a message for an unknown id, or nothing asked yet."""
    form = (
        '<form class="lookup" method="get" action="/" role="search">'
        '<label for="customer">Customer id</label>'
        f'<input id="customer" name="customer" type="search" required maxlength="256" '
        f'value="{attr(customer_id or "")}" autocomplete="off">'
        '<button type="submit">Look up</button></form>'
    )
    if customer_id is None:
        card = ""
    elif state is None:
        card = (
            f'<p class="notice" role="alert">No customer \u201c{escape(customer_id)}\u201d is known to '
            "journey. Check the id: a customer appears with its first valid event.</p>"
        )
    else:
        entry = f"customer/{state['customer_id']}"
        rows = [
            ("PPP", figure(entry, "ppp", state["ppp"], plain(state["ppp"]))),
            ("CSAT", figure(entry, "csat", state["csat"], plain(state["csat"]))),
            ("CLTV", figure(entry, "cltv", state["cltv"], plain(state["cltv"]))),
            (
                "CLTV, last 365 days",
                figure(entry, "cltv_365d", state["cltv_365d"], plain(state["cltv_365d"])),
            ),
            ("Moments", _moments(entry, state["moments"])),
            ("Surveys", figure(entry, "surveys", state["surveys"], count(state["surveys"]))),
            ("Purchases", figure(entry, "purchases", state["purchases"], count(state["purchases"]))),
            ("Refunds", figure(entry, "refunds", state["refunds"], count(state["refunds"]))),
            ("First seen", figure(entry, "first_seen", state["first_seen"], state["first_seen"])),
            ("Last seen", figure(entry, "last_seen", state["last_seen"], state["last_seen"])),
            ("Campaigns", _words(entry, "campaigns", state["campaigns"])),
            ("Channels", _words(entry, "channels", state["channels"])),
            ("Referred by", _links(entry, "referred_by", state["referred_by"])),
            ("Referral channels", _words(entry, "referral_channels", state["referral_channels"])),
            (
                "SMOT failures",
                # `.get`: a state of the page's tests, or of a release before the second moment.
                figure(
                    entry,
                    "smot_failures",
                    state.get("smot_failures", 0),
                    count(state.get("smot_failures", 0)),
                ),
            ),
            ("Recovery", _recovery(entry, state.get("recovery"))),
            # The person's other ids (SPEC.md, "Identity"); any of them finds this card.
            ("Also known as", _words(entry, "aliases", state.get("aliases", []))),
            ("Version", figure(entry, "version", state["version"], count(state["version"]))),
        ]
        items = "".join(f"<div><dt>{label}</dt><dd>{value}</dd></div>" for label, value in rows)
        card = (
            f'<article class="card" aria-labelledby="card-title"><h3 id="card-title">'
            f"Customer {escape(state['customer_id'])}</h3><dl>{items}</dl></article>"
        )
    return f'<h2 id="card-heading">Look up a customer</h2>{form}{card}'


def _recovery(entry: str, recovery: str | None) -> str:
    shown = {key: title for key, title, _ in _RECOVERY_TITLES}.get(recovery or "", "No SMOT yet")
    return figure(entry, "recovery", recovery, shown)


def _words(entry: str, field: str, words: Sequence[str]) -> str:
    return holder(entry, field, list(words), ", ".join(escape(w) for w in words) if words else DASH)


def render_sections(
    summary: Mapping[str, Any],
    circle: Mapping[str, Any],
    rankings: Mapping[str, Mapping[str, Any]],
    platinum: Sequence[Mapping[str, Any]],
    second: tuple[Mapping[str, Any], Mapping[str, Mapping[str, Any] | None]] | None = None,
) -> dict[str, str]:
    """The live sections' inner HTML, by element id; `second` is the second moment's
    summary and its `recovery` entries by key."""
    moment, entries = second if second is not None else (second_moment({}, 0), {})
    return {
        "north": render_north(summary),
        "circle": render_circle(circle),
        "second": render_second(moment, entries),
        "impact": render_impact(rankings),
        "platinum": render_platinum(platinum),
    }


_TITLE = '<h1><span class="logo" aria-hidden="true">\u25cb</span> journey</h1>'


def _head(title: str, asset: Callable[[str], str]) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{title}</title>"
        f'<link rel="icon" href="{asset("icon.svg")}" type="image/svg+xml">'
        f'<link rel="stylesheet" href="{asset("journey.css")}">'
    )


def render_sign_in(*, asset: Callable[[str], str], refused: bool) -> str:
    """The sign-in form (SPEC.md, "Access"): the token once, then a session cookie."""
    notice = '<p class="notice" role="alert">That token was not accepted.</p>' if refused else ""
    return (
        _head("journey: sign in", asset) + f"</head><body><header>{_TITLE}</header>"
        '<main><section class="panel signin" aria-labelledby="signin-title">'
        '<h2 id="signin-title">Sign in</h2>'
        "<p>This worker asks for its API token (<code>JOURNEY_API_TOKEN</code>) before it shows customers' data.</p>"
        f"{notice}"
        '<form class="lookup" method="post" action="/signin">'
        '<label for="token">API token</label>'
        '<input id="token" name="token" type="password" required autocomplete="current-password">'
        '<button type="submit">Sign in</button></form></section></main></body></html>'
    )


def render_page(
    sections: Mapping[str, str], card: str, *, asset: Callable[[str], str], signed_in: bool = False
) -> str:
    """The whole page; `asset` gives an asset's URL (with its version, for caching)."""
    wide = {"second", "impact", "platinum"}
    live = "".join(
        f'<section id="{name}" aria-labelledby="{name}-title" class="panel{" wide" if name in wide else ""}">'
        f"{sections[name]}</section>"
        for name in LIVE_SECTIONS
    )
    sign_out = (
        '<form method="post" action="/signout" class="signout"><button type="submit">Sign out</button></form>'
        if signed_in
        else ""
    )
    return (
        _head("journey: the circle of the customer journey", asset)
        + f'<script src="{asset("journey.js")}" defer></script></head><body>'
        f"<header>{_TITLE}"
        f'<p id="live" role="status" data-state="snapshot">Snapshot of {_now()}: '
        f"reload for the latest figures.</p>{sign_out}</header><main>"
        f"{live}"
        f'<section id="card" aria-labelledby="card-heading" class="panel">{card}</section>'
        "</main><footer><p>PPP = CSAT \u00d7 CLTV, per SPEC.md. JSON: "
        '<a href="/impact">/impact</a>, <a href="/circle">/circle</a>, '
        '<a href="/customers?top=10">/customers?top=10</a>.</p></footer></body></html>'
    )
