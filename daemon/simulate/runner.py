"""Drives a simulated fleet in time and publishes what it reports.

Time has two clocks. The wall clock paces publishing: each device publishes
`rate_hz` readings per wall second. The simulated clock drives the physics:
it runs `speedup` times faster than the wall and starts at the wall's now
(live mode: readings carry the wall time) or at `start` (backfill mode:
readings carry the simulated time, and the run ends when the simulated clock
catches up with now, because the collector rejects readings from the future).

Pacing is a monotonic schedule of ticks, never a sleep per message: a period
of 1/rate_hz is cut into up to 20 ticks per second and each device belongs to
one tick of the period, so 1,000 devices at 1 Hz publish 50 per tick instead
of 1,000 in one burst. Tick `j` is due at start + j x tick length, so delays
do not add up (a late tick is published at once and counted as late).
A device's simulated time is the nominal time of its tick, not the moment the
tick actually ran, so with a fixed seed the physics are the same run to run.

Link behaviour requested on the command line lives here, not in the device
model: a silenced device stops publishing after some simulated seconds (0:
never publishes, not even its availability); a flapping device alternates
bursts of readings with bursts of skipped readings, announcing `offline` /
`online` on its availability topic at each change.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from fleet.daemon.simulate import encode, geo
from fleet.daemon.simulate.fleet import Member
from fleet.daemon.simulate.model import Device
from fleet.daemon.simulate.profiles import HANDHELD, SEGWAY
from fleet.daemon.simulate.sample import Condition

_LOG = logging.getLogger(__name__)

TICKS_PER_SECOND = 20
FLAP_UP_READINGS = (15, 60)
FLAP_DOWN_READINGS = (3, 12)


class Publisher(Protocol):
    """Where messages go: `daemon.mqtt.MqttLink` in production, a list in tests."""

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None:
        """Queue one message."""

    def flush(self, timeout: float) -> bool:
        """Wait until every QoS>0 message is acknowledged; False on timeout."""


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes back."""

    def time(self) -> float:
        """Wall-clock epoch seconds."""

    def sleep(self, seconds: float) -> None:
        """Wait up to `seconds`; may return early when the run is being stopped."""


class SystemClock:
    """The real clocks; `sleep` wakes early when `stop` is set."""

    def __init__(self, stop: threading.Event) -> None:
        self._stop = stop

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        self._stop.wait(seconds)


@dataclass(frozen=True, slots=True)
class Schedule:
    rate_hz: float = 1.0
    speedup: float = 1.0
    start: float | None = None  # epoch seconds; set = backfill mode
    count: int | None = None  # readings per device, then stop
    duration_s: float | None = None  # wall seconds, then stop
    qos: int = 1

    def __post_init__(self) -> None:
        if not (self.rate_hz > 0 and math.isfinite(self.rate_hz)):
            raise ValueError("rate must be a positive number of readings per second")
        if not (self.speedup > 0 and math.isfinite(self.speedup)):
            raise ValueError("speedup must be a positive number")
        if self.count is not None and self.count < 1:
            raise ValueError("count must be at least 1")
        if self.duration_s is not None and self.duration_s <= 0:
            raise ValueError("duration must be positive")
        if self.qos not in (0, 1, 2):
            raise ValueError("qos must be 0, 1 or 2")


@dataclass(frozen=True, slots=True)
class Faults:
    """Per-device conditions and link behaviour requested for a run."""

    conditions: Mapping[str, Condition] = field(default_factory=dict)
    silence_after_s: Mapping[str, float] = field(default_factory=dict)
    flap: frozenset[str] = frozenset()

    def devices(self) -> set[str]:
        return {*self.conditions, *self.silence_after_s, *self.flap}


@dataclass(slots=True)
class Summary:
    devices: int = 0
    readings: int = 0
    availability: int = 0
    skipped: int = 0  # readings a flapping link did not send
    ticks: int = 0
    late_ticks: int = 0
    max_lag_s: float = 0.0
    wall_s: float = 0.0
    sim_start: float = 0.0
    sim_end: float = 0.0
    flushed: bool = True
    stopped: str = ""

    def line(self) -> str:
        def iso(t: float) -> str:
            return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))

        return (
            f"simulate: {self.devices} devices, {self.readings} readings, "
            f"{self.availability} availability, {self.skipped} skipped by flapping links; "
            f"{self.wall_s:.1f} s wall, simulated {iso(self.sim_start)} .. {iso(self.sim_end)}; "
            f"{self.late_ticks}/{self.ticks} ticks late (max {self.max_lag_s * 1000:.0f} ms); "
            f"{'all acknowledged' if self.flushed else 'NOT all acknowledged'}; "
            f"ended: {self.stopped}"
        )


class _Sim:
    """A device with its link: topics, counters, silence and flapping."""

    __slots__ = (
        "avail_topic",
        "device",
        "done",
        "flap_left",
        "flap_rng",
        "flapping",
        "link_up",
        "member",
        "online_sent",
        "published",
        "silence_at",
        "topic",
    )

    def __init__(
        self, member: Member, device: Device, prefix: str, seed: int, silence_at: float
    ) -> None:
        self.member = member
        self.device = device
        self.topic = encode.reading_topic(prefix, member)
        self.avail_topic = encode.availability_topic(prefix, member)
        self.published = 0
        self.done = False
        self.silence_at = silence_at
        self.online_sent = False
        self.flapping = False
        self.link_up = True
        self.flap_rng = random.Random(f"{seed}/{member.device}/link")
        self.flap_left = 0


def build_devices(
    members: Sequence[Member], *, seed: int, t0: float, faults: Faults
) -> list[Device]:
    """The device models of a fleet, at simulated time `t0`."""
    out = []
    for m in members:
        route = geo.route_for(m.site, m.site_index)
        profile = SEGWAY if m.segway else HANDHELD
        cond = faults.conditions.get(m.device)
        out.append(
            Device(m.device, m.site, m.kind, profile, route, seed=seed, t0=t0, condition=cond)
        )
    return out


class Runner:
    """Publishes a fleet on a schedule; `run()` returns when the schedule is over or stopped."""

    def __init__(
        self,
        members: Sequence[Member],
        publisher: Publisher,
        *,
        prefix: str,
        schedule: Schedule,
        clock: Clock,
        seed: int,
        faults: Faults | None = None,
        flush_timeout_s: float = 10.0,
    ) -> None:
        self._publisher = publisher
        self._schedule = schedule
        self._clock = clock
        self._faults = faults or Faults()
        self._flush_timeout_s = flush_timeout_s
        self._t0_wall = clock.time()
        self._sim0 = schedule.start if schedule.start is not None else self._t0_wall
        devices = build_devices(members, seed=seed, t0=self._sim0, faults=self._faults)
        self._sims = []
        for m, d in zip(members, devices, strict=True):
            silence = self._faults.silence_after_s.get(m.device, math.inf)
            sim = _Sim(m, d, prefix, seed, self._sim0 + silence)
            sim.flapping = m.device in self._faults.flap
            if sim.flapping:
                sim.flap_left = sim.flap_rng.randint(*FLAP_UP_READINGS)
            self._sims.append(sim)

    def _avail(self, sim: _Sim, online: bool, summary: Summary) -> None:
        payload = encode.availability_payload(online)
        self._publisher.publish(sim.avail_topic, payload, qos=self._schedule.qos, retain=True)
        summary.availability += 1

    def run(self, stop: Callable[[], bool] = lambda: False) -> Summary:
        sched, clock = self._schedule, self._clock
        summary = Summary(devices=len(self._sims), sim_start=self._sim0, sim_end=self._sim0)
        backfill = sched.start is not None
        for sim in self._sims:
            if sim.silence_at > self._sim0:
                self._avail(sim, True, summary)
                sim.online_sent = True
            else:
                sim.done = True
        per_period = max(1, min(len(self._sims), round(TICKS_PER_SECOND / sched.rate_hz)))
        buckets = [self._sims[b::per_period] for b in range(per_period)]
        tick_s = 1.0 / (sched.rate_hz * per_period)
        mono0 = clock.monotonic()
        remaining = sum(1 for s in self._sims if not s.done)
        j = 0
        summary.stopped = "all devices silenced" if remaining == 0 else ""
        while not summary.stopped:
            if stop():
                summary.stopped = "stopped"
                break
            lag = clock.monotonic() - (mono0 + j * tick_s)
            if lag < 0:
                clock.sleep(-lag)
                continue
            elapsed = j * tick_s
            if sched.duration_s is not None and elapsed >= sched.duration_s:
                summary.stopped = "duration reached"
                break
            sim_t = self._sim0 + elapsed * sched.speedup
            if backfill and sim_t > clock.time():
                summary.stopped = "simulated clock reached now"
                break
            if lag > tick_s:
                summary.late_ticks += 1
            summary.max_lag_s = max(summary.max_lag_s, lag)
            summary.ticks += 1
            ts = sim_t if backfill else clock.time()
            for sim in buckets[j % per_period]:
                if not sim.done and self._tick(sim, sim_t, ts, summary):
                    remaining -= 1
            summary.sim_end = sim_t
            if remaining == 0:
                summary.stopped = "count reached" if sched.count else "all devices silenced"
            j += 1
        for sim in self._sims:
            if sim.online_sent and sim.link_up and sim.silence_at > summary.sim_end:
                self._avail(sim, False, summary)
        summary.flushed = self._publisher.flush(self._flush_timeout_s)
        summary.wall_s = clock.monotonic() - mono0
        return summary

    def _tick(self, sim: _Sim, sim_t: float, ts: float, summary: Summary) -> bool:
        """One reading slot of one device; True when the device has finished its run."""
        if sim_t >= sim.silence_at:
            sim.done = True
            _LOG.info("%s falls silent as requested", sim.member.device)
            return True
        sim.device.advance(sim_t)
        if sim.flapping and not self._link(sim, summary):
            summary.skipped += 1
            return False
        payload = encode.reading_payload(sim.member, sim.device.read(), ts)
        self._publisher.publish(sim.topic, payload, qos=self._schedule.qos)
        summary.readings += 1
        sim.published += 1
        count = self._schedule.count
        if count is not None and sim.published >= count:
            sim.done = True
            return True
        return False

    def _link(self, sim: _Sim, summary: Summary) -> bool:
        """Advance a flapping link by one reading slot; True if this slot's reading goes out."""
        sim.flap_left -= 1
        if sim.flap_left > 0:
            return sim.link_up
        sim.link_up = not sim.link_up
        self._avail(sim, sim.link_up, summary)
        span = FLAP_UP_READINGS if sim.link_up else FLAP_DOWN_READINGS
        sim.flap_left = sim.flap_rng.randint(*span)
        return sim.link_up
