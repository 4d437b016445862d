"""Lifecycle tests of the alert engine with a controllable clock (no MQTT, no wall clock)."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from fleet.config.alerts import AlertSettings
from fleet.daemon.alerts import Action, AlertEngine, AlertEvent
from fleet.daemon.alerts.store import AlertStore
from fleet.daemon.wire import Battery, DecodedReading, Location, Status

S, MIN, H = 1000, 60_000, 3_600_000
T0 = int(datetime.fromisoformat("2026-11-29T20:00:00-05:00").timestamp() * 1000)
DOCK = {"site": "allingtown", "name": "the dock", "lat": 41.2705, "lon": -72.947, "radius_m": 50}


def local(text: str) -> int:
    return int(datetime.fromisoformat(text + "-05:00").timestamp() * 1000)


def reading(
    ts: int,
    device: str = "sw-03",
    *,
    pct: float | None = 80.0,
    charging: bool | None = False,
    temp: float | None = None,
    state: str | None = None,
    code: int | None = None,
    at: tuple[float, float] | None = None,
    kind: str = "segway",
    site: str = "allingtown",
    source: str = "telemetry",
) -> DecodedReading:
    battery = None
    if pct is not None or charging is not None or temp is not None:
        battery = Battery(pct=pct, charging=charging, temp_c=temp)
    status = Status(state=state, error_code=code) if state or code is not None else None  # type: ignore[arg-type]
    location = Location(lat=at[0], lon=at[1]) if at else None
    return DecodedReading(site, kind, device, None, ts, battery, location, status, source)


def make(tmp_path: Path | None = None, **settings: Any) -> AlertEngine:
    store = AlertStore(tmp_path / "alerts.sqlite") if tmp_path else None
    return AlertEngine(
        AlertSettings.model_validate(settings),
        store=store,
        site_names={"allingtown": "Allingtown"},
        device_names={"sw-07": "Segway 7, blue stripe"},
    )


def acts(events: list[AlertEvent]) -> list[tuple[str, str, str, bool]]:
    return [(str(e.action), e.alert.device, e.alert.rule, e.notify) for e in events]


def run_ticks(engine: AlertEngine, start: int, end: int, step: int = S) -> list[AlertEvent]:
    events = []
    for now in range(start, end + 1, step):
        events += engine.tick(now)
    return events


# --- rules through the engine ------------------------------------------------------------------


def test_battery_low_holds_for_two_minutes_then_fires_and_resolves_with_hysteresis():
    e = make()
    assert e.observe(reading(T0, pct=24.0), T0) == []  # pending
    assert e.tick(T0 + 2 * MIN - 1) == []
    (fired,) = e.tick(T0 + 2 * MIN)
    assert (fired.action, fired.route, fired.notify) == (Action.FIRE, "warning", True)
    assert fired.alert.state == "firing"
    assert fired.alert.value == 24.0
    assert fired.alert.since_ms == T0 + 2 * MIN
    assert e.observe(reading(T0 + 3 * MIN, pct=29.0), T0 + 3 * MIN) == []  # band: keeps firing
    (resolved,) = e.observe(reading(T0 + 4 * MIN, pct=30.0), T0 + 4 * MIN)
    assert (resolved.action, resolved.alert.state, resolved.notify) == (
        Action.RESOLVE,
        "resolved",
        True,
    )
    assert resolved.alert.message == "Segway sw-03 (Allingtown): battery 30 % – OK again"


def test_battery_low_that_recovers_within_its_hold_never_fires():
    e = make()
    e.observe(reading(T0, pct=24.0), T0)
    e.observe(reading(T0 + MIN, pct=31.0), T0 + MIN)
    assert run_ticks(e, T0, T0 + 10 * MIN, 10 * S) == []


def test_battery_critical_fires_at_once_with_the_officer_text():
    e = make()
    events = e.observe(reading(T0 + 4 * MIN, pct=9.0), T0 + 4 * MIN + 200)
    assert acts(events) == [("fire", "sw-03", "battery_critical", True)]
    assert events[0].route == "critical"
    assert events[0].alert.message == (
        "Segway sw-03 (Allingtown): battery 9 % – critical, not charging, last seen 20:04"
    )


def test_charging_resolves_a_firing_battery_alert_and_suppresses_new_ones():
    e = make(limits={"battery_low_for_s": 0})
    assert len(e.observe(reading(T0, pct=9.0), T0)) == 2  # low and critical
    events = e.observe(reading(T0 + S, pct=9.0, charging=True), T0 + S)
    assert sorted(acts(events)) == [
        ("resolve", "sw-03", "battery_critical", True),
        ("resolve", "sw-03", "battery_low", True),
    ]
    assert "charging" in events[0].alert.message
    assert e.observe(reading(T0 + 2 * S, pct=8.0, charging=True), T0 + 2 * S) == []


def test_replayed_and_duplicate_readings_never_fire_or_resolve():
    e = make()
    assert e.observe(reading(T0 + MIN, pct=50.0), T0 + MIN) == []
    assert e.observe(reading(T0, pct=5.0), T0 + MIN) == []  # older: replayed
    assert acts(e.observe(reading(T0 + 2 * MIN, pct=5.0), T0 + 2 * MIN))[0][0] == "fire"
    assert e.observe(reading(T0 + MIN + 1, pct=90.0), T0 + 3 * MIN) == []  # older: no resolve
    assert e.observe(reading(T0 + 2 * MIN, pct=90.0), T0 + 3 * MIN) == []  # duplicate ts


def test_a_late_buffered_reading_fires_nothing():
    e = make()
    assert e.observe(reading(T0, pct=5.0), T0 + 10 * MIN) == []  # 10 min old > 5 min
    assert e.alerts() == []


def test_overtemp_and_fault_with_code():
    e = make()
    events = e.observe(reading(T0, temp=50.0, state="riding", code=14), T0)
    assert sorted(acts(events)) == [
        ("fire", "sw-03", "fault", True),
        ("fire", "sw-03", "overtemp", True),
    ]
    fault = next(ev for ev in events if ev.alert.rule == "fault")
    assert (
        fault.alert.message == "Segway sw-03 (Allingtown): fault – error code 14, last seen 20:00"
    )
    assert fault.alert.value == 14.0
    assert e.observe(reading(T0 + S, temp=46.0, state="riding", code=14), T0 + S) == []
    events = e.observe(reading(T0 + 2 * S, temp=45.0, state="idle", code=0), T0 + 2 * S)
    assert sorted(a[2] for a in acts(events)) == ["fault", "overtemp"]
    assert {ev.action for ev in events} == {Action.RESOLVE}


def test_not_charging_in_the_geofence_after_fifteen_minutes():
    e = make(geofences=[DOCK])
    at = (41.2706, -72.9471)
    assert e.observe(reading(T0, pct=62.0, state="idle", at=at), T0) == []
    assert e.tick(T0 + 15 * MIN - 1) == []
    (fired,) = e.tick(T0 + 15 * MIN)
    assert fired.alert.message == (
        "Segway sw-03 (Allingtown): docked at the dock but not charging – battery 62 %, "
        "last seen 20:00"
    )
    (resolved,) = e.observe(reading(T0 + 16 * MIN, pct=62.5, charging=True, at=at), T0 + 16 * MIN)
    assert resolved.action is Action.RESOLVE
    assert "charging now" in resolved.alert.message


def test_undocking_cancels_a_pending_not_charging():
    e = make()
    e.observe(reading(T0, pct=62.0, state="docked"), T0)
    e.observe(reading(T0 + 5 * MIN, pct=62.0, state="riding"), T0 + 5 * MIN)
    events = run_ticks(e, T0 + 5 * MIN, T0 + 30 * MIN, MIN)
    assert [ev for ev in events if ev.alert.rule == "not_charging"] == []


# --- offline -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "device", "window"),
    [("segway", "sw-03", 10 * MIN), ("handheld", "hh-1", 30 * MIN), ("handheld", "hh-9", 2 * MIN)],
)
def test_offline_window_per_kind_and_device(kind, device, window):
    e = make(
        kinds={"handheld": {"offline_after_s": 1800}}, devices={"hh-9": {"offline_after_s": 120}}
    )
    e.tick(T0)
    e.observe(reading(T0, device, kind=kind), T0)
    assert e.tick(T0 + window) == []
    events = e.tick(T0 + window + 1)
    assert acts(events) == [("fire", device, "offline", True)]
    assert e.tick(T0 + window + 2) == []  # fires once
    later = T0 + window + 5 * MIN
    assert acts(e.observe(reading(later, device, kind=kind), later)) == [
        ("resolve", device, "offline", True)
    ]


def test_offline_message_and_old_replays_do_not_resolve_it():
    e = make()
    e.tick(T0)
    e.observe(reading(T0), T0)
    (fired,) = e.tick(T0 + 12 * MIN)
    assert fired.alert.message == (
        "Segway sw-03 (Allingtown): offline – no data for 12 min, last seen 20:00"
    )
    now = T0 + 40 * MIN
    assert e.observe(reading(T0 + MIN), now) == []  # newer, but older than the window
    assert acts(e.observe(reading(now - MIN), now)) == [("resolve", "sw-03", "offline", True)]


def test_agent_down_is_one_alert_and_inhibits_offline_of_telemetry_devices():
    e = make()
    e.tick(T0)
    devices = [f"sw-{i:02d}" for i in range(10)]
    for d in devices:
        e.observe(reading(T0, d), T0)
    e.observe(reading(T0, "hh-1", kind="handheld", source="owntracks"), T0)
    e.agent_availability("allingtown", "ag-1", True, T0)
    assert e.agent_availability("allingtown", "ag-1", False, T0 + MIN) == []
    events = run_ticks(e, T0 + MIN, T0 + 60 * MIN, 10 * S)
    assert acts(events) == [
        ("fire", "ag-1", "agent_down", True),  # after its 60 s hold
        ("fire", "hh-1", "offline", True),  # a phone: not behind the agent
    ]
    assert events[0].alert.kind == "agent"
    assert events[0].alert.message.startswith("Agent ag-1 (Allingtown): agent offline")
    back = T0 + 61 * MIN
    assert acts(e.agent_availability("allingtown", "ag-1", True, back)) == [
        ("resolve", "ag-1", "agent_down", True)
    ]
    # The devices get a full window to be heard again; those heard stay quiet.
    for d in devices[:7]:
        e.observe(reading(back + MIN, d), back + MIN)
    events = run_ticks(e, back, back + 11 * MIN, 10 * S)
    assert sorted(a[1] for a in acts(events)) == devices[7:]


def test_availability_flapping_alone_fires_nothing():
    e = make()
    e.tick(T0)
    for i in range(120):
        now = T0 + i * MIN
        e.observe(reading(now), now)
        assert e.device_availability("allingtown", "segway", "sw-03", i % 2 == 0, now) == []
        assert e.tick(now) == []


def test_flapping_link_is_bounded_to_one_notified_pair_per_repeat_interval():
    # Data every 2 min with a 1 min window: offline fires and resolves every 2 min.
    e = make(kinds={"segway": {"offline_after_s": 60}})
    e.tick(T0)
    events = []
    for i in range(4 * 60):  # 8 hours
        now = T0 + i * 2 * MIN
        events += e.observe(reading(now), now)
        events += e.tick(now + MIN + S)
    assert len(events) >= 400  # the state is still published every time
    notified = [(ev.action, ev.alert.since_ms) for ev in events if ev.notify]
    for start in range(T0, T0 + 8 * H, 4 * H):
        window = [a for a, at in notified if start <= at < start + 4 * H]
        assert len([a for a in window if a in (Action.FIRE, Action.REPEAT)]) <= 1
        assert len([a for a in window if a is Action.RESOLVE]) <= 1
    # ... and if it finally stays down, that is notified within one window.
    end = T0 + 8 * H
    later = run_ticks(e, end, end + 4 * H, MIN)
    assert [ev.action for ev in later if ev.notify] == [Action.REPEAT]


# --- repeat, acknowledge, silence, escalation --------------------------------------------------


def test_repeats_every_interval_until_acknowledged():
    e = make(limits={"battery_low_for_s": 0, "disabled": ["offline"]})
    e.observe(reading(T0, pct=20.0), T0)
    assert run_ticks(e, T0, T0 + 4 * H - S, MIN) == []
    (repeat,) = e.tick(T0 + 4 * H)
    assert (repeat.action, repeat.notify, repeat.route) == (Action.REPEAT, True, "warning")
    assert e.acknowledge("sw-03", "battery_critical", "sgt. lee", T0 + 4 * H) == []  # not firing
    (ack,) = e.acknowledge("sw-03", "battery_low", "sgt. lee", T0 + 5 * H)
    assert (ack.action, ack.alert.acknowledged_by, ack.alert.state) == (
        Action.ACKNOWLEDGED,
        "sgt. lee",
        "firing",
    )
    assert e.acknowledge("sw-03", "battery_low", "someone else", T0 + 5 * H) == []
    assert run_ticks(e, T0 + 5 * H, T0 + 24 * H, 10 * MIN) == []
    (resolved,) = e.observe(reading(T0 + 25 * H, pct=50.0), T0 + 25 * H)
    assert resolved.notify  # the people who were told it fired are told it is over


def test_silence_mutes_notifications_but_not_state():
    e = make(limits={"disabled": ["offline", "battery_low"]})
    with pytest.raises(ValueError, match="muting all"):
        e.silence(None, None, T0 + H, "why", "me", now_ms=T0)
    s = e.silence("sw-03", None, T0 + 2 * H, "in repair", "tech", now_ms=T0)
    (fired,) = e.observe(reading(T0, pct=9.0), T0)
    assert (fired.action, fired.notify, fired.alert.state) == (Action.FIRE, False, "firing")
    assert e.silences(T0) == [s]
    assert run_ticks(e, T0, T0 + 2 * H - S, MIN) == []  # no repeat, no escalation notice
    # Expired while still firing: told now.
    (late,) = e.tick(T0 + 2 * H)
    assert (late.action, late.notify) == (Action.REPEAT, True)
    assert e.silences(T0 + 2 * H) == []


def test_unsilence_and_rule_silence():
    e = make()
    s = e.silence(None, "battery_critical", T0 + 9 * H, "drills", "me", now_ms=T0)
    (fired,) = e.observe(reading(T0, pct=9.0), T0)
    assert not fired.notify
    (other,) = e.observe(reading(T0, "sw-04", temp=55.0), T0)
    assert other.notify  # another rule
    assert e.unsilence(s.id) is True
    assert e.unsilence(s.id) is False
    assert [ev.action for ev in e.tick(T0 + S) if ev.alert.rule == "battery_critical"] == [
        Action.REPEAT
    ]


def test_critical_escalates_before_the_next_shift_unless_acknowledged():
    e = make(limits={"disabled": ["offline", "battery_low"]})
    fire_at = local("2026-11-30T05:10:00")
    e.observe(reading(fire_at, pct=9.0), fire_at)
    e.observe(reading(fire_at, "sw-04", pct=9.0), fire_at)
    e.acknowledge("sw-04", "battery_critical", "cpl. ray", fire_at + MIN)
    assert run_ticks(e, fire_at, local("2026-11-30T06:29:59"), MIN) == []
    events = e.tick(local("2026-11-30T06:30:00"))
    assert [(ev.action, ev.route, ev.alert.device) for ev in events] == [
        (Action.ESCALATE, "escalation", "sw-03")
    ]
    assert e.tick(local("2026-11-30T06:31:00")) == []
    # Still unacknowledged: escalated again before the 15:00 shift (repeats at 09:10, 13:10).
    events = run_ticks(e, local("2026-11-30T06:32:00"), local("2026-11-30T14:30:00"), MIN)
    assert [(ev.action, ev.alert.device) for ev in events] == [
        (Action.REPEAT, "sw-03"),
        (Action.REPEAT, "sw-03"),
        (Action.ESCALATE, "sw-03"),
    ]
    assert events[-1].alert.since_ms == fire_at


def test_a_critical_firing_inside_the_lead_escalates_at_once():
    e = make()
    at = local("2026-11-30T06:45:00")
    e.observe(reading(at, pct=9.0), at)
    assert [ev.action for ev in e.tick(at + S)] == [Action.ESCALATE]


def test_warnings_never_escalate():
    e = make(limits={"battery_low_for_s": 0})
    at = local("2026-11-30T06:00:00")
    e.observe(reading(at, pct=20.0), at)
    events = run_ticks(e, at, at + 3 * H, MIN)
    assert all(ev.action is not Action.ESCALATE for ev in events)


# --- persistence -------------------------------------------------------------------------------


def test_restart_keeps_firing_alerts_no_duplicate_fire_and_resolve_still_sent(tmp_path):
    e = make(tmp_path, limits={"disabled": ["battery_low"]})
    e.tick(T0)
    assert acts(e.observe(reading(T0, pct=9.0), T0)) == [
        ("fire", "sw-03", "battery_critical", True)
    ]
    e.observe(reading(T0 + S, "sw-05"), T0 + S)
    e.tick(T0 + 11 * MIN)  # sw-03 and sw-05 offline
    s = e.silence("sw-09", None, T0 + 9 * H, "in repair", "tech", now_ms=T0)

    r = make(tmp_path, limits={"disabled": ["battery_low"]})  # the restarted collector
    firing = {(a.device, a.rule) for a in r.alerts(firing_only=True)}
    assert firing == {("sw-03", "battery_critical"), ("sw-03", "offline"), ("sw-05", "offline")}
    assert r.silences(T0) == [s]
    now = T0 + 12 * MIN
    assert r.tick(now) == []  # nothing fires twice
    assert acts(r.observe(reading(now, pct=8.0), now)) == [("resolve", "sw-03", "offline", True)]
    assert acts(r.observe(reading(now + S, pct=20.0), now + S)) == [
        ("resolve", "sw-03", "battery_critical", True)
    ]
    # Repeat timers survive too: sw-05's offline repeats 4 h after its fire, not after the
    # restart.
    events = r.tick(T0 + 11 * MIN + 4 * H)
    assert [ev.action for ev in events if ev.alert.device == "sw-05"] == [Action.REPEAT]


def test_a_fired_reading_redelivered_after_a_restart_fires_nothing_twice(tmp_path):
    # Ingest hands a batch to the engine as its spool commit begins: killed before that
    # commit, the collector gets the batch again from the broker after its restart.
    e = make(tmp_path, limits={"disabled": ["battery_low"]})
    fired = dataclasses.replace(reading(T0, pct=9.0), seq=7)
    assert acts(e.observe(fired, T0)) == [("fire", "sw-03", "battery_critical", True)]
    r = make(tmp_path, limits={"disabled": ["battery_low"]})  # no tick in between
    assert r.observe(fired, T0 + S) == []
    assert r.counters.late == 1
    after = dataclasses.replace(reading(T0 + S, pct=50.0), seq=8)
    assert acts(r.observe(after, T0 + S)) == [("resolve", "sw-03", "battery_critical", True)]


def test_restart_remembers_when_devices_were_last_heard(tmp_path):
    e = make(tmp_path)
    e.tick(T0)
    e.observe(reading(T0), T0)
    e.tick(T0 + S)  # device state is written on ticks
    r = make(tmp_path)
    start = T0 + 30 * MIN  # the collector was down for half an hour
    assert r.tick(start) == []  # the broker's backlog gets a window first
    assert acts(r.tick(start + 10 * MIN + 1)) == [("fire", "sw-03", "offline", True)]
    # A replayed reading older than what was seen before the restart is still ignored.
    assert r.observe(reading(T0 - MIN), start + 11 * MIN) == []


def test_acknowledgement_survives_a_restart(tmp_path):
    e = make(tmp_path, limits={"disabled": ["offline", "battery_low"]})
    e.observe(reading(T0, pct=9.0), T0)
    e.acknowledge("sw-03", "battery_critical", "sgt. lee", T0 + MIN)
    r = make(tmp_path, limits={"disabled": ["offline", "battery_low"]})
    (snap,) = r.alerts(firing_only=True)
    assert snap.acknowledged_by == "sgt. lee"
    assert run_ticks(r, T0 + MIN, T0 + 9 * H, 10 * MIN) == []


def test_registry_names_in_messages():
    e = make()
    (fired,) = e.observe(reading(T0, "sw-07", pct=5.0), T0)
    assert fired.alert.message.startswith("Segway 7, blue stripe (Allingtown): battery 5 %")
