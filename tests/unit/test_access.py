"""Access without a worker: the token comparison leaks nothing through its timing, the
setting reads from a file, and a session cookie is not the token."""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import SecretStr

from journey.settings import Settings
from stream.serving.web.access import Access, token_matches


def _superiority(slower: list[int], faster: list[int]) -> float:
    """P(a sample of `slower` > a sample of `faster`), ties counting half: the common-language
    effect size of the Mann-Whitney U test, 0.5 when the two timings do not differ."""
    ranked = sorted([(t, 0) for t in slower] + [(t, 1) for t in faster])
    ranks: list[float] = [0.0] * len(ranked)
    i = 0
    while i < len(ranked):
        j = i
        while j < len(ranked) and ranked[j][0] == ranked[i][0]:
            j += 1
        for k in range(i, j):
            ranks[k] = (i + j + 1) / 2  # average rank of a run of ties
        i = j
    rank_sum = sum(rank for rank, (_, group) in zip(ranks, ranked, strict=True) if group == 0)
    n1, n2 = len(slower), len(faster)
    return (rank_sum - n1 * (n1 + 1) / 2) / (n1 * n2)


def _timings(check: Callable[[str], object], token: str, rounds: int) -> tuple[list[int], list[int]]:
    """Timings of `check` on wrong candidates that differ from `token` at its first
    character, and on ones that differ only at its last: many distinct strings of each
    kind (where one string happens to sit in memory must not count), in an order that
    alternates, so that drift in the machine's speed and warm caches favour neither."""
    others = "0123456789abcdef"
    early = [o + token[1:] for o in others if o != token[0]]
    late = [token[:-1] + o for o in others if o != token[-1]]
    first: list[int] = []
    last: list[int] = []
    clock = time.perf_counter_ns
    for round_ in range(rounds):
        pair = ((early, first), (late, last)) if round_ % 2 else ((late, last), (early, first))
        for candidates, timings in pair:
            candidate = candidates[round_ % len(candidates)]
            start = clock()
            check(candidate)
            timings.append(clock() - start)
    return first, last


def test_a_wrong_token_takes_as_long_however_much_of_it_matched() -> None:
    token = secrets.token_hex(32_768)  # 64 KiB: a comparison that stops early would show plainly
    digest = hashlib.sha256(token.encode()).digest()
    first, last = _timings(lambda c: token_matches(c, digest), token, rounds=1500)
    ours = _superiority(last, first)
    # The control: plain `==`, which stops at the first difference, on the same candidates.
    naive_first, naive_last = _timings(lambda c: c == token, token, rounds=1500)
    naive = _superiority(naive_last, naive_first)
    assert naive > 0.9, f"the measurement cannot tell a leaking comparison ({naive:.2f})"
    assert 0.25 < ours < 0.75, f"a late mismatch takes longer than an early one ({ours:.2f})"


def test_the_session_cookie_is_not_the_token() -> None:
    access = Access(SecretStr("s3cret"))
    assert access.token_matches("s3cret") and not access.token_matches("s3cre")
    assert "s3cret" not in access.session_value()
    assert Access(SecretStr("other")).session_value() != access.session_value()
    assert Access(None).open and not access.open


def test_the_token_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JOURNEY_API_TOKEN", raising=False)
    assert Settings(api_token=SecretStr("  ")).web_token is None  # empty means unset
    token_file = tmp_path / "token"
    token_file.write_text("from-a-secret\n")
    assert Settings(api_token_file=token_file).web_token == SecretStr("from-a-secret")
    assert Settings(api_token=SecretStr("env"), api_token_file=token_file).web_token == SecretStr("env")
    with pytest.raises(ValueError, match="cannot read JOURNEY_API_TOKEN_FILE"):
        _ = Settings(api_token_file=tmp_path / "missing").web_token
    assert "from-a-secret" not in repr(Settings(api_token=SecretStr("from-a-secret")).public_view())
