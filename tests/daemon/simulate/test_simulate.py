"""`fleet simulate`: the device model's physics, the publishing schedule, the CLI, and one real broker.

Model and runner tests use a fake clock and an in-memory publisher, so hours of
simulated patrol take milliseconds; every payload they produce goes through
the collector's own `wire.Decoder`.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from fleet.daemon import cli, cli_support, wire
from fleet.daemon.simulate import battery, command, encode, geo
from fleet.daemon.simulate.fleet import Member, RegistryEntry, plan_fleet
from fleet.daemon.simulate.model import Device
from fleet.daemon.simulate.profiles import HANDHELD, SEGWAY
from fleet.daemon.simulate.runner import Faults, Runner, Schedule, Summary, build_devices
from fleet.daemon.simulate.sample import Condition, Sample
from tests.harness.waiting import wait_until

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z
HOUR = 3600.0
MEMBER_HH = Member("hh-01", "allingtown", 0, "handheld", False, None)


class FakeClock:
    """Monotonic and wall time that move only when the runner sleeps."""

    def __init__(self, wall: float = T0) -> None:
        self.mono = 0.0
        self.wall0 = wall

    def monotonic(self) -> float:
        return self.mono

    def time(self) -> float:
        return self.wall0 + self.mono

    def sleep(self, seconds: float) -> None:
        self.mono += seconds


class MemoryPublisher:
    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes, int, bool]] = []

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None:
        self.messages.append((topic, payload, qos, retain))

    def flush(self, timeout: float) -> bool:
        return True

    def readings(self) -> list[tuple[str, bytes]]:
        return [(t, p) for t, p, _, _ in self.messages if not t.endswith("/availability")]


def segway(condition: Condition | None = None, seed: int = 1, device: str = "sw-01") -> Device:
    return Device(
        device,
        "westhaven",
        "segway",
        SEGWAY,
        geo.DOWNTOWN_LOOP,
        seed=seed,
        t0=T0,
        condition=condition,
    )


def handheld(condition: Condition | None = None, seed: int = 1) -> Device:
    return Device(
        "hh-01",
        "allingtown",
        "handheld",
        HANDHELD,
        geo.ALLINGTOWN_LOOP,
        seed=seed,
        t0=T0,
        condition=condition,
    )


def decoder(clock: FakeClock, **overrides: object) -> wire.Decoder:
    args: dict[str, object] = {
        "prefix": "fleet",
        "default_site": "allingtown",
        "kinds": ["segway", "handheld"],
        "registry": {},
        "owntracks_map": {},
        "max_payload_bytes": 65536,
        "max_future_s": 300.0,
        "max_age_s": None,
        "now_ms": lambda: int(clock.time() * 1000),
    }
    args.update(overrides)
    return wire.Decoder(**args)  # type: ignore[arg-type]


def run_fleet(
    *,
    segways: int = 3,
    handhelds: int = 3,
    schedule: Schedule,
    faults: Faults | None = None,
    seed: int = 7,
    owntracks: bool = False,
    clock: FakeClock | None = None,
) -> tuple[MemoryPublisher, FakeClock, Summary]:
    clock = clock or FakeClock()
    members = plan_fleet(
        segways=segways, handhelds=handhelds, first_site="allingtown", owntracks=owntracks
    )
    pub = MemoryPublisher()
    runner = Runner(
        members, pub, prefix="fleet", schedule=schedule, clock=clock, seed=seed, faults=faults
    )
    return pub, clock, runner.run()


# --- battery physics ----------------------------------------------------------------------


def test_voltage_curve_spans_a_72_volt_pack():
    assert 20 * battery.cell_ocv(0) == pytest.approx(63.0)
    assert 20 * battery.cell_ocv(100) == pytest.approx(84.0)
    volts = [battery.cell_ocv(p) for p in range(101)]
    assert volts == sorted(volts)
    assert len(set(volts)) == 101


def test_charge_is_the_integral_of_the_charge_rate():
    # The closed form must agree with stepping the rate in small steps, all the way up.
    p_steps = 10.0
    for minute in range(1, 4 * 60):
        p_steps = min(100.0, p_steps + battery.charge_rate(p_steps, 45.0) / 600.0)
        for _ in range(9):
            p_steps = min(100.0, p_steps + battery.charge_rate(p_steps, 45.0) / 600.0)
        assert battery.charge(10.0, minute / 60.0, 45.0) == pytest.approx(p_steps, abs=0.2)


# --- one device ---------------------------------------------------------------------------


def test_riding_drains_the_battery_in_three_to_four_hours():
    d = segway(seed=3)
    d.advance(T0)
    d.pct = 100.0
    d.start_patrol(endless=True)
    states: Counter[str] = Counter()
    speeds: list[float] = []
    odo0 = d.odometer_km
    t = T0
    while d.pct > 5.0:
        t += 60.0
        d.advance(t)
        s = d.read()
        states[s.state] += 1
        if s.state == "riding":
            speeds.append(s.speed_kmh)
            assert s.current_a < 0
        assert t - T0 < 6 * HOUR, "battery never ran down"
    hours = (t - T0) / HOUR
    assert 2.8 <= hours <= 4.2, f"a full pack lasted {hours:.1f} h of patrol"
    assert states["riding"] > states["idle"] > 0  # rides with stops
    assert min(speeds) >= 8.0
    assert max(speeds) <= 18.5
    avg_kmh = (d.odometer_km - odo0) / hours
    assert 7.0 <= avg_kmh <= 16.0


def test_faster_riding_drains_faster():
    slow, fast = segway(seed=4), segway(seed=4)
    for d, speed in ((slow, 9.0), (fast, 17.0)):
        d.pct = 90.0
        d.start_patrol(endless=True)
        d.speed_range = (speed, speed)
        d.target_speed = speed
        d.next_stop = math.inf
        d.advance(T0 + HOUR)
    assert 90.0 - fast.pct > 1.3 * (90.0 - slow.pct) > 0


def test_charging_charges_and_tapers_above_80_percent():
    d = segway()
    d.pct = 0.0
    d.dock(plugged=True)
    reached: dict[int, float] = {}
    gains: list[tuple[float, float]] = []
    currents_at: list[tuple[float, float]] = []
    t = T0
    while d.pct < 100.0 and t - T0 < 5 * HOUR:
        before = d.pct
        t += 300.0
        d.advance(t)
        gains.append((before, d.pct - before))
        for mark in (80, 100):
            if d.pct >= mark:
                reached.setdefault(mark, (t - T0) / HOUR)
        sample = d.read()
        currents_at.append((sample.pct, sample.current_a))
        assert sample.charging
        assert sample.current_a > 0
        assert sample.state == ("docked" if d.pct >= 100 else "charging")
    assert 1.5 <= reached[80] <= 2.1
    assert 2.6 <= reached[100] <= 3.5, f"empty to full took {reached[100]:.1f} h"
    currents = {round(p): c for p, c in currents_at}

    def near(pct: float) -> float:
        return currents[min(currents, key=lambda p: abs(p - pct))]

    assert near(50) > 2 * near(95) > 0  # the charger backs off near full
    below = [g for p, g in gains if p < 75]
    above = [g for p, g in gains if p > 90]
    assert min(below) > 2 * max(above) > 0
    assert d.read().state == "docked"


def test_temperature_rises_while_charging_and_riding():
    d = segway(seed=5)
    d.pct, d.temp = 10.0, 20.0
    d.dock(plugged=True)
    d.advance(T0 + HOUR)
    assert d.read().temp_c > 24.0
    r = segway(seed=5)
    r.temp = battery.ambient_c(T0)
    r.start_patrol(endless=True)
    r.advance(T0 + HOUR)
    assert r.read().temp_c > battery.ambient_c(T0 + HOUR) + 3.0


def test_a_shift_leaves_the_dock_patrols_and_comes_back_to_charge():
    d = segway(seed=8)
    d.pct = 100.0
    d.dock(plugged=True, until=T0 + 600.0)
    seen: list[str] = []
    for k in range(1, 6 * 60):  # six hours, a reading a minute
        d.advance(T0 + k * 60.0)
        state = d.read().state
        if not seen or seen[-1] != state:
            seen.append(state)
    # docked (full) -> idle (pre-check) -> riding with stops -> charging at the dock
    assert seen[:3] == ["docked", "idle", "riding"]
    assert "charging" in seen[3:]
    assert seen.index("charging") > seen.index("riding")


def test_handheld_in_its_cradle_reports_no_location():
    h = handheld()
    h.pct = 50.0
    h.dock(plugged=True)
    clock = FakeClock()
    quiet = wire.Telemetry.model_validate_json(encode.reading_payload(MEMBER_HH, h.read(), T0))
    assert quiet.location is None
    assert quiet.battery is not None
    assert quiet.battery.charging
    h.start_patrol()
    h.advance(T0 + 60.0)
    out = decoder(clock).decode(
        "fleet/v1/allingtown/handheld/hh-01/telemetry",
        encode.reading_payload(MEMBER_HH, h.read(), T0 + 60.0),
    )
    assert out is not None
    assert out.location is not None


def test_unplugged_dock_does_not_charge():
    d = segway(Condition(unplugged=True))
    start = d.pct
    for k in range(1, 13):
        d.advance(T0 + k * 600.0)
        s = d.read()
        assert (s.state, s.charging) == ("docked", False)
        assert s.current_a <= 0
    assert start - 1.0 < d.pct < start  # a slow standby drain, no charge


def test_fault_sets_state_and_error_code():
    d = segway(Condition(fault_code=21))
    d.advance(T0 + HOUR)
    s = d.read()
    assert (s.state, s.error_code, s.speed_kmh) == ("fault", 21, 0.0)


def test_low_battery_starts_low_and_is_not_charged():
    d = segway(Condition(low_battery_pct=12.0))
    d.advance(T0 + HOUR)
    s = d.read()
    assert 10.0 < s.pct <= 12.0
    assert not s.charging
    assert s.state == "idle"
    h = handheld(Condition(low_battery_pct=12.0))
    h.advance(T0 + HOUR)
    assert 0.0 < h.read().pct < 12.0


def test_voltage_follows_charge_and_load():
    d = segway(seed=2)
    d.start_patrol(endless=True)
    d.pct = 95.0
    high = d.read()
    d.advance(T0 + 2 * HOUR)
    low = d.read()
    assert 63.0 <= low.voltage_v < high.voltage_v <= 84.5
    assert high.range_km is not None
    assert low.range_km is not None
    assert low.range_km < high.range_km


def test_positions_stay_within_3_km_of_their_station():
    members = plan_fleet(segways=10, handhelds=10, first_site="allingtown")
    faults = Faults()
    devices = build_devices(members, seed=11, t0=T0, faults=faults)
    farthest = 0.0
    for k in range(1, 12 * 60):  # twelve hours, one reading a minute
        for d in devices:
            d.advance(T0 + k * 60.0)
            s = d.read()
            away = d.route.distance_from_station_m(s.lat, s.lon)
            assert away < 3000.0, f"{s.device} {away:.0f} m from {d.route.station.name}"
            farthest = max(farthest, away)
    assert farthest > 800.0  # they do go out on patrol


def test_seq_counts_every_read():
    d = handheld()
    seqs = [d.read().seq for _ in range(5)]
    assert seqs == [1, 2, 3, 4, 5]


def test_same_seed_same_fleet_other_seed_other_fleet():
    def samples(seed: int) -> list[Sample]:
        d = segway(seed=seed)
        out = []
        for k in range(1, 200):
            d.advance(T0 + k * 30.0)
            out.append(d.read())
        return out

    assert samples(5) == samples(5)
    assert samples(5) != samples(6)


# --- the fleet ----------------------------------------------------------------------------


def test_fleet_ids_sites_and_registry_first():
    registry = [
        RegistryEntry("sw-02", "segway", "westhaven"),
        RegistryEntry("radio-9", "handheld", None, "jane/phone"),
    ]
    members = plan_fleet(
        segways=3, handhelds=3, first_site="allingtown", registry=registry, owntracks=True
    )
    got = [(m.device, m.site, m.kind, m.owntracks) for m in members]
    assert got == [
        ("sw-02", "westhaven", "segway", None),
        ("radio-9", "allingtown", "handheld", "jane/phone"),
        ("sw-01", "allingtown", "segway", None),
        ("sw-03", "westhaven", "segway", None),
        ("hh-01", "allingtown", "handheld", None),
        ("hh-02", "allingtown", "handheld", "officer-02/hh-02"),
    ]
    big = plan_fleet(segways=120, handhelds=0, first_site="westhaven")
    assert big[0].device == "sw-001"
    assert big[-1].device == "sw-120"
    assert {m.site for m in big} == {"westhaven", "allingtown"}


# --- the runner ---------------------------------------------------------------------------


def test_every_payload_decodes_and_seq_is_strictly_plus_one():
    schedule = Schedule(rate_hz=1.0, speedup=60.0, count=120)
    faults = Faults(
        conditions={
            "sw-02": Condition(fault_code=14),
            "sw-03": Condition(unplugged=True),
            "hh-03": Condition(low_battery_pct=3.0),
        },
        flap=frozenset({"hh-01"}),
    )
    pub, clock, _summary = run_fleet(
        segways=4, handhelds=4, schedule=schedule, faults=faults, owntracks=True
    )
    dec = decoder(clock)
    seqs: dict[str, list[int]] = defaultdict(list)
    states: Counter[str] = Counter()
    sources: Counter[str] = Counter()
    speedometers: list[float] = []
    for topic, payload in pub.readings():
        reading = dec.decode(topic, payload)  # raises Rejected on any contract violation
        assert reading is not None
        sources[reading.source] += 1
        if reading.source == "telemetry":
            # A segway's own speedometer (status) reads what its position moves at; a
            # handheld has none.
            assert reading.status is not None
            if reading.kind == "segway":
                assert reading.location is not None
                assert reading.status.speed_kmh == reading.location.speed_kmh
                assert reading.status.speed_kmh is not None
                speedometers.append(reading.status.speed_kmh)
            else:
                assert reading.status.speed_kmh is None
        if reading.seq is not None:
            seqs[reading.device].append(reading.seq)
        if reading.status is not None and reading.status.state is not None:
            states[reading.status.state] += 1
    assert sources["owntracks"] == 2 * 120
    for device, got in seqs.items():
        assert got == list(range(1, 121)), device
    assert {"fault", "docked", "riding"} <= set(states)
    assert max(speedometers) > 0


def test_count_is_exact_per_device_even_when_flapping():
    pub, _, summary = run_fleet(
        segways=3,
        handhelds=3,
        schedule=Schedule(rate_hz=5.0, count=150),
        faults=Faults(flap=frozenset({"sw-01", "hh-02"})),
    )
    per_device = Counter(json.loads(p)["device"] for _, p in pub.readings())
    assert set(per_device.values()) == {150}
    assert len(per_device) == 6
    assert summary.skipped > 0
    flaps = [(t, p) for t, p, _, _ in pub.messages if "sw-01/availability" in t]
    payloads = [p for _, p in flaps]
    # online at start, then offline/online pairs, offline at the clean exit
    assert payloads[0] == b"online"
    assert payloads[-1] == b"offline"
    assert len(payloads) >= 4
    assert all(a != b for a, b in itertools.pairwise(payloads))
    assert all(retain for t, _, _, retain in pub.messages if t.endswith("/availability"))


def test_silenced_device_publishes_nothing():
    pub, _, _ = run_fleet(
        schedule=Schedule(rate_hz=2.0, count=10), faults=Faults(silence_after_s={"sw-02": 0.0})
    )
    assert pub.messages
    assert not [t for t, *_ in pub.messages if "/sw-02/" in t]


def test_silence_after_some_time_stops_readings_and_sends_no_offline():
    pub, _, _ = run_fleet(
        schedule=Schedule(rate_hz=1.0, duration_s=20.0),
        faults=Faults(silence_after_s={"sw-02": 5.0}),
    )
    topics = [t for t, *_ in pub.messages if "/sw-02/" in t]
    assert topics.count("fleet/v1/westhaven/segway/sw-02/telemetry") == 5
    assert [t for t in topics if t.endswith("availability")] == [
        "fleet/v1/westhaven/segway/sw-02/availability"  # online only: a dead device says nothing
    ]


def test_live_mode_stamps_wall_time_and_paces_by_ticks():
    pub, _clock, summary = run_fleet(segways=50, handhelds=50, schedule=Schedule(count=3))
    stamps = sorted(json.loads(p)["ts"] for _, p in pub.readings() if p.startswith(b'{"schema'))
    assert stamps[0] == "2027-01-15T08:00:00.000Z"
    assert stamps[-1] == "2027-01-15T08:00:02.950Z"
    # 100 devices at 1 Hz: 20 ticks a second, 5 devices each
    assert summary.ticks == 60
    assert summary.late_ticks == 0


def test_backfill_stops_at_now():
    clock = FakeClock()
    start = clock.time() - HOUR
    pub, clock, summary = run_fleet(
        segways=2,
        handhelds=2,
        schedule=Schedule(rate_hz=2.0, speedup=300.0, start=start),
        clock=clock,
    )
    now_ms = clock.time() * 1000
    dec = decoder(clock)
    stamps = [dec.decode(t, p).ts_ms for t, p in pub.readings()]  # type: ignore[union-attr]
    assert min(stamps) == start * 1000
    assert max(stamps) <= now_ms
    assert max(stamps) >= now_ms - 300.0 * 1000  # within one reading's worth of simulated time
    assert summary.stopped == "simulated clock reached now"
    assert 11.0 <= clock.mono <= 13.0  # one simulated hour at 300x: 12 wall seconds


def test_same_seed_same_messages():
    def messages(seed: int) -> list[tuple[str, bytes, int, bool]]:
        pub, _, _ = run_fleet(schedule=Schedule(rate_hz=1, speedup=30, count=40), seed=seed)
        return pub.messages

    assert messages(3) == messages(3)
    assert messages(3) != messages(4)


def test_stop_ends_the_run_cleanly():
    clock = FakeClock()
    members = plan_fleet(segways=2, handhelds=0, first_site="allingtown")
    pub = MemoryPublisher()
    runner = Runner(members, pub, prefix="fleet", schedule=Schedule(), clock=clock, seed=1)
    summary = runner.run(lambda: clock.mono >= 3.0)
    assert summary.stopped == "stopped"
    assert [p for t, p, *_ in pub.messages if t.endswith("availability")][-2:] == [b"offline"] * 2


# --- the command line ---------------------------------------------------------------------


def parse(*argv: str) -> argparse.Namespace:
    return cli.build_parser().parse_args(["simulate", *argv])


def test_fault_options_parse():
    args = parse(
        "--fault",
        "sw-01",
        "--fault",
        "sw-02=7",
        "--low-battery",
        "hh-01",
        "--low-battery",
        "hh-02=30",
        "--unplugged",
        "sw-03",
        "--silence",
        "sw-04",
        "--silence",
        "sw-05=60",
        "--flap",
        "hh-03",
    )
    f = command.parse_faults(args)
    assert f.conditions["sw-01"].fault_code == 14
    assert f.conditions["sw-02"].fault_code == 7
    assert f.conditions["hh-01"].low_battery_pct == 12.0
    assert f.conditions["hh-02"].low_battery_pct == 30.0
    assert f.conditions["sw-03"].unplugged
    assert f.silence_after_s == {"sw-04": 0.0, "sw-05": 60.0}
    assert f.flap == {"hh-03"}
    with pytest.raises(command.UsageError, match=r"outside 0\.\.65535"):
        command.parse_faults(parse("--fault", "sw-01=70000"))
    with pytest.raises(command.UsageError, match="already has a condition"):
        command.parse_faults(parse("--fault", "sw-01", "--unplugged", "sw-01"))


def test_start_parses_offsets_and_zoned_times():
    assert parse("--start", "-24h").start == "-24h"  # a value, not an unknown option
    assert command.parse_start("-24h", T0) == T0 - 24 * HOUR
    assert command.parse_start("-90m", T0) == T0 - 5400
    assert command.parse_start("2027-01-15T07:00:00Z", T0) == T0 - HOUR
    for bad, why in (
        ("2027-01-15T07:00:00", "no time zone"),
        ("+1h", "offset like"),
        ("2027-01-15T09:00:00Z", "not in the past"),
    ):
        with pytest.raises(command.UsageError, match=why):
            command.parse_start(bad, T0)


def test_bad_configuration_exits_78(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    config = tmp_path / "fleet.toml"
    config.write_text("[mqtt]\nprot = 1883\n")
    assert cli.main(["simulate", "--config", str(config), "--count", "1"]) == cli_support.EX_CONFIG
    assert "prot" in capsys.readouterr().err


def test_unknown_fault_device_is_a_usage_error(monkeypatch, capsys):
    monkeypatch.delenv("FLEET_CONFIG", raising=False)
    assert cli.main(["simulate", "--segways", "1", "--fault", "sw-09"]) == command.EX_USAGE
    assert "sw-09" in capsys.readouterr().err


# --- end to end ---------------------------------------------------------------------------


def test_simulate_publishes_to_a_real_broker(mqtt_broker, monkeypatch, capsys):
    received: list[tuple[str, bytes, bool]] = []
    lock = threading.Lock()
    subscribed = threading.Event()

    def on_message(client, userdata, message):
        with lock:
            received.append((message.topic, message.payload, bool(message.retain)))

    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-simulate-subscriber")
    sub.on_message = on_message
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.connect(mqtt_broker.host, mqtt_broker.port)
    sub.subscribe([("fleet/v1/#", 1), ("owntracks/#", 1)])
    sub.loop_start()
    try:
        assert subscribed.wait(5)
        monkeypatch.delenv("FLEET_CONFIG", raising=False)
        monkeypatch.setenv("FLEET_MQTT__HOST", mqtt_broker.host)
        monkeypatch.setenv("FLEET_MQTT__PORT", str(mqtt_broker.port))
        argv = [
            "simulate",
            "--count",
            "3",
            "--segways",
            "2",
            "--handhelds",
            "2",
            "--rate",
            "10",
            "--seed",
            "1",
        ]
        assert cli.main(argv) == 0
        assert "12 readings" in capsys.readouterr().out

        def telemetry() -> list[tuple[str, bytes, bool]]:
            with lock:
                return [m for m in received if m[0].endswith("/telemetry")]

        wait_until(lambda: len(telemetry()) >= 12, timeout=20, message="12 readings")
        wait_until(
            lambda: sum(1 for m in received if m[1] == b"offline" and not m[2]) >= 4,
            timeout=20,
            message="offline availability of 4 devices",
        )
    finally:
        sub.loop_stop()
        sub.disconnect()
    expected = {
        "fleet/v1/allingtown/segway/sw-01/telemetry",
        "fleet/v1/westhaven/segway/sw-02/telemetry",
        "fleet/v1/allingtown/handheld/hh-01/telemetry",
        "fleet/v1/westhaven/handheld/hh-02/telemetry",
    }
    assert Counter(t for t, _, _ in telemetry()) == dict.fromkeys(expected, 3)
    # Retained messages left on the shared broker by other tests are not this run's.
    availability = [(t, p) for t, p, r in received if t.endswith("/availability") and not r]
    assert sorted(availability) == sorted(
        [
            (t.replace("telemetry", "availability"), s)
            for t in expected
            for s in (b"online", b"offline")
        ]
    )
    clock = FakeClock(wall=time.time())
    dec = decoder(clock)
    for topic, payload, _ in telemetry():
        assert dec.decode(topic, payload) is not None
