"""The alert engine when clocks are wrong: a device's, the collector's, or both.

Controllable clock: every call passes the collector's `now`, every reading carries the
device's `ts`; a skew is simply a difference between the two. See daemon/alerts/clock.py.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from fleet.daemon.alerts import AlertEngine
from fleet.daemon.wire import DecodedReading
from tests.daemon.alerts.test_alert_engine import MIN, T0, H, S, acts, make, reading

SETTLE = 30 * S  # alerts.clock_settle_s default


def seqd(seq: int | None, ts: int, pct: float = 80.0, **kw: object) -> DecodedReading:
    return replace(reading(ts, pct=pct, **kw), seq=seq)  # type: ignore[arg-type]


def stream(
    e: AlertEngine, first_seq: int, start_ts: int, n: int, *, skew: int, pct: float, step=10 * S
) -> list[tuple[str, str, str, bool]]:
    """n live readings every `step`, arriving `skew` ms after their ts (collector clock)."""
    out = []
    for i in range(n):
        ts = start_ts + i * step
        out += acts(e.observe(seqd(first_seq + i, ts, pct), ts + skew))
        out += acts(e.tick(ts + skew))
    return out


# --- a reading from the future -----------------------------------------------------------------


def test_one_reading_an_hour_in_the_future_does_not_freeze_the_device():
    e = make(limits={"battery_low_for_s": 0})
    assert e.observe(seqd(1, T0), T0) == []
    # A box booted with its clock an hour fast, then set right by NTP.
    assert e.observe(seqd(2, T0 + H + 10 * S), T0 + 10 * S) == []
    assert e.counters.future == 1
    # Correctly stamped readings after it are newer (by seq) and fire and resolve.
    fired = acts(e.observe(seqd(3, T0 + 20 * S, pct=5.0), T0 + 20 * S))
    assert sorted(fired) == [
        ("fire", "sw-03", "battery_critical", True),
        ("fire", "sw-03", "battery_low", True),
    ]
    resolved = acts(e.observe(seqd(4, T0 + 30 * S, pct=50.0), T0 + 30 * S))
    assert sorted(a[0] for a in resolved) == ["resolve", "resolve"]
    assert e.counters.late == 0


def test_without_seq_a_future_ts_is_capped_so_later_readings_still_count():
    e = make(limits={"battery_low_for_s": 0})
    e.observe(reading(T0, pct=80.0, source="owntracks"), T0)
    assert e.observe(reading(T0 + H, pct=80.0, source="owntracks"), T0 + 10 * S) == []
    events = e.observe(reading(T0 + 20 * S, pct=5.0, source="owntracks"), T0 + 20 * S)
    assert ("fire", "sw-03", "battery_critical", True) in acts(events)


def test_a_future_reading_does_not_keep_a_silent_device_online():
    e = make()
    e.tick(T0)
    e.observe(seqd(1, T0), T0)
    e.observe(seqd(2, T0 + H), T0 + S)  # then silence
    assert e.tick(T0 + 10 * MIN) == []
    # Offline after its 10 min from the last arrival, not an hour and 10 min later.
    assert acts(e.tick(T0 + S + 10 * MIN + 1)) == [("fire", "sw-03", "offline", True)]


# --- the collector's clock is off --------------------------------------------------------------


def test_a_collector_ten_minutes_ahead_fires_and_resolves_once_it_knows_the_offset():
    e = make(limits={"disabled": ["battery_low"]})
    skew = 10 * MIN  # every live reading looks ten minutes old to the collector
    e.tick(T0 + skew)
    low = stream(e, 1, T0, 20, skew=skew, pct=5.0)  # 190 s of readings
    assert low == [("fire", "sw-03", "battery_critical", True)]  # no offline, no freeze
    ok = stream(e, 21, T0 + 200 * S, 3, skew=skew, pct=50.0)
    assert ok == [("resolve", "sw-03", "battery_critical", True)]
    # While readings flow, the device is not offline; once they stop, it is, after 10 min.
    last = T0 + 220 * S + skew
    assert e.tick(last + 10 * MIN - S) == []
    assert acts(e.tick(last + 10 * MIN + S)) == [("fire", "sw-03", "offline", True)]


def test_until_the_offset_is_learned_old_looking_readings_fire_nothing():
    e = make()
    skew = 10 * MIN
    # Within the settling time the engine cannot tell a skewed clock from a backlog.
    assert e.observe(seqd(1, T0, pct=5.0), T0 + skew) == []
    assert e.observe(seqd(2, T0 + 10 * S, pct=5.0), T0 + 10 * S + skew) == []
    assert e.counters.buffered == 2
    fired = acts(e.observe(seqd(3, T0 + SETTLE, pct=5.0), T0 + SETTLE + skew))
    assert fired == [("fire", "sw-03", "battery_critical", True)]


def test_a_collector_ten_minutes_behind_takes_live_readings_as_live_at_once():
    e = make()
    skew = -10 * MIN  # every reading is stamped ten minutes in the collector's future
    e.tick(T0 + skew)
    assert acts(e.observe(seqd(1, T0, pct=5.0), T0 + skew)) == [
        ("fire", "sw-03", "battery_critical", True)
    ]
    assert stream(e, 2, T0 + 10 * S, 5, skew=skew, pct=5.0) == []
    ok = stream(e, 7, T0 + 60 * S, 2, skew=skew, pct=50.0)
    assert ok == [("resolve", "sw-03", "battery_critical", True)]
    # Future stamps were not taken as "now": silence is still noticed after 10 min.
    last = T0 + 70 * S + skew
    assert e.tick(last + 10 * MIN - S) == []
    assert acts(e.tick(last + 10 * MIN + S)) == [("fire", "sw-03", "offline", True)]


def test_a_new_device_borrows_the_fleets_offset():
    e = make()
    skew = 10 * MIN
    stream(e, 1, T0, 5, skew=skew, pct=80.0)  # sw-03 teaches the engine the skew
    e.tick(T0 + 50 * S + skew)
    first = replace(reading(T0 + MIN, "sw-09", pct=5.0), seq=1)
    assert acts(e.observe(first, T0 + MIN + skew)) == [("fire", "sw-09", "battery_critical", True)]


def test_the_learned_offset_survives_a_restart(tmp_path: Path):
    e = make(tmp_path)
    skew = 10 * MIN
    stream(e, 1, T0, 5, skew=skew, pct=80.0)
    e.tick(T0 + 50 * S + skew)  # device state is written on ticks
    r = make(tmp_path)
    ts = T0 + 2 * MIN
    assert acts(r.observe(seqd(6, ts, pct=5.0), ts + skew)) == [
        ("fire", "sw-03", "battery_critical", True)
    ]


# --- buffered data is not a skewed clock -------------------------------------------------------


def outage_backlog(first_seq: int, start: int, end: int) -> list[DecodedReading]:
    """An agent's outbox after an hour without the broker: low, then charged again."""
    out = []
    for i, ts in enumerate(range(start, end, 10 * S)):
        pct = 5.0 if ts < start + 30 * MIN else 90.0
        out.append(seqd(first_seq + i, ts, pct))
    return out


def test_a_flushed_outbox_fires_nothing_and_the_stream_after_it_is_judged_as_live():
    e = make(limits={"disabled": ["offline"]})
    assert stream(e, 1, T0, 12, skew=50, pct=80.0) == []  # two live minutes: offset 50 ms
    back = T0 + 2 * MIN + H
    backlog = outage_backlog(13, T0 + 2 * MIN, back)
    for i, r in enumerate(backlog):  # the whole hour arrives within a second
        assert e.observe(r, back + i) == [], f"backlog reading {i} fired"
    assert e.counters.buffered >= len(backlog) - 30  # the last 5 minutes may count as live
    assert e.alerts() == []
    low = stream(e, 13 + len(backlog), back, 3, skew=50, pct=5.0)
    assert low == [("fire", "sw-03", "battery_critical", True)]


def test_a_backlog_as_the_first_thing_heard_fires_nothing_even_with_a_skewed_collector():
    e = make(limits={"disabled": ["offline"]})
    skew = 10 * MIN
    now = T0 + H + skew
    backlog = outage_backlog(1, T0, T0 + H)
    for i, r in enumerate(backlog):
        assert e.observe(r, now + i) == [], f"backlog reading {i} fired"
    # Then the live stream: trusted after it has settled, and judged on its own values.
    live = stream(e, len(backlog) + 1, T0 + H, 6, skew=skew, pct=5.0)
    assert live == [("fire", "sw-03", "battery_critical", True)]


# --- seq ---------------------------------------------------------------------------------------


def test_seq_orders_readings_whatever_their_timestamps():
    e = make(limits={"battery_low_for_s": 0})
    e.observe(seqd(10, T0), T0)
    # A lower seq with an older ts: a late redelivery, ignored.
    assert e.observe(seqd(9, T0 - S, pct=5.0), T0 + S) == []
    assert e.counters.late == 1
    # A higher seq whose ts went back (the box's clock was stepped back): newer all the same.
    fired = acts(e.observe(seqd(11, T0 - 2 * MIN, pct=5.0), T0 + 2 * S))
    assert ("fire", "sw-03", "battery_critical", True) in fired


def rules_fired(events: list[tuple[str, str, str, bool]]) -> set[str]:
    return {rule for action, _, rule, _ in events if action == "fire"}


def test_an_agent_that_starts_counting_again_is_heard():
    e = make(limits={"battery_low_for_s": 0})
    e.observe(seqd(500, T0), T0)
    # Outbox lost, count restarts at 1, clock right: a later ts says it is new.
    fired = acts(e.observe(seqd(1, T0 + 10 * S, pct=5.0), T0 + 10 * S))
    assert "battery_critical" in rules_fired(fired)
    assert acts(e.observe(seqd(2, T0 + 20 * S, pct=50.0), T0 + 20 * S))[0][0] == "resolve"
    # Far below the last count, with a box clock that went back: a restart as well.
    e.observe(seqd(5000, T0 + 30 * S), T0 + 30 * S)
    fired = acts(e.observe(seqd(1, T0 + 30 * S - 2 * MIN, pct=5.0), T0 + 40 * S))
    assert "battery_critical" in rules_fired(fired)
    assert e.counters.late == 0


def test_without_seq_a_redelivered_reading_is_a_duplicate_once_the_offset_is_known():
    e = make()
    for i in range(5):  # an OwnTracks phone, 50 ms away: offset learned
        e.observe(reading(T0 + i * 10 * S, source="owntracks"), T0 + i * 10 * S + 50)
    e.observe(reading(T0 + 50 * S, source="owntracks"), T0 + 50 * S + 20)  # a quicker one
    assert e.counters.late == 0
    assert e.observe(reading(T0 + 50 * S, pct=5.0, source="owntracks"), T0 + 51 * S) == []
    assert e.counters.late == 1
