"""Charge and drain rates (%/h) learned from a device's own charge history.

The history is what the collector heard: samples minutes apart, with gaps (a device out of
radio range, a collector restart), jumps (a battery swapped for a full one, a charge the
collector never saw), noise (a pack's reading wobbles by a percent) and integer rounding.
So a rate is never taken from two points. The history is cut into runs that each tell one
story - discharging in service, or charging - and a least-squares slope is fitted to each:

- a run ends where charging starts or stops, at a gap too long to know what happened in it,
  and at a jump the wrong way (up while discharging: a swap; down while charging: unplugged);
- a discharge run is also cut where the charge stays level for a long time: a Segway parked
  in the station between shifts is not in service, and counting those hours would make its
  drain look harmless;
- charging near full is left out: the charger tapers there, and a full pack on the charger
  holds 100 % for hours.

The rate is the duration-weighted mean of the runs' slopes. With less than the kind's least
history in usable runs, the answer is None and the judge uses the kind's default.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from fleet.daemon.board.model import LearnedRates, Sample

_H_MS = 3_600_000.0
MAX_GAP_MS = 2 * 3_600_000  # no samples for longer: what happened in between is unknown
JUMP_PCT = 3.0  # a move against the run's direction beyond the noise: a swap or unseen charge
LEVEL_PCT = 0.75  # a level is "the same charge" within this (noise and integer rounding)
IDLE_MS = 45 * 60_000  # level this long while discharging: parked, not in service
TAPER_PCT = 95.0  # charging above this is the charger's slow finish
MIN_RUN_MS = 5 * 60_000  # a shorter run's slope is mostly noise
MIN_POINTS = 4  # fewer points in all usable runs: too little to trust
MAX_RATE = 100.0  # %/h: a whole battery in under an hour is not a learned rate but a glitch


def learn(
    history: Sequence[Sample], *, min_history_h: float, min_charge_history_h: float
) -> LearnedRates:
    """Both of a device's own rates, each None while its history is too short."""
    return LearnedRates(
        drain_pct_per_h=drain_rate(history, min_history_h=min_history_h),
        charge_pct_per_h=charge_rate(history, min_history_h=min_charge_history_h),
    )


def drain_rate(history: Sequence[Sample], *, min_history_h: float) -> float | None:
    """The device's own drain (%/h, positive) while discharging, or None if not yet known."""
    runs = [seg for run in _runs(history, charging=False) for seg in _cut_idle(run)]
    return _rate(runs, direction=-1.0, min_ms=min_history_h * _H_MS)


def charge_rate(history: Sequence[Sample], *, min_history_h: float) -> float | None:
    """The device's own charge rate (%/h, positive) below the taper, or None if not known."""
    runs = [[s for s in run if s.pct <= TAPER_PCT] for run in _runs(history, charging=True)]
    return _rate(runs, direction=1.0, min_ms=min_history_h * _H_MS)


def _runs(history: Sequence[Sample], *, charging: bool) -> Iterable[list[Sample]]:
    """Stretches of the history in one mode without gaps or jumps against it."""
    run: list[Sample] = []
    sign = 1.0 if charging else -1.0
    for s in history:
        if (s.charging is True) != charging:
            if run:
                yield run
            run = []
            continue
        if run:
            last = run[-1]
            gap = s.ts_ms - last.ts_ms
            against = (last.pct - s.pct) * sign  # > 0: moved the wrong way
            if gap <= 0:
                continue  # out of order or a duplicate: the run is ordered by time
            if gap > MAX_GAP_MS or against > JUMP_PCT:
                yield run
                run = []
        run.append(s)
    if run:
        yield run


def _cut_idle(run: list[Sample]) -> Iterable[list[Sample]]:
    """Split a discharge run where the charge stayed level for longer than IDLE_MS."""
    start = 0  # first sample of the current segment
    level = 0  # first sample at the current level
    for i in range(1, len(run)):
        if abs(run[i].pct - run[level].pct) <= LEVEL_PCT:
            continue
        # The level ended at i-1: if it lasted long, the device sat idle through it.
        if run[i - 1].ts_ms - run[level].ts_ms > IDLE_MS:
            yield run[start : level + 1]
            start = i - 1
        level = i
    if run[-1].ts_ms - run[level].ts_ms > IDLE_MS:
        yield run[start : level + 1]
    else:
        yield run[start:]


def _slope_pct_per_h(run: Sequence[Sample]) -> float:
    """Least-squares slope of pct over time, in %/h."""
    n = len(run)
    t0 = run[0].ts_ms
    xs = [(s.ts_ms - t0) / _H_MS for s in run]
    mean_x = sum(xs) / n
    mean_y = sum(s.pct for s in run) / n
    sxx = sum((x - mean_x) ** 2 for x in xs)
    sxy = sum((x - mean_x) * (s.pct - mean_y) for x, s in zip(xs, run, strict=True))
    return sxy / sxx if sxx > 0 else 0.0


def _rate(runs: Iterable[Sequence[Sample]], *, direction: float, min_ms: float) -> float | None:
    weighted = 0.0
    total_ms = 0.0
    points = 0
    for run in runs:
        if len(run) < 2:
            continue
        span = run[-1].ts_ms - run[0].ts_ms
        if span < MIN_RUN_MS:
            continue
        weighted += direction * _slope_pct_per_h(run) * span
        total_ms += span
        points += len(run)
    if total_ms < min_ms or points < MIN_POINTS or total_ms <= 0:
        return None
    rate = weighted / total_ms
    if rate <= 0:
        return None  # noise around a level, or the wrong way: nothing learned
    return min(rate, MAX_RATE)
