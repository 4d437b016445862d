"""The fuzz runs' case counts travel with each test's report.

A test's tallies are attached to its report (`user_properties`), so they reach the process
that prints the summary whether the tests ran in it or in pytest-xdist workers; the
summary itself is printed by tests/conftest.py, which every process loads.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import asdict

import pytest

from tests.fuzz.cases import TALLIES, TALLY_PROPERTY


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if call.when == "call" and TALLIES:
        report.user_properties.append(
            (TALLY_PROPERTY, {surface: asdict(t) for surface, t in TALLIES.items()})
        )
        TALLIES.clear()
    return report
