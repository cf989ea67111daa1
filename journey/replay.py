"""`journey replay`: the final state of every customer from a JSON-lines file, no broker."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from journey.customer import CustomerState
from journey.scoring import ScoringRules, apply_event
from schemas.decode import DEFAULT_MAX_EVENT_BYTES, InvalidEvent, parse_event

__all__ = ["ReplayResult", "read_lines", "replay_lines"]


@dataclass(slots=True)
class ReplayResult:
    states: dict[str, CustomerState] = field(default_factory=dict)
    events: int = 0
    duplicates: int = 0
    invalid: int = 0

    def sorted_states(self) -> list[CustomerState]:
        return [self.states[key] for key in sorted(self.states)]


def read_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(line number, bytes) of the non-blank lines; OSError for a file that cannot be read."""
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            stripped = line.strip()
            if stripped:
                yield number, stripped


def replay_lines(
    lines: Iterable[tuple[int, bytes]],
    rules: ScoringRules,
    *,
    on_invalid: Callable[[int, str], None] | None = None,
    max_bytes: int = DEFAULT_MAX_EVENT_BYTES,
) -> ReplayResult:
    """Fold every valid line into its customer's state, in file order."""
    result = ReplayResult()
    states = result.states
    currencies = rules.rates
    for number, raw in lines:
        try:
            event = parse_event(raw, expected_type=None, currencies=currencies, max_bytes=max_bytes)
        except InvalidEvent as exc:
            result.invalid += 1
            if on_invalid is not None:
                on_invalid(number, str(exc))
            continue
        state = states.get(event.customer_id)
        if state is None:
            state = states[event.customer_id] = CustomerState(event.customer_id)
        if apply_event(state, event, rules).duplicate:
            result.duplicates += 1
        else:
            result.events += 1
    return result
