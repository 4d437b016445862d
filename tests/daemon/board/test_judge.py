"""The readiness judge: each state and its reason, the precedence, stale data on the reading's
own time, full-at and ready-at clock times, learned drain against the kind's default."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleet.config.board import BoardSettings
from fleet.daemon.board.judge import judge
from fleet.daemon.board.model import (
    Assignment,
    DeviceFacts,
    Latest,
    LearnedRates,
    OpenAlert,
    OutOfService,
    Readiness,
    Sample,
    Verdict,
)

TZ = ZoneInfo("America/New_York")
M = 60_000
H = 3_600_000
BOARD = BoardSettings()


def at(text: str) -> int:
    """Epoch ms of a station-local wall time."""
    return int(datetime.fromisoformat(text).replace(tzinfo=TZ).timestamp() * 1000)


NOW = at("2026-11-30T07:40:00")


def clock(ts_ms: int | None) -> str:
    assert ts_ms is not None
    return datetime.fromtimestamp(ts_ms / 1000, TZ).strftime("%H:%M")


def segway(pct: float | None = 80, *, age_ms: int = M, **fields: object) -> DeviceFacts:
    latest = Latest(ts_ms=NOW - age_ms, heard_ms=NOW, pct=pct, **fields)  # type: ignore[arg-type]
    return DeviceFacts(device="sw-03", site="allingtown", kind="segway", latest=latest)


def handheld(pct: float = 80, **fields: object) -> DeviceFacts:
    latest = Latest(ts_ms=NOW - M, heard_ms=NOW, pct=pct, **fields)  # type: ignore[arg-type]
    return DeviceFacts(device="hh-07", site="allingtown", kind="handheld", latest=latest)


def verdict(facts: DeviceFacts, board: BoardSettings = BOARD, now: int = NOW) -> Verdict:
    return judge(facts, board, now, tz=TZ)


def draining(pct_per_h: float, hours: float, *, start_pct: float = 95.0) -> tuple[Sample, ...]:
    """A history of steady drain in service, one sample every 5 min, ending at NOW."""
    n = int(hours * 12)
    return tuple(
        Sample(NOW - (n - i) * 5 * M, start_pct - pct_per_h * i / 12, False) for i in range(n + 1)
    )


# --- each state and its reason ---------------------------------------------------------------


def test_never_heard_is_unknown() -> None:
    v = verdict(DeviceFacts(device="sw-09", site="allingtown", kind="segway"))
    assert (v.state, v.reason) == (Readiness.UNKNOWN, "never heard from")
    assert v.last_seen_ms is None
    assert v.charge_pct is None


def test_low_names_the_charge_the_kind_and_the_shift() -> None:
    v = verdict(segway(38))
    assert v.state is Readiness.LOW
    assert v.reason == "38 % - below the 60 % a Segway needs for an 8-hour shift"
    # default drain 6.25 %/h x 8 h + 10 % reserve
    assert v.needed_pct == pytest.approx(60)
    assert v.estimate == "default"


def test_ready_shows_the_range_on_a_full_pack_scaled() -> None:
    v = verdict(segway(62))
    assert v.state is Readiness.READY
    assert v.range_km == pytest.approx(0.62 * 38)
    assert v.runtime_h is None
    assert v.reason == "62 %, about 24 km, enough for an 8-hour shift"
    assert v.full_at_ms is None


def test_the_vehicle_reported_range_caps_the_estimate_never_raises_it() -> None:
    v = verdict(segway(62, range_km=17.0))
    assert v.range_km == 17.0
    assert "about 17 km" in v.reason
    assert verdict(segway(62, range_km=30.0)).range_km == pytest.approx(0.62 * 38)


def test_range_follows_the_device_own_drain() -> None:
    # 12.5 %/h is twice the segway's default 6.25 %/h: half the kind's range per percent.
    v = verdict(replace(segway(90), history=draining(12.5, 3)))
    assert v.estimate == "learned"
    assert v.range_km == pytest.approx(0.90 * 38 / 2, rel=0.02)
    gentle = verdict(replace(segway(90), history=draining(3.125, 3)))
    assert gentle.range_km == pytest.approx(0.90 * 38 * 2, rel=0.02)


def test_a_handheld_shows_runtime_from_its_drain() -> None:
    v = verdict(handheld(56))
    assert v.state is Readiness.LOW  # handheld: 7 %/h x 8 + 10 = 66 %
    assert v.reason == "56 % - below the 66 % a handheld needs for an 8-hour shift"
    assert v.runtime_h == pytest.approx(56 / 7)
    assert v.range_km is None
    ok = verdict(handheld(77))
    assert ok.state is Readiness.READY
    assert ok.reason == "77 %, about 11 h, enough for an 8-hour shift"


def test_charging_below_the_need_gives_ready_at_and_full_at_as_clock_times() -> None:
    v = verdict(segway(35, age_ms=0, charging=True))
    assert v.state is Readiness.CHARGING
    # default charge 12.5 %/h: 25 points to the 60 % needed take 2 h, 65 to full 5.2 h
    assert v.ready_at_ms == NOW + 2 * H
    assert v.full_at_ms == NOW + int(5.2 * H)
    assert v.reason == "charging, enough for the shift at 09:40, full at 12:52"


def test_charging_times_use_the_learned_charge_rate() -> None:
    ramp = tuple(Sample(NOW - (12 - i) * 5 * M, 20 + 2.5 * i, True) for i in range(13))  # 30 %/h
    facts = replace(segway(50, age_ms=0, charging=True), history=ramp)
    v = verdict(facts)
    assert v.state is Readiness.CHARGING
    assert v.ready_at_ms == NOW + round(10 / 30 * H)
    assert v.full_at_ms == NOW + round(50 / 30 * H)
    assert clock(v.full_at_ms) == "09:20"


def test_charging_and_already_enough_is_ready_and_still_shows_full_at() -> None:
    v = verdict(segway(80, age_ms=0, charging=True))
    assert v.state is Readiness.READY
    assert v.full_at_ms == NOW + round(20 / 12.5 * H)
    assert v.reason == "80 %, about 30 km, charging, enough for the shift, full at 09:16"
    assert v.ready_at_ms is None


def test_full_on_the_charger_has_no_full_at() -> None:
    v = verdict(segway(100, charging=True))
    assert (v.state, v.full_at_ms) == (Readiness.READY, None)


def test_a_full_time_on_another_day_names_the_day() -> None:
    late = at("2026-11-30T22:00:00")
    facts = DeviceFacts(
        device="sw-03",
        site="allingtown",
        kind="segway",
        latest=Latest(ts_ms=late, heard_ms=late, pct=10, charging=True),
    )
    v = verdict(facts, now=late)
    assert v.reason.endswith("full at Tue 05:12")  # 90 points at 12.5 %/h: 7.2 h


def test_charging_seen_in_the_status_state_counts() -> None:
    v = verdict(segway(35, state="charging"))
    assert v.state is Readiness.CHARGING


# --- stale data, on the reading's own time ---------------------------------------------------


def test_silent_past_the_kind_expected_silence_is_offline_with_last_values_kept() -> None:
    v = verdict(segway(70, age_ms=23 * M))
    assert v.state is Readiness.OFFLINE
    assert v.reason == "last heard 23 min ago"
    assert v.stale is True
    assert (v.charge_pct, v.last_seen_ms) == (70, NOW - 23 * M)
    assert v.range_km == pytest.approx(0.7 * 38)


def test_staleness_is_measured_on_the_reading_time_not_arrival() -> None:
    # Arrived just now (a flushed backlog), but the reading itself is 11 min old.
    old = segway(70, age_ms=11 * M)
    assert old.latest is not None
    assert old.latest.heard_ms == NOW
    assert verdict(old).state is Readiness.OFFLINE
    # 9 min is inside a Segway's 10; a handheld's limit is its own 30 min.
    fresh = segway(70, age_ms=9 * M)
    assert verdict(fresh).state is Readiness.READY
    assert verdict(handheld(80), now=NOW + 29 * M).state is Readiness.READY
    assert verdict(handheld(80), now=NOW + 31 * M).reason == "last heard 32 min ago"


def test_an_open_offline_alert_makes_it_offline() -> None:
    alert = OpenAlert("offline", "warning", "Segway sw-03 silent for 12 min", NOW - M)
    v = verdict(replace(segway(70), alerts=(alert,)))
    assert v.state is Readiness.OFFLINE
    assert v.reason == "offline: Segway sw-03 silent for 12 min"
    assert v.alerts == (alert,)


@pytest.mark.parametrize(
    ("age_ms", "text"),
    [(45_000 + 11 * M, "11 min ago"), (3 * H + 5 * M, "3 h 5 min ago"), (3 * 24 * H, "3 days ago")],
)
def test_last_heard_reads_naturally(age_ms: int, text: str) -> None:
    assert verdict(segway(70, age_ms=age_ms)).reason == f"last heard {text}"


# --- precedence --------------------------------------------------------------------------------

SIGNED = Assignment("sw-03", "Ofc. Diaz", NOW - H, at("2026-11-30T16:00:00"), "kim")
MARK = OutOfService("sw-03", "flat tyre", "sgt. lee", NOW - H)


def test_signed_out_is_in_use_and_names_the_officer_and_due_time() -> None:
    v = verdict(replace(segway(20), assignment=SIGNED))
    assert v.state is Readiness.IN_USE
    assert v.reason == "signed out to Ofc. Diaz, due back at 16:00"
    assert v.overdue is False
    assert v.assignment == SIGNED


def test_past_due_is_overdue() -> None:
    v = verdict(replace(segway(20), assignment=SIGNED), now=at("2026-11-30T16:01:00"))
    assert v.state is Readiness.IN_USE
    assert v.overdue is True
    assert v.reason == "overdue: signed out to Ofc. Diaz, was due back at 16:00"


def test_signed_out_beats_out_of_service_and_offline() -> None:
    facts = replace(segway(20, age_ms=H), assignment=SIGNED, out_of_service=MARK)
    assert verdict(facts).state is Readiness.IN_USE


def test_never_heard_beats_signed_out() -> None:
    facts = DeviceFacts(device="sw-03", site="allingtown", kind="segway", assignment=SIGNED)
    assert verdict(facts).state is Readiness.UNKNOWN


@pytest.mark.parametrize(
    ("facts", "reason"),
    [
        (
            replace(segway(90), out_of_service=MARK),
            "out of service: flat tyre (marked by sgt. lee)",
        ),
        (
            replace(segway(90), silenced="in repair (silenced by kim)"),
            "in repair: in repair (silenced by kim)",
        ),
        (segway(90, state="fault"), "fault reported"),
        (segway(90, error_code=17), "fault: error code 17"),
        (
            replace(segway(90), alerts=(OpenAlert("fault", "warning", "error code 9", NOW),)),
            "fault: error code 9",
        ),
    ],
)
def test_out_of_service_reasons(facts: DeviceFacts, reason: str) -> None:
    v = verdict(facts)
    assert (v.state, v.reason) == (Readiness.OUT_OF_SERVICE, reason)


def test_out_of_service_beats_offline_and_offline_beats_low() -> None:
    assert verdict(replace(segway(90, age_ms=H), out_of_service=MARK)).state is (
        Readiness.OUT_OF_SERVICE
    )
    assert verdict(segway(5, age_ms=H)).state is Readiness.OFFLINE
    assert verdict(segway(5, age_ms=H, charging=True)).state is Readiness.OFFLINE


def test_error_code_zero_is_no_fault() -> None:
    assert verdict(segway(90, error_code=0)).state is Readiness.READY


def test_heard_but_no_charge_yet_is_unknown() -> None:
    v = verdict(segway(None, lat=41.0, lon=-72.9))
    assert (v.state, v.reason) == (Readiness.UNKNOWN, "no charge reading yet")


# --- the need: learned drain against the default --------------------------------------------


def test_learned_drain_raises_the_need() -> None:
    facts = replace(segway(70), history=draining(8.0, 3))
    v = verdict(facts)
    assert v.estimate == "learned"
    assert v.needed_pct == pytest.approx(8 * 8 + 10, abs=0.5)
    assert v.state is Readiness.LOW
    assert v.reason == "70 % - below the 74 % a Segway needs for an 8-hour shift"


def test_the_switch_to_learned_is_at_min_history() -> None:
    short = verdict(replace(segway(70), history=draining(8.0, 1.9)))
    long = verdict(replace(segway(70), history=draining(8.0, 2.0)))
    assert short.estimate == "default"
    assert short.needed_pct == pytest.approx(60)
    assert long.estimate == "learned"
    assert long.needed_pct == pytest.approx(74, abs=0.5)
    board = BoardSettings.model_validate({"kinds": {"segway": {"min_history_h": 1.5}}})
    assert verdict(replace(segway(70), history=draining(8.0, 1.6)), board).estimate == "learned"


def test_a_gentle_learned_drain_never_goes_below_the_kind_minimum() -> None:
    v = verdict(replace(segway(45), history=draining(1.0, 4)))
    assert v.estimate == "learned"
    assert v.needed_pct == pytest.approx(40)  # 1 x 8 + 10 = 18, but never below 40
    assert v.state is Readiness.READY


def test_the_need_is_capped_at_100() -> None:
    v = verdict(replace(segway(100), learned=LearnedRates(drain_pct_per_h=40.0)))
    assert v.needed_pct == 100
    assert v.state is Readiness.READY


def test_precomputed_rates_are_used_instead_of_the_history() -> None:
    facts = replace(segway(70), history=draining(1.0, 4), learned=LearnedRates(None, None))
    assert verdict(facts).estimate == "default"


def test_shift_length_and_kind_thresholds_come_from_config() -> None:
    board = BoardSettings.model_validate(
        {"shift_hours": 10, "kinds": {"segway": {"reserve_pct": 5}}}
    )
    v = verdict(segway(60), board)
    assert v.needed_pct == pytest.approx(6.25 * 10 + 5)
    assert v.reason == "60 % - below the 68 % a Segway needs for a 10-hour shift"
    assert board.kind("handheld").default_drain_pct_per_h == 7  # the other built-in stays


def test_an_unconfigured_kind_uses_the_generic_default() -> None:
    facts = DeviceFacts(
        device="bc-1",
        site="allingtown",
        kind="bodycam",
        latest=Latest(ts_ms=NOW, heard_ms=NOW, pct=95),
    )
    v = verdict(facts)
    assert (v.state, v.needed_pct, v.runtime_h) == (Readiness.READY, 90, 9.5)
    assert verdict(replace(facts, latest=Latest(ts_ms=NOW, heard_ms=NOW, pct=89))).state is (
        Readiness.LOW
    )


# --- never raises --------------------------------------------------------------------------

_pct = st.one_of(st.none(), st.floats(0, 100))
_latest = st.builds(
    Latest,
    ts_ms=st.integers(0, 2 * NOW),
    heard_ms=st.integers(0, 2 * NOW),
    pct=_pct,
    charging=st.one_of(st.none(), st.booleans()),
    state=st.one_of(st.none(), st.sampled_from(["idle", "riding", "charging", "fault", "off"])),
    error_code=st.one_of(st.none(), st.integers(0, 65535)),
    range_km=st.one_of(st.none(), st.floats(0, 10_000)),
)
_history = st.lists(
    st.builds(
        Sample,
        ts_ms=st.integers(NOW - 30 * H, NOW),
        pct=st.floats(0, 100),
        charging=st.one_of(st.none(), st.booleans()),
    ),
    max_size=60,
).map(lambda xs: tuple(sorted(xs, key=lambda s: s.ts_ms)))


@settings(max_examples=300, deadline=None)
@given(
    latest=st.one_of(st.none(), _latest),
    history=_history,
    kind=st.sampled_from(["segway", "handheld", "bodycam"]),
    signed=st.booleans(),
    now=st.integers(0, 2 * NOW),
)
def test_judge_never_raises_and_always_says_why(
    latest: Latest | None, history: tuple[Sample, ...], kind: str, signed: bool, now: int
) -> None:
    facts = DeviceFacts(
        device="d-1",
        site="allingtown",
        kind=kind,
        latest=latest,
        history=history,
        assignment=SIGNED if signed else None,
    )
    v = judge(facts, BOARD, now, tz=TZ)
    assert v.reason
    assert v.needed_pct is None or 0 <= v.needed_pct <= 100
    for t in (v.full_at_ms, v.ready_at_ms):
        assert t is None or t >= now
