"""The fuzz runs' shared settings and their case tally, reported at the end of every session.

A *case* is one hostile input handed to the surface under test (a message, a request, a
frame, an advertisement); an *example* is one hypothesis example, which may carry several
cases where one example per case would spend the time budget on hypothesis itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import HealthCheck, settings

MIN_CASES = 10_000

# Deterministic (derandomize: the same examples on every run and machine), no example
# database (nothing written outside tmp), no deadline (a loaded CI box is slow, not wrong).
FUZZ = settings(
    max_examples=MIN_CASES,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@dataclass
class Tally:
    examples: int = 0
    cases: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)

    def add(self, outcome: str, cases: int = 1) -> None:
        self.cases += cases
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + cases


TALLIES: dict[str, Tally] = {}
"""The tallies of the test running in this process (moved to its report when it ends)."""

TALLY_PROPERTY = "fuzz_tallies"


def tally(surface: str) -> Tally:
    """The (fresh) tally of `surface`: a rerun of a test starts from zero."""
    TALLIES[surface] = Tally()
    return TALLIES[surface]


def examples_for(cases_per_example: int) -> int:
    """How many examples make MIN_CASES cases."""
    return -(-MIN_CASES // cases_per_example)


def check_scale(t: Tally, minimum: int = MIN_CASES) -> None:
    assert t.cases >= minimum, f"only {t.cases} cases ran; the fuzz set promises {minimum}"
