"""`journey replay`: the final state of every customer from an event file, no broker."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from journey.customer import CustomerState
from journey.event_files import FileLine
from journey.scoring import ScoringRules, apply_event

__all__ = ["ReplayResult", "replay"]


@dataclass(slots=True)
class ReplayResult:
    states: dict[str, CustomerState] = field(default_factory=dict)
    events: int = 0
    duplicates: int = 0
    invalid: int = 0

    def sorted_states(self) -> list[CustomerState]:
        return [self.states[key] for key in sorted(self.states)]


def replay(
    lines: Iterable[FileLine],
    rules: ScoringRules,
    *,
    on_invalid: Callable[[FileLine], None] | None = None,
) -> ReplayResult:
    """Fold every valid line into its customer's state, in file order."""
    result = ReplayResult()
    states = result.states
    for line in lines:
        event = line.event
        if event is None:
            result.invalid += 1
            if on_invalid is not None:
                on_invalid(line)
            continue
        state = states.get(event.customer_id)
        if state is None:
            state = states[event.customer_id] = CustomerState(event.customer_id)
        if apply_event(state, event, rules).duplicate:
            result.duplicates += 1
        else:
            result.events += 1
    return result
