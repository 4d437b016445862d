"""Table tests of the alert rules: pure conditions, thresholds, hysteresis, docking, text."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from fleet.config.alerts import AlertSettings, Geofence, Limits, Rule
from fleet.daemon.alerts.model import AlertSnapshot
from fleet.daemon.alerts.rules import (
    DeviceView,
    at_or_above,
    battery,
    distance_m,
    docked,
    fault,
    not_charging,
    reading_verdicts,
    silent_too_long,
)
from fleet.daemon.alerts.schedule import iso_utc, local_hhmm, next_shift_start_ms
from fleet.daemon.alerts.text import Facts, alert_json, fire_text, resolve_text
from fleet.daemon.wire import Battery, DecodedReading, Location, State, Status

NY = ZoneInfo("America/New_York")
FENCE = Geofence(
    site="allingtown", name="Allingtown sub-station", lat=41.2705, lon=-72.947, radius_m=50
)


def view(**fields: object) -> DeviceView:
    v = DeviceView("allingtown", "segway", "telemetry", 0)
    for name, value in fields.items():
        setattr(v, name, value)
    return v


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


# fmt: off
BATTERY_LOW = [
    # pct,  charging, state,      verdict: True fire, False resolve, None keep
    (25.0,  False,    None,       True),    # at the level fires
    (25.1,  False,    None,       None),    # just above: hysteresis band, keep
    (29.9,  None,     None,       None),
    (30.0,  False,    None,       False),   # resolves at >= 30
    (5.0,   None,     None,       True),    # unknown charging is not charging
    (5.0,   True,     None,       False),   # charging suppresses (and resolves)
    (5.0,   None,     "charging", False),   # so does the charging state
    (None,  False,    None,       None),    # no level, no verdict
]
# fmt: on


@pytest.mark.parametrize(("pct", "charging", "state", "verdict"), BATTERY_LOW)
def test_battery_low(pct, charging, state, verdict):
    assert battery(view(pct=pct, charging=charging, state=state), 25, 30) is verdict


@pytest.mark.parametrize(
    ("pct", "verdict"), [(10.0, True), (10.5, None), (14.9, None), (15.0, False), (0.0, True)]
)
def test_battery_critical_edges(pct, verdict):
    v = view(pct=pct, charging=False)
    assert reading_verdicts(v, Limits(), [])[Rule.BATTERY_CRITICAL] == (verdict, pct)


@pytest.mark.parametrize(
    ("temp", "verdict"), [(50.0, True), (49.9, None), (45.1, None), (45.0, False), (None, None)]
)
def test_overtemp_hysteresis(temp, verdict):
    assert at_or_above(temp, 50, 45) is verdict
    assert reading_verdicts(view(temp_c=temp), Limits(), [])[Rule.OVERTEMP][0] is verdict


# fmt: off
FAULT = [
    ("fault",  None, True),
    ("fault",  0,    True),
    ("riding", 14,   True),     # an error code alone is a fault
    (None,     3,    True),
    ("riding", 0,    False),
    ("idle",   None, False),
    (None,     0,    False),
    (None,     None, None),     # no status seen yet
]
# fmt: on


@pytest.mark.parametrize(("state", "code", "verdict"), FAULT)
def test_fault(state, code, verdict):
    assert fault(view(state=state, error_code=code)) is verdict


INSIDE = (41.2706, -72.9471)  # ~14 m from the centre
OUTSIDE = (41.2715, -72.9470)  # ~111 m north

# fmt: off
NOT_CHARGING = [
    # state,     position, pct,  charging, verdict
    ("docked",   None,     62.0, False,    True),
    ("idle",     INSIDE,   62.0, False,    True),    # docked by geofence
    ("idle",     OUTSIDE,  62.0, False,    False),   # outside: not docked
    (None,       OUTSIDE,  62.0, False,    False),
    ("docked",   None,     89.9, False,    True),
    ("docked",   None,     90.0, False,    False),   # charged enough
    ("docked",   None,     62.0, True,     False),   # charging
    ("charging", None,     62.0, None,     False),
    ("docked",   None,     62.0, None,     None),    # charging unknown: no verdict
    (None,       None,     62.0, False,    None),    # docking unknown
    ("docked",   None,     None, False,    None),    # level unknown
]
# fmt: on


@pytest.mark.parametrize(("state", "pos", "pct", "charging", "verdict"), NOT_CHARGING)
def test_not_charging(state, pos, pct, charging, verdict):
    lat, lon = pos if pos else (None, None)
    v = view(state=state, lat=lat, lon=lon, pct=pct, charging=charging)
    assert not_charging(v, Limits(), [FENCE]) is verdict


def test_geofence_only_docks_devices_of_its_site():
    other = view(state="idle", lat=INSIDE[0], lon=INSIDE[1])
    other.site = "westville"
    assert docked(other, [FENCE]) is False
    assert docked(view(state="idle", lat=INSIDE[0], lon=INSIDE[1]), [FENCE]) is True


def test_distance_is_haversine():
    # one degree of latitude is ~111.2 km on the mean sphere
    assert distance_m(41.0, -72.0, 42.0, -72.0) == pytest.approx(111_195, rel=1e-3)
    assert (
        distance_m(*INSIDE, FENCE.lat, FENCE.lon) < 50 < distance_m(*OUTSIDE, FENCE.lat, FENCE.lon)
    )


@pytest.mark.parametrize(
    ("silent_s", "after_s", "offline"),
    [(600, 600, False), (600.001, 600, True), (1800, 1800, False)],
)
def test_offline_window(silent_s, after_s, offline):
    assert silent_too_long(0, round(silent_s * 1000), after_s) is offline


def test_disabled_rules_give_no_verdict():
    limits = Limits(disabled=frozenset({Rule.NOT_CHARGING, Rule.FAULT}))
    assert set(reading_verdicts(view(), limits, [])) == {
        Rule.BATTERY_LOW,
        Rule.BATTERY_CRITICAL,
        Rule.OVERTEMP,
    }


def test_view_merges_fields_across_readings():
    def reading(ts, **groups):
        return DecodedReading("allingtown", "handheld", "hh-1", None, ts, groups.get("battery"),
                              groups.get("location"), groups.get("status"), "owntracks")  # fmt: skip

    v = DeviceView.of(reading(1, battery=Battery(pct=40.0, charging=False)))
    v.update(reading(2, location=Location(lat=1.0, lon=2.0)))
    v.update(reading(3, battery=Battery(temp_c=30.0)))
    assert (v.pct, v.charging, v.temp_c, v.lat) == (40.0, False, 30.0, 1.0)
    v.update(reading(4, status=Status(state=State.CHARGING)))
    assert v.is_charging is True


# --- settings ----------------------------------------------------------------------------------


def test_limits_merge_device_over_kind_over_defaults():
    s = AlertSettings(
        kinds={"handheld": {"offline_after_s": 1800, "battery_low_pct": 20}},
        devices={"hh-9": {"offline_after_s": 120}},
    )
    assert s.limits_for("handheld", "hh-9").offline_after_s == 120
    assert s.limits_for("handheld", "hh-9").battery_low_pct == 20
    assert s.limits_for("handheld", "hh-1").offline_after_s == 1800
    assert s.limits_for("segway", "sw-1").offline_after_s == 600


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ({"limits": {"battery_low_clear_pct": 25}}, "battery_low_clear_pct"),
        (
            {"kinds": {"segway": {"battery_critical_pct": 20}}},
            "kinds.segway.battery_critical_clear_pct",
        ),
        ({"devices": {"sw-1": {"overtemp_clear_c": 55}}}, "devices.sw-1.overtemp_clear_c"),
        ({"shifts": ["7:00"]}, "shifts"),
        ({"shifts": ["07:00", "07:00"]}, "shifts"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"kinds": {"agent": {}}}, "kinds"),
    ],
)
def test_settings_refuse(data, where):
    with pytest.raises(ValidationError) as info:
        AlertSettings.model_validate(data)
    assert where in str(info.value)


def test_every_setting_is_described():
    from fleet.config.alerts import Geofence as G
    from fleet.config.alerts import LimitsOverride

    for model in (AlertSettings, Limits, LimitsOverride, G):
        missing = [n for n, f in model.model_fields.items() if not f.description]
        assert not missing, (model.__name__, missing)


# --- schedule and text -------------------------------------------------------------------------

# fmt: off
SHIFTS = [
    ("2026-11-29T06:45:00-05:00", "2026-11-29T07:00:00-05:00"),
    ("2026-11-29T07:00:00-05:00", "2026-11-29T15:00:00-05:00"),   # strictly after
    ("2026-11-29T23:30:00-05:00", "2026-11-30T07:00:00-05:00"),   # across midnight
    ("2026-03-08T01:00:00-05:00", "2026-03-08T07:00:00-04:00"),   # DST starts that night
    ("2026-11-01T00:30:00-04:00", "2026-11-01T07:00:00-05:00"),   # DST ends
]
# fmt: on


@pytest.mark.parametrize(("after", "start"), SHIFTS)
def test_next_shift_start(after, start):
    shifts = AlertSettings().shift_times
    assert next_shift_start_ms(ms(after), shifts, NY) == ms(start)


def test_no_shifts_no_start():
    assert next_shift_start_ms(0, [], NY) is None


def test_local_times():
    now = ms("2026-11-29T21:30:00-05:00")
    assert local_hhmm(ms("2026-11-29T21:04:59-05:00"), NY, now) == "21:04"
    assert local_hhmm(ms("2026-11-28T21:04:00-05:00"), NY, now) == "Nov 28 21:04"
    assert iso_utc(ms("2026-11-29T21:04:00.123-05:00")) == "2026-11-30T02:04:00.123Z"


# fmt: off
TEXTS = [
    (Rule.BATTERY_CRITICAL, Facts("Segway sw-03", "Allingtown", "21:04", pct=9.4, charging=False),
     "Segway sw-03 (Allingtown): battery 9 % – critical, not charging, last seen 21:04"),
    (Rule.BATTERY_LOW, Facts("Segway 3, blue", "Allingtown", "21:04", pct=24.0),
     "Segway 3, blue (Allingtown): battery 24 % – low, last seen 21:04"),
    (Rule.OFFLINE, Facts("Handheld hh-07", "Westville", "20:50", silent_s=725),
     "Handheld hh-07 (Westville): offline – no data for 12 min, last seen 20:50"),
    (Rule.NOT_CHARGING, Facts("Segway sw-03", "Allingtown", "21:04", pct=62.0, place="the dock"),
     "Segway sw-03 (Allingtown): docked at the dock but not charging – battery 62 %, last seen 21:04"),
    (Rule.OVERTEMP, Facts("Segway sw-03", "Allingtown", "21:04", temp_c=52.2),
     "Segway sw-03 (Allingtown): battery 52 °C – too hot, last seen 21:04"),
    (Rule.FAULT, Facts("Segway sw-03", "Allingtown", "21:04", error_code=14),
     "Segway sw-03 (Allingtown): fault – error code 14, last seen 21:04"),
    (Rule.AGENT_DOWN, Facts("Agent ag-1", "Allingtown", "21:04"),
     "Agent ag-1 (Allingtown): agent offline – its devices' offline alerts are held, last seen 21:04"),
]
# fmt: on


@pytest.mark.parametrize(("rule", "facts", "message"), TEXTS)
def test_fire_text(rule, facts, message):
    assert fire_text(rule, facts) == message


def test_resolve_text():
    f = Facts("Segway sw-03", "Allingtown", "21:30", pct=12.0, charging=True, state="charging")
    assert (
        resolve_text(Rule.BATTERY_CRITICAL, f)
        == "Segway sw-03 (Allingtown): battery 12 % – charging"
    )
    assert (
        resolve_text(Rule.NOT_CHARGING, f)
        == "Segway sw-03 (Allingtown): charging now – battery 12 %"
    )
    assert (
        resolve_text(Rule.OFFLINE, f) == "Segway sw-03 (Allingtown): back online – last seen 21:30"
    )


def test_alert_json():
    snap = AlertSnapshot("allingtown", "segway", "sw-03", "battery_critical", "critical",  # type: ignore[arg-type]
                         "firing", 9.0, ms("2026-11-30T02:04:00+00:00"), None, "x – 9 %")  # fmt: skip
    assert (
        alert_json(snap)
        == (
            '{"state":"firing","severity":"critical","value":9.0,"since":"2026-11-30T02:04:00.000Z",'
            '"message":"x – 9 %","device":"sw-03","rule":"battery_critical","site":"allingtown",'
            '"kind":"segway","acknowledged_by":null}'
        ).encode()
    )
    assert datetime.fromisoformat("2026-11-30T02:04:00.000Z").tzinfo == UTC
