"""Rates learned from a device's own history: robust to gaps, swaps, noise, idle hours and a
handful of points; None until there is enough history."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleet.daemon.board.drain import MAX_RATE, charge_rate, drain_rate, learn
from fleet.daemon.board.model import Sample

M = 60_000
H = 3_600_000
T0 = 1_796_000_000_000


def line(
    start_ms: int,
    hours: float,
    pct0: float,
    per_h: float,
    *,
    charging: bool = False,
    step_min: int = 5,
) -> list[Sample]:
    n = int(hours * 60 / step_min)
    return [
        Sample(start_ms + i * step_min * M, pct0 + per_h * i * step_min / 60, charging)
        for i in range(n + 1)
    ]


def test_too_little_history_is_none() -> None:
    assert drain_rate([], min_history_h=2) is None
    assert drain_rate(line(T0, 1.5, 90, -8), min_history_h=2) is None
    assert (
        drain_rate([Sample(T0, 90, False), Sample(T0 + 3 * H, 60, False)], min_history_h=2) is None
    )


def test_a_steady_drain_is_learned() -> None:
    assert drain_rate(line(T0, 3, 90, -8), min_history_h=2) == pytest.approx(8)


def test_noise_and_integer_rounding_do_not_move_it_much() -> None:
    rng = random.Random(7)
    noisy = [
        Sample(s.ts_ms, round(min(100.0, max(0.0, s.pct + rng.uniform(-1.5, 1.5)))), False)
        for s in line(T0, 4, 95, -6)
    ]
    assert drain_rate(noisy, min_history_h=2) == pytest.approx(6, rel=0.1)


def test_a_battery_swap_is_not_a_negative_drain() -> None:
    before = line(T0, 2, 60, -10)  # 60 -> 40
    after = line(T0 + 2 * H + 5 * M, 2, 100, -10)  # swapped for a full pack
    assert drain_rate(before + after, min_history_h=2) == pytest.approx(10)


def test_a_long_gap_splits_the_history() -> None:
    # Unknown what happened in 5 h without samples (an unseen charge up to 90 %).
    first = line(T0, 1.5, 80, -10)
    second = line(T0 + 6 * H, 1.5, 90, -10)
    assert drain_rate(first + second, min_history_h=2) == pytest.approx(10)
    # ... and the gap itself is not counted as history.
    assert drain_rate(first + second, min_history_h=3.5) is None


def test_hours_parked_at_a_level_are_not_in_service() -> None:
    riding = line(T0, 2, 90, -9)  # 90 -> 72
    parked = [Sample(T0 + 2 * H + i * 5 * M, 72, False) for i in range(1, 49)]  # 4 h level
    again = line(T0 + 6 * H + 5 * M, 1, 72, -9)
    rate = drain_rate(riding + parked + again, min_history_h=2)
    # Counting the parked hours would have made it 27 points in 7 h: under 4 %/h.
    assert rate == pytest.approx(9, rel=0.05)


def test_charging_stretches_are_not_drain() -> None:
    history = line(T0, 2, 90, -10) + line(T0 + 2 * H + 5 * M, 2, 70, 15, charging=True)
    assert drain_rate(history, min_history_h=2) == pytest.approx(10)
    assert charge_rate(history, min_history_h=0.5) == pytest.approx(15)


def test_charge_rate_leaves_out_the_taper_and_a_full_pack_on_the_charger() -> None:
    bulk = line(T0, 3, 40, 18, charging=True)  # 40 -> 94
    full = [Sample(T0 + 3 * H + i * 5 * M, 100, True) for i in range(1, 60)]
    assert charge_rate(bulk + full, min_history_h=0.5) == pytest.approx(18)


def test_unplugging_mid_charge_splits_the_run() -> None:
    a = line(T0, 1, 30, 20, charging=True)  # 30 -> 50
    b = line(T0 + H + 5 * M, 1, 40, 20, charging=True)  # dropped to 40 in between
    assert charge_rate(a + b, min_history_h=0.5) == pytest.approx(20)


def test_a_handful_of_points_is_not_enough() -> None:
    three = [Sample(T0, 90, False), Sample(T0 + 2 * H, 70, False), Sample(T0 + 4 * H, 50, False)]
    assert drain_rate(three, min_history_h=2) is None


def test_a_level_history_learns_nothing() -> None:
    flat_with_noise = [Sample(T0 + i * 5 * M, 80 + (i % 2) * 0.5, False) for i in range(40)]
    assert drain_rate(flat_with_noise, min_history_h=2) is None


def test_learn_gives_both() -> None:
    history = line(T0, 3, 90, -8) + line(T0 + 3 * H + 5 * M, 1, 66, 20, charging=True)
    rates = learn(history, min_history_h=2, min_charge_history_h=0.5)
    assert rates.drain_pct_per_h == pytest.approx(8)
    assert rates.charge_pct_per_h == pytest.approx(20)


_samples = st.lists(
    st.builds(
        Sample,
        ts_ms=st.integers(T0, T0 + 30 * H),
        pct=st.floats(0, 100),
        charging=st.one_of(st.none(), st.booleans()),
    ),
    max_size=120,
).map(lambda xs: sorted(xs, key=lambda s: s.ts_ms))


@settings(max_examples=300, deadline=None)
@given(history=_samples, min_h=st.floats(0.01, 24))
def test_rates_are_finite_and_within_bounds(history: list[Sample], min_h: float) -> None:
    for rate in (
        drain_rate(history, min_history_h=min_h),
        charge_rate(history, min_history_h=min_h),
    ):
        assert rate is None or (math.isfinite(rate) and 0 < rate <= MAX_RATE)
