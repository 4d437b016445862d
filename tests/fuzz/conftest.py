"""The fuzz runs' case counts, in the terminal summary of every session that ran any."""

from __future__ import annotations

import pytest

from tests.fuzz.cases import TALLIES


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not TALLIES:
        return
    terminalreporter.section("fuzz: hostile cases per surface")
    for surface, t in TALLIES.items():
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(t.outcomes.items()))
        terminalreporter.write_line(
            f"{surface:<28} {t.cases:>7} cases in {t.examples:>6} examples  ({outcomes})"
        )
