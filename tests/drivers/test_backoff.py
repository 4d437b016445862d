"""The one backoff rule (drivers/backoff.py) that drivers, supervisors, writer and notifier share."""

from __future__ import annotations

import random
from typing import Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import Field, ValidationError

from fleet.daemon.collector.writer import write_backoff
from fleet.drivers.backoff import Backoff
from fleet.drivers.base import DriverConfig

initials = st.floats(min_value=1e-3, max_value=600, allow_nan=False)
ratios = st.floats(min_value=1, max_value=1e4, allow_nan=False)
failures = st.integers(min_value=1, max_value=5000)
jitters = st.floats(min_value=0, max_value=1, allow_nan=False)


@given(initials, ratios, failures)
def test_a_pause_is_never_below_initial_nor_above_max(initial: float, ratio: float, n: int) -> None:
    backoff = Backoff(initial, initial * ratio)
    assert initial <= backoff.delay(n) <= initial * ratio


@given(initials, ratios, st.integers(min_value=1, max_value=200))
def test_each_pause_doubles_the_last_until_the_cap(initial: float, ratio: float, n: int) -> None:
    backoff = Backoff(initial, initial * ratio)
    assert backoff.delay(n + 1) == pytest.approx(min(backoff.max_s, 2 * backoff.delay(n)))


@given(initials, ratios)
def test_the_first_pause_is_the_initial_one(initial: float, ratio: float) -> None:
    assert Backoff(initial, initial * ratio).delay(1) == initial


@given(initials, ratios, failures, jitters, st.integers())
def test_jitter_shortens_by_at_most_its_share(
    initial: float, ratio: float, n: int, jitter: float, seed: int
) -> None:
    backoff = Backoff(initial, initial * ratio, jitter=jitter)
    delay = backoff.delay(n, rng=random.Random(seed))
    nominal = backoff.nominal(n)
    assert nominal * (1 - jitter) <= delay <= nominal <= backoff.max_s


def test_jitter_spreads_the_pauses() -> None:
    backoff = Backoff(1.0, 10.0, jitter=1.0)
    rng = random.Random(7)
    delays = {round(backoff.delay(3, rng=rng), 6) for _ in range(200)}
    assert len(delays) > 150
    assert min(delays) < 1.0  # full jitter may go down to nothing ...
    assert max(delays) > 3.0  # ... and up to the nominal 4 s


@given(initials, ratios, failures, st.floats(min_value=0, max_value=86400), st.integers())
def test_retry_after_is_honoured_plus_a_spread(
    initial: float, ratio: float, n: int, retry_after: float, seed: int
) -> None:
    backoff = write_backoff(initial, initial * ratio)
    delay = backoff.delay(n, rng=random.Random(seed), retry_after=retry_after)
    assert delay >= retry_after
    assert delay <= max(backoff.nominal(n), retry_after + initial)


def test_the_writer_uses_equal_jitter() -> None:
    backoff = write_backoff(0.5, 30)
    rng = random.Random(1)
    delays = [backoff.delay(4, rng=rng) for _ in range(500)]
    assert all(2.0 <= d <= 4.0 for d in delays)  # half the 4 s step at least
    assert min(delays) < 2.2
    assert max(delays) > 3.8


def test_a_very_long_outage_stays_at_the_cap() -> None:
    assert Backoff(0.5, 30, factor=10).delay(10**6) == 30
    assert Backoff(0.5, 30).delay(10**6) == 30


def test_the_counter_counts_failures_and_resets() -> None:
    counter = Backoff(1, 5).counter()
    assert [counter.next() for _ in range(5)] == [1, 2, 4, 5, 5]
    assert counter.failures == 5
    counter.reset()
    assert (counter.failures, counter.next()) == (0, 1)


@pytest.mark.parametrize(
    ("initial", "maximum", "factor", "jitter"),
    [(0, 1, 2, 0), (-1, 1, 2, 0), (2, 1, 2, 0), (1, 2, 0.5, 0), (1, 2, 2, 1.5), (1, 2, 2, -0.1)],
)
def test_nonsense_is_refused(initial: float, maximum: float, factor: float, jitter: float) -> None:
    with pytest.raises(ValueError, match="backoff"):
        Backoff(initial, maximum, factor, jitter)


class _Config(DriverConfig):
    kind: Literal["test"] = Field("test", description="Driver kind.")
    poke_backoff_initial_s: float = Field(1.0, gt=0, description="First pause.")
    poke_backoff_max_s: float = Field(10.0, gt=0, description="Longest pause.")


def test_a_config_pair_out_of_order_is_refused_at_the_max_key() -> None:
    assert _Config(device="d-1", poke_backoff_initial_s=5, poke_backoff_max_s=5)
    with pytest.raises(ValidationError) as caught:
        _Config(device="d-1", poke_backoff_initial_s=5, poke_backoff_max_s=4)
    [error] = caught.value.errors()
    assert (error["loc"], error["msg"]) == (
        ("poke_backoff_max_s",),
        "must be at least poke_backoff_initial_s",
    )


def test_an_invalid_initial_is_reported_alone() -> None:
    with pytest.raises(ValidationError) as caught:
        _Config(device="d-1", poke_backoff_initial_s=-1, poke_backoff_max_s=4)
    assert [e["loc"] for e in caught.value.errors()] == [("poke_backoff_initial_s",)]
