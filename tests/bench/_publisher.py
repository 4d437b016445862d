"""The bench's load generator, run as its own process so it never shares the GIL with what is
measured.

    python tests/bench/_publisher.py burst --config C --count N --devices D
    python tests/bench/_publisher.py paced --config C --devices D --duration S [--rate-hz 1]

`burst` publishes N telemetry messages QoS 1 as fast as paho takes them and waits until the
broker has acknowledged every one. `paced` publishes each device `rate_hz` times a second on a
monotonic schedule of 20 ticks per second (1,000 devices at 1 Hz = 50 messages every 50 ms),
each message stamped with its publish time, until `duration` is over or SIGTERM arrives.
Either prints one JSON line with what it did.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from fleet.config import load_settings
from fleet.daemon.mqtt import MqttLink
from tests.bench._common import Fleet

TICKS_PER_SECOND = 20


def _link(config: Path, name: str) -> MqttLink:
    settings = load_settings(config, environ={})
    link = MqttLink(settings.mqtt, client_id=f"bench-pub-{name}", persistent=False)
    link.start()
    if not link.wait_connected(10):
        raise SystemExit("publisher could not connect to the broker")
    return link


def burst(args: argparse.Namespace) -> dict[str, float]:
    fleet = Fleet(args.devices)
    link = _link(args.config, "burst")
    started = time.monotonic()
    for i in range(args.count):
        device = i % args.devices
        topic, payload = fleet.message(device, i // args.devices, time.time())
        link.publish(topic, payload, qos=1)
    queued = time.monotonic()
    if not link.flush(600):
        raise SystemExit(f"broker did not acknowledge {link.unacknowledged()} messages")
    done = time.monotonic()
    link.stop()
    return {"published": args.count, "queue_s": queued - started, "acked_s": done - started}


def paced(args: argparse.Namespace) -> dict[str, float]:
    stop = threading.Event()

    def on_term(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_term)
    fleet = Fleet(args.devices)
    link = _link(args.config, "paced")
    ticks_per_period = max(1, round(TICKS_PER_SECOND / args.rate_hz))
    tick_s = 1 / (args.rate_hz * ticks_per_period)
    slots = [range(s, args.devices, ticks_per_period) for s in range(ticks_per_period)]
    published = late = 0
    worst_late_s = 0.0
    start = time.monotonic()
    tick = 0
    while not stop.is_set():
        due = start + tick * tick_s
        if due - start >= args.duration:
            break
        wait = due - time.monotonic()
        if wait > 0:
            stop.wait(wait)
        elif -wait > tick_s:
            late += 1
            worst_late_s = max(worst_late_s, -wait)
        period, slot = divmod(tick, ticks_per_period)
        for device in slots[slot]:
            topic, payload = fleet.message(device, period, time.time())
            link.publish(topic, payload, qos=1)
            published += 1
        tick += 1
    elapsed = time.monotonic() - start
    link.flush(30)
    link.stop()
    return {
        "published": published,
        "seconds": elapsed,
        "late_ticks": late,
        "worst_late_s": worst_late_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="mode", required=True)
    b = sub.add_parser("burst")
    b.add_argument("--config", type=Path, required=True)
    b.add_argument("--count", type=int, required=True)
    b.add_argument("--devices", type=int, default=1000)
    p = sub.add_parser("paced")
    p.add_argument("--config", type=Path, required=True)
    p.add_argument("--devices", type=int, default=1000)
    p.add_argument("--rate-hz", type=float, default=1.0)
    p.add_argument("--duration", type=float, required=True)
    args = parser.parse_args()
    result = burst(args) if args.mode == "burst" else paced(args)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
