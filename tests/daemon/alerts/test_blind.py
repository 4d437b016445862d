"""The collector's own blind spells (its MQTT connection lost at T0, regained at T1): what it
could not see is not evidence (daemon/alerts/offline.py). Fake clock, no MQTT."""

from __future__ import annotations

import pytest

from fleet.config.alerts import Rule
from fleet.daemon.alerts import AlertEvent
from fleet.daemon.alerts.engine import AlertEngine
from tests.daemon.alerts.test_alert_engine import MIN, T0, S, acts, make, reading, run_ticks
from tests.daemon.alerts.test_links import downtown_fleet, link

WINDOW = 10 * MIN  # the default offline_after_s


def fleet(e: AlertEngine) -> list[str]:
    """Eight telemetry devices behind downtown's link, sw-01 at allingtown and a phone."""
    devices = downtown_fleet(e)
    e.observe(reading(T0, "hh-1", kind="handheld", source="owntracks"), T0)
    return devices


def offline_fires(events: list[AlertEvent]) -> list[tuple[str, int]]:
    return sorted(
        (ev.alert.device, ev.alert.since_ms)
        for ev in events
        if ev.alert.rule == Rule.OFFLINE and str(ev.action) == "fire"
    )


@pytest.mark.parametrize("spell", [2 * MIN, 40 * MIN], ids=["shorter", "longer"])
def test_no_device_is_offline_for_a_blind_spell_and_each_gets_a_full_window_from_t1(spell):
    e = make()
    e.tick(T0)
    devices = fleet(e)
    lost = T0 + 5 * MIN
    e.connection(False, lost)
    back = lost + spell
    # Blind: the windows of every device (T0 + 10 min) run out unseen, and nothing fires.
    assert run_ticks(e, T0, back - S, 10 * S) == []
    e.connection(True, back)
    # The backlog (stamped in the spell), then live readings: six of downtown's devices.
    for d in devices[:6]:
        e.observe(reading(back - MIN, d, site="downtown"), back + 5 * S)
        e.observe(reading(back + 2 * MIN, d, site="downtown"), back + 2 * MIN)
    assert run_ticks(e, back, back + WINDOW, 10 * S) == []  # a full window from T1
    events = run_ticks(e, back + WINDOW + S, back + WINDOW + MIN, S)
    # The silent ones, of every kind and site, once their window from T1 has run out.
    assert offline_fires(events) == [
        (d, back + WINDOW + S) for d in sorted([*devices[6:], "hh-1", "sw-01"])
    ]
    assert e.counters.blind_spells == 1
    assert e.counters.blind_ms == spell


def test_while_blind_nothing_is_judged_and_a_repeat_of_lost_or_regained_changes_nothing():
    e = make()
    e.tick(T0)
    fleet(e)
    e.connection(True, T0)  # the first connect ends no spell
    e.connection(False, T0 + MIN)
    e.connection(False, T0 + 5 * MIN)  # paho may tell twice: T0 stays
    assert run_ticks(e, T0 + MIN, T0 + 3 * 60 * MIN, MIN) == []  # three hours blind
    e.connection(True, T0 + 3 * 60 * MIN)
    e.connection(True, T0 + 3 * 60 * MIN + 5 * S)  # T1 stays
    assert (e.counters.blind_spells, e.counters.blind_ms) == (1, 3 * 60 * MIN - MIN)
    assert run_ticks(e, T0 + 3 * 60 * MIN, T0 + 3 * 60 * MIN + WINDOW, 10 * S) == []


@pytest.mark.parametrize("known", [True, None], ids=["last-known-1", "unknown"])
def test_a_link_zero_first_read_after_the_reconnect_counts_from_t0(known):
    """The central broker stopped for 60 s: with the default hold-down (60 s) one
    site_link_down fires as soon as the "0" is read, and resolves with the bridge's "1"."""
    e = make()
    e.tick(T0)
    fleet(e)
    if known is not None:
        link(e, "downtown", known, T0)
    lost = T0 + MIN
    e.connection(False, lost)
    assert run_ticks(e, lost, lost + 60 * S, S) == []
    back = lost + 63 * S  # the collector's own reconnect
    e.connection(True, back)
    assert link(e, "downtown", False, back + S) == [("fire", "downtown", "site_link_down", True)]
    assert link(e, "downtown", True, back + 9 * S) == [
        ("resolve", "downtown", "site_link_down", True)
    ]
    assert run_ticks(e, back, back + WINDOW, 10 * S) == []  # and no device offline


def test_a_short_stop_of_the_central_broker_fires_nothing():
    e = make()
    e.tick(T0)
    fleet(e)
    link(e, "downtown", True, T0)
    lost = T0 + MIN
    e.connection(False, lost)
    e.connection(True, lost + 5 * S)
    assert link(e, "downtown", False, lost + 6 * S) == []  # pending since T0: 6 s of 60
    assert run_ticks(e, lost + 6 * S, lost + 20 * S, S) == []
    assert link(e, "downtown", True, lost + 21 * S) == []  # the bridge back within 15 s
    assert run_ticks(e, lost + 21 * S, lost + 2 * MIN, S) == []
    assert e.alerts() == []


def test_a_zero_known_before_t0_keeps_its_own_start():
    e = make(agent_down_for_s=300)
    e.tick(T0)
    fleet(e)
    link(e, "downtown", True, T0)
    down = T0 + MIN
    assert link(e, "downtown", False, down) == []  # pending since `down`
    lost = down + 4 * MIN
    e.connection(False, lost)
    back = lost + 30 * S
    e.connection(True, back)
    assert link(e, "downtown", False, back + S) == []  # the retained "0" again
    events = run_ticks(e, back, back + 10 * MIN, S)
    # Its own start: fires at down + 5 min (not lost + 5 min, nor 5 min after it was re-read).
    assert [
        (str(ev.action), ev.alert.device, ev.alert.rule, ev.alert.since_ms) for ev in events
    ] == [("fire", "downtown", "site_link_down", down + 5 * MIN)]


def test_a_zero_read_later_than_the_reconnect_burst_has_its_own_hold_down():
    e = make()
    e.tick(T0)
    fleet(e)
    link(e, "downtown", True, T0)
    lost = T0 + MIN
    e.connection(False, lost)
    back = lost + 10 * MIN
    e.connection(True, back)
    assert link(e, "downtown", True, back + S) == []  # its retained "1", re-read
    cut = back + 5 * MIN  # the link itself goes down later: not back-dated
    assert link(e, "downtown", False, cut) == []
    assert run_ticks(e, cut, cut + 59 * S, S) == []
    assert acts(e.tick(cut + 60 * S)) == [("fire", "downtown", "site_link_down", True)]


def test_alerts_firing_before_t0_stay_as_they_are():
    e = make(kinds={"segway": {"offline_after_s": 60}})
    e.tick(T0)
    e.observe(reading(T0, "sw-01"), T0)
    e.observe(reading(T0, "sw-02", pct=20.0), T0)  # battery_low after its 2 min
    e.agent_availability("downtown", "ag-d", False, T0)
    run_ticks(e, T0, T0 + 3 * MIN, S)
    firing = {(a.device, a.rule, a.since_ms) for a in e.alerts(firing_only=True)}
    assert {(d, r) for d, r, _ in firing} == {
        ("sw-01", "offline"),
        ("sw-02", "offline"),
        ("sw-02", "battery_low"),
        ("ag-d", "agent_down"),
    }
    lost = T0 + 5 * MIN
    e.connection(False, lost)
    assert run_ticks(e, lost, lost + 30 * MIN, 10 * S) == []  # nothing resolved while blind
    back = lost + 30 * MIN
    e.connection(True, back)
    assert e.agent_availability("downtown", "ag-d", False, back + S) == []  # re-read: no change
    assert run_ticks(e, back, back + 30 * MIN, 10 * S) == []
    assert {(a.device, a.rule, a.since_ms) for a in e.alerts(firing_only=True)} == firing
    # And each resolves as before: the device heard again.
    now = back + 31 * MIN
    assert acts(e.observe(reading(now, "sw-01"), now)) == [("resolve", "sw-01", "offline", True)]
