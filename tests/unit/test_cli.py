"""The command line as a user meets it: help everywhere, one-line errors, replay output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.conformance import state_mismatches

COMMANDS = ["up", "worker", "replay", "simulate", "publish", "tail", "impact", "topics", "schemas"]


def journey(
    *args: str, env: dict[str, str] | None = None, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        capture_output=True,
        env={**os.environ, **(env or {})},
        input=stdin,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_every_command_has_help(command: str | None) -> None:
    result = journey(*([command] if command else []), "--help")
    assert result.returncode == 0
    assert b"Usage:" in result.stdout


def test_replay_prints_sorted_states_equal_to_the_expected(conformance: Any) -> None:
    result = journey(
        "replay", str(conformance.events_path), env={"JOURNEY_FX_RATES": str(conformance.root / "fx.json")}
    )
    assert result.returncode == 0, result.stderr
    states = [json.loads(line) for line in result.stdout.splitlines()]
    assert [s["customer_id"] for s in states] == sorted(conformance.expected_states)
    for state in states:
        assert state_mismatches(conformance.expected_states[state["customer_id"]], state) == []


def test_replay_reports_invalid_lines_and_goes_on(tmp_path: Path) -> None:
    good = {
        "type": "survey",
        "event_id": "e",
        "customer_id": "c",
        "occurred_at": "2026-01-01T00:00:00Z",
        "score": 9,
    }
    path = tmp_path / "events.jsonl"
    path.write_text(
        json.dumps(good) + "\n{broken\n" + json.dumps({**good, "event_id": "f", "score": 99}) + "\n"
    )
    result = journey("replay", str(path))
    assert result.returncode == 0
    assert [json.loads(line)["csat"] for line in result.stdout.splitlines()] == [9.0]
    assert f"{path}:2: skipped: not JSON".encode() in result.stderr
    assert f"{path}:3: skipped: score: 99 is outside scale 1-10".encode() in result.stderr
    strict = journey("replay", "--strict", str(path))
    assert strict.returncode == 1
    [line] = strict.stderr.decode().strip().splitlines()
    assert line.startswith(f"journey: error: {path}:2: not JSON (Expecting property name")


@pytest.mark.parametrize(
    ("args", "env", "message", "code"),
    [
        (["replay", "/no/such/file"], {}, "No such file or directory: /no/such/file", 1),
        (["replay"], {}, "Missing argument 'FILE'", 2),
        (["up", "--rate", "fast"], {}, "'fast' is not a valid float", 2),
        (["nonsense"], {}, "No such command 'nonsense'", 2),
        (["replay", "x"], {"JOURNEY_CSAT_WINDOW_DAYS": "soon"}, "JOURNEY_CSAT_WINDOW_DAYS", 1),
        (
            ["replay", "x"],
            {"JOURNEY_FX_RATES": "/no/rates.json"},
            "cannot read FX rates file /no/rates.json",
            1,
        ),
        (
            ["worker"],
            {"JOURNEY_BROKER": "localhost:9092"},
            "JOURNEY_BROKER: must look like kafka://",
            1,
        ),
        (["worker"], {"JOURNEY_BROKER": ""}, "JOURNEY_BROKER is not set", 1),
    ],
)
def test_bad_input_gives_one_line_and_a_nonzero_exit(
    args: list[str], env: dict[str, str], message: str, code: int
) -> None:
    result = journey(*args, env=env)
    assert result.returncode == code
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("journey: error: ") and message in lines[0], lines[0]


def test_bad_fx_file_is_named(tmp_path: Path) -> None:
    rates = tmp_path / "fx.json"
    rates.write_text('{"EUR": -1}')
    result = journey("replay", "x", env={"JOURNEY_FX_RATES": str(rates)})
    assert result.returncode == 1
    assert b"rate of EUR must be a positive number" in result.stderr


def test_unreachable_broker_is_one_line() -> None:
    from stream.brokers.embedded import free_port

    result = journey("simulate", "--limit", "1", env={"JOURNEY_BROKER": f"kafka://127.0.0.1:{free_port()}"})
    assert result.returncode == 1
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "cannot reach the broker" in lines[0], lines


def test_simulate_writes_replayable_journeys(tmp_path: Path) -> None:
    out = tmp_path / "sim.jsonl"
    result = journey("simulate", "--customers", "60", "--seed", "3", "--out", str(out))
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in out.read_text().splitlines()]
    kinds = {e["type"] for e in events}
    assert kinds == {"touchpoint", "purchase", "survey", "share", "identify"}
    assert any(e.get("referral_share_id") for e in events)
    again = tmp_path / "again.jsonl"
    journey("simulate", "--customers", "60", "--seed", "3", "--out", str(again))
    assert again.read_bytes() == out.read_bytes()
    replayed = journey("replay", "--strict", str(out))
    assert replayed.returncode == 0, replayed.stderr
    states = [json.loads(line) for line in replayed.stdout.splitlines()]
    assert len(states) >= 50
    # Some people researched anonymously and were identified at their first purchase: the
    # person's state holds the anonymous touchpoints and the purchase together.
    identified = [s for s in states if s["aliases"]]
    assert identified and all(s["purchases"] and s["moments"]["zmot"] for s in identified)
    assert not any(s["customer_id"].startswith("c-anon-") and s["purchases"] for s in states)


def test_replay_impact_prints_the_expected_entries(impact_conformance: Any) -> None:
    from tests.fixtures.conformance import impact_mismatches

    result = journey(
        "replay",
        str(impact_conformance.events_path),
        "--impact",
        env={"JOURNEY_FX_RATES": str(impact_conformance.events_path.parent / "fx.json")},
    )
    assert result.returncode == 0, result.stderr
    entries = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(e["dimension"], e["key"]) for e in entries] == sorted(
        (e["dimension"], e["key"]) for e in entries
    )
    assert all("version" not in e for e in entries)
    assert impact_mismatches(impact_conformance.expected_impact, entries) == []


def test_impact_without_a_worker_is_one_line_and_exit_1() -> None:
    result = journey("impact", "--url", "http://127.0.0.1:9")
    assert result.returncode == 1
    assert result.stderr.decode().count("\n") == 1
    assert b"cannot reach a worker at http://127.0.0.1:9" in result.stderr
    wrong = journey("impact", "planet")
    assert wrong.returncode == 2
    assert b"planet" in wrong.stderr and b"Traceback" not in wrong.stderr


def test_untrusted_keys_lose_their_control_characters_on_the_terminal() -> None:
    from cli.impact import printable, render_ranking

    assert printable("\x1b[2Jspring") == "\\u001b[2Jspring"
    ranking = {
        "dimension": "campaign",
        "entries": 1,
        "top": [
            {
                "key": "été\x1b[31m",
                "customers": 3,
                "attributed_ppp": 1234.5,
                "mean_ppp": 411.5,
                "conversion": 0.6667,
                "ppp_uplift": 0.25,
                "conversion_uplift": 0.07,
                "csat_uplift": -0.1,
                "past_six_percent": True,
                "harms_experience": True,
            }
        ],
    }
    text = render_ranking(ranking)
    assert "\x1b" not in text and "été\\u001b[31m" in text
    assert "past the 6% line; converts but satisfies less" in text
    assert "+25.0%" in text and "1,234.50" in text and "66.7%" in text


def test_the_demo_opens_the_page_only_where_a_screen_can_show_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from cli import run

    monkeypatch.setattr(run.sys, "platform", "linux")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert not run.has_screen()  # a server or CI: Python would start a text browser here
    monkeypatch.setenv("DISPLAY", ":0")
    assert run.has_screen()


def test_the_scoreboard_drops_an_erased_customer() -> None:
    from cli.scoreboard import Scoreboard

    board = Scoreboard()
    for customer, ppp in (("a", 5.0), ("b", 9.0)):
        board.add({"customer_id": customer, "ppp": ppp, "csat": 1.0, "cltv": ppp, "version": 1, "as_of": "t"})
    board.erase("b")
    shown = board.render(10)
    assert "top 1 of 1 customers by PPP (3 updates read)" in shown and " b " not in shown
