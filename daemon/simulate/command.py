"""`fleet simulate`: publish a believable simulated fleet to the broker of the configuration.

Examples:
    fleet simulate --segways 8 --handhelds 8                  # live, 1 reading/s each
    fleet simulate --start -24h --speedup 1440 --rate 2       # a day of history in a minute
    fleet simulate --count 3 --fault sw-02=21 --unplugged sw-04 --flap hh-01
"""

from __future__ import annotations

import argparse
import math
import os
import re
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any

from fleet.config import FleetSettings
from fleet.daemon.cli_support import EX_CONFIG, load_config
from fleet.daemon.logs import setup_logging
from fleet.daemon.simulate.fleet import Member, RegistryEntry, plan_fleet
from fleet.daemon.simulate.runner import Faults, Publisher, Runner, Schedule, SystemClock
from fleet.daemon.simulate.sample import Condition

EX_USAGE = 64
EX_UNAVAILABLE = 69
CONNECT_TIMEOUT_S = 10.0
_RELATIVE_RE = re.compile(r"^-(\d+(?:\.\d+)?)([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_NEGATIVE_VALUE_RE = re.compile(r"^-\d+$|^-\d*\.\d+$|^-\d+(?:\.\d+)?[smhd]$")


class UsageError(ValueError):
    """A command-line value that cannot be used; the message says why."""


def add_parser(subparsers: Any) -> None:
    """Register `simulate` on the `fleet` command's sub-parsers."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "simulate",
        help="publish a simulated fleet of Segways and handhelds (demo, tests, benchmarks)",
        description="Simulate Segways and handhelds patrolling from two West Haven "
        "sub-stations and publish their telemetry (v1 contract) to the configured broker. "
        "Deterministic for a given --seed.",
    )
    p.add_argument("--config", type=Path, metavar="PATH", help="TOML configuration file")
    p.add_argument("--segways", type=int, default=6, metavar="N", help="Segways (default 6)")
    p.add_argument("--handhelds", type=int, default=6, metavar="N", help="handhelds (default 6)")
    p.add_argument(
        "--owntracks",
        action="store_true",
        help="every second handheld (and registry devices with an OwnTracks pair) publishes "
        "OwnTracks location JSON to owntracks/{user}/{device} instead",
    )
    p.add_argument(
        "--rate",
        type=float,
        default=1.0,
        metavar="HZ",
        help="readings per device per wall second (default 1)",
    )
    p.add_argument(
        "--speedup",
        type=float,
        default=1.0,
        metavar="X",
        help="simulated seconds per wall second (default 1)",
    )
    p.add_argument(
        "--start",
        metavar="WHEN",
        help="backfill from WHEN (-24h, -90m, -2d, or ISO-8601 with zone): readings carry "
        "simulated time and the run ends when it reaches now",
    )
    p.add_argument(
        "--count", type=int, metavar="N", help="each device publishes exactly N readings, then exit"
    )
    p.add_argument("--duration", type=float, metavar="S", help="stop after S wall seconds")
    p.add_argument("--seed", type=int, help="random seed (default: random, printed at exit)")
    p.add_argument("--qos", type=int, default=1, choices=(0, 1, 2), help="MQTT QoS (default 1)")
    p.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="DEVICE[=CODE]",
        help="device in state fault with error code CODE (default 14)",
    )
    p.add_argument(
        "--silence",
        action="append",
        default=[],
        metavar="DEVICE[=S]",
        help="device stops publishing after S simulated seconds (default 0: never publishes)",
    )
    p.add_argument(
        "--flap",
        action="append",
        default=[],
        metavar="DEVICE",
        help="device's link flaps: offline/online and bursts of skipped readings",
    )
    p.add_argument(
        "--low-battery",
        action="append",
        default=[],
        metavar="DEVICE[=PCT]",
        help="device starts at PCT %% charge (default 12) and is not charged",
    )
    p.add_argument(
        "--unplugged",
        action="append",
        default=[],
        metavar="DEVICE",
        help="device is docked but its charger is not connected",
    )
    # "--start -24h" must read -24h as a value, not an unknown option: argparse does
    # that only for what it takes to be negative numbers, so widen its test.
    p._negative_number_matcher = _NEGATIVE_VALUE_RE
    p.set_defaults(handler=run)


def _split(spec: str, option: str) -> tuple[str, str | None]:
    device, sep, value = spec.partition("=")
    if not device:
        raise UsageError(f"{option} {spec!r}: missing the device id")
    return device, (value if sep else None)


def _number(text: str, option: str, low: float, high: float, *, integer: bool) -> float:
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        kind = "an integer" if integer else "a number"
        raise UsageError(f"{option}: {text!r} is not {kind}") from None
    if not (low <= value <= high):
        raise UsageError(f"{option}: {text} is outside {low:g}..{high:g}")
    return value


def parse_faults(args: argparse.Namespace) -> Faults:
    """The --fault/--silence/--flap/--low-battery/--unplugged options as `Faults`."""
    conditions: dict[str, Condition] = {}

    def put(device: str, option: str, cond: Condition) -> None:
        if device in conditions:
            raise UsageError(f"{option} {device}: the device already has a condition")
        conditions[device] = cond

    for spec in args.fault:
        device, value = _split(spec, "--fault")
        code = 14 if value is None else int(_number(value, "--fault", 0, 65535, integer=True))
        put(device, "--fault", Condition(fault_code=code))
    for spec in args.low_battery:
        device, value = _split(spec, "--low-battery")
        pct = 12.0 if value is None else _number(value, "--low-battery", 0, 100, integer=False)
        put(device, "--low-battery", Condition(low_battery_pct=pct))
    for device in args.unplugged:
        put(_split(device, "--unplugged")[0], "--unplugged", Condition(unplugged=True))
    silence: dict[str, float] = {}
    for spec in args.silence:
        device, value = _split(spec, "--silence")
        after = 0.0 if value is None else _number(value, "--silence", 0, 1e9, integer=False)
        silence[device] = after
    flap = frozenset(_split(d, "--flap")[0] for d in args.flap)
    return Faults(conditions=conditions, silence_after_s=silence, flap=flap)


def parse_start(text: str, now: float) -> float:
    """`-24h` style offsets or an ISO-8601 time with zone, as epoch seconds in the past."""
    m = _RELATIVE_RE.match(text.strip())
    if m:
        start = now - float(m.group(1)) * _UNIT_S[m.group(2)]
    else:
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            raise UsageError(
                f"--start {text!r}: use an offset like -24h, -90m, -2d or an ISO-8601 time"
            ) from None
        if when.utcoffset() is None:
            raise UsageError(f"--start {text!r} has no time zone; add Z or an offset")
        start = when.timestamp()
    if start >= now:
        raise UsageError(f"--start {text!r} is not in the past")
    return start


def build_schedule(args: argparse.Namespace, now: float) -> Schedule:
    start = parse_start(args.start, now) if args.start else None
    if start is not None and args.speedup <= 1 and args.count is None and args.duration is None:
        raise UsageError("--start needs --speedup above 1 to ever catch up with now")
    try:
        return Schedule(
            rate_hz=args.rate,
            speedup=args.speedup,
            start=start,
            count=args.count,
            duration_s=args.duration,
            qos=args.qos,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def build_members(args: argparse.Namespace, settings: FleetSettings) -> list[Member]:
    registry = [RegistryEntry(d.id, d.kind, d.site, d.owntracks) for d in settings.devices]
    try:
        return plan_fleet(
            segways=args.segways,
            handhelds=args.handhelds,
            first_site=settings.site.id,
            registry=registry,
            owntracks=args.owntracks,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT/SIGTERM end the run cleanly (offline availability, flush, summary)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def run(args: argparse.Namespace) -> int:
    """Load the configuration, connect, simulate until the schedule ends; print a summary."""
    settings = load_config(args.config)
    if settings is None:
        return EX_CONFIG
    setup_logging(settings.log_level)
    stop = threading.Event()
    clock = SystemClock(stop)
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "big")
    try:
        schedule = build_schedule(args, clock.time())
        members = build_members(args, settings)
        faults = parse_faults(args)
        unknown = sorted(faults.devices() - {m.device for m in members})
        if unknown:
            raise UsageError(f"not in the simulated fleet: {', '.join(unknown)}")
    except UsageError as exc:
        sys.stderr.write(f"fleet simulate: {exc}\n")
        return EX_USAGE

    from fleet.daemon.mqtt import MqttLink  # here: paho loads only when a run really starts

    link = MqttLink(settings.mqtt, client_id=f"fleet-simulator-{os.getpid()}", persistent=False)
    undo = link.start()
    try:
        if not link.wait_connected(CONNECT_TIMEOUT_S):
            where = f"{settings.mqtt.host}:{settings.mqtt.port}"
            sys.stderr.write(f"fleet simulate: cannot connect to the MQTT broker at {where}\n")
            return EX_UNAVAILABLE
        return _simulate(link, settings, members, schedule, faults, clock, seed, stop)
    finally:
        undo()


def _simulate(
    publisher: Publisher,
    settings: FleetSettings,
    members: list[Member],
    schedule: Schedule,
    faults: Faults,
    clock: SystemClock,
    seed: int,
    stop: threading.Event,
) -> int:
    # Generous: a backlog of QoS 1 messages drains at the broker's pace, not ours.
    flush_s = max(10.0, math.ceil(len(members) * schedule.rate_hz / 100.0))
    runner = Runner(
        members,
        publisher,
        prefix=settings.mqtt.topic_prefix,
        schedule=schedule,
        clock=clock,
        seed=seed,
        faults=faults,
        flush_timeout_s=flush_s,
    )
    with _stop_on_signals(stop):
        summary = runner.run(stop.is_set)
    sys.stdout.write(f"{summary.line()}; seed {seed}\n")
    sys.stdout.flush()
    return 0 if summary.flushed else 1
