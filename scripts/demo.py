"""The demo: a simulated fleet flowing through the real collector into a real InfluxDB.

Starts a private Mosquitto (127.0.0.1:18830) and InfluxDB (127.0.0.1:18086) under
run/demo/ with the test harness's classes, writes run/demo/fleet.toml, then runs
`fleet collector` and `fleet simulate` as child processes and prints where to look.
Ports are fixed so the printed commands stay valid; data under run/demo/ is kept
between runs (`--fresh` starts over). Ctrl-C or SIGTERM stops everything in order:
simulator, collector (drains its spool), broker, database.

The board is at http://127.0.0.1:18080/ with a demo login (user `demo`, a password made
and printed at every start; only its scrypt hash goes into fleet.toml). The simulated
fleet shows every state of the board: one device low (--low-battery), one faulted (->
out of service), one that falls silent (-> offline), devices charging, and one signed out
by the demo itself through the API as the demo user once the fleet is heard.

`--check` runs the same and exits 0 only if readings reached InfluxDB, the board answers
and every state is on it: a smoke test that needs no CI.
"""

from __future__ import annotations

import argparse
import base64
import json
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the harness lives in tests/, which is not installed

from fleet.daemon.collector.http.auth import hash_password  # noqa: E402
from fleet.daemon.wire import subscriptions  # noqa: E402
from tests.harness.process import spawn, stop_process, tail  # noqa: E402
from tests.harness.servers import (  # noqa: E402
    InfluxError,
    InfluxServer,
    MosquittoServer,
    ServerError,
)

MQTT_PORT = 18830
INFLUX_PORT = 18086
HTTP_BIND = "127.0.0.1:18080"
DATABASE = "fleet"
TOPIC_PREFIX = "fleet"
CLIENT_ID = "fleet-collector"
STATUS_EVERY_S = 5.0
DEMO_USER = "demo"
# The seed fixes which devices start on the charger below 90 % (with 5: sw-02, sw-03,
# hh-01, hh-02 and hh-04), so the board shows some charging from the start.
SIMULATE_ARGS = [
    *("--segways", "6", "--handhelds", "4", "--rate", "1", "--speedup", "10", "--seed", "5"),
    # A few things for the alert engine and the board to find: low, faulted (out of
    # service), docked without power, and one that stops after its first readings (offline).
    *("--low-battery", "sw-04=9", "--fault", "sw-05=14", "--unplugged", "sw-06"),
    *("--silence", "hh-03=30"),
]
# Every state the board must show (scripts/demo --check).
BOARD_STATES = ("ready", "charging", "low", "in_use", "out_of_service", "offline")
# Fallen silent after this long (wall seconds) in the demo, not the production 10 / 30
# minutes: the demo runs at 10x and --check must see a device go offline.
DEMO_SILENCE_S = 15
BOARD_WAIT_S = 60.0

# Registered devices: the simulator uses these first, with their site and kind;
# the rest of the fleet is unregistered (accepted, default site rules).
DEVICES = [
    ("sw-01", "segway", "Segway 1", "allingtown"),
    ("sw-02", "segway", "Segway 2", "allingtown"),
    ("sw-03", "segway", "Segway 3", "westhaven"),
    ("hh-01", "handheld", "Handheld 1", "allingtown"),
    ("hh-02", "handheld", "Handheld 2", "westhaven"),
]


def say(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def fleet_toml(run_dir: Path, password_hash: str) -> str:
    devices = "".join(
        f'\n[[devices]]\nid = "{ident}"\nkind = "{kind}"\nname = "{name}"\nsite = "{site}"\n'
        for ident, kind, name, site in DEVICES
    )
    return f"""\
# Written by scripts/demo on every run: edit scripts/demo.py instead.

[site]
id = "allingtown"
name = "Allingtown"
others = {{ westhaven = "West Haven downtown" }}

[mqtt]
host = "127.0.0.1"
port = {MQTT_PORT}
client_id = "{CLIENT_ID}"
topic_prefix = "{TOPIC_PREFIX}"

[influx]
url = "http://127.0.0.1:{INFLUX_PORT}"
database = "{DATABASE}"

[spool]
path = "{run_dir / "spool.sqlite"}"

[http]
bind = "{HTTP_BIND}"
users = {{ {DEMO_USER} = "{password_hash}" }}

[board.kinds.segway]
expected_silence_s = {DEMO_SILENCE_S}

[board.kinds.handheld]
expected_silence_s = {DEMO_SILENCE_S}

[alerts]
state_path = "{run_dir / "alerts.sqlite"}"

[agent]
outbox_path = "{run_dir / "agent-outbox.sqlite"}"
{devices}"""


class Child:
    """A `fleet` sub-command running in the background with its output in a log file."""

    def __init__(self, name: str, argv: list[str], log_path: Path, stop_signal: int) -> None:
        self.name = name
        self.log_path = log_path
        self.stop_signal = stop_signal
        self.proc = spawn(argv, log_path, cwd=ROOT)

    def exited(self) -> int | None:
        return self.proc.poll()

    def stop(self) -> int:
        return stop_process(self.proc, timeout=30, sig=self.stop_signal)

    def report(self) -> str:
        return f"--- {self.log_path} ---\n{tail(self.log_path, 25)}"


class Demo:
    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.config_path = run_dir / "fleet.toml"
        self.broker = MosquittoServer(run_dir / "mosquitto", MQTT_PORT)
        self.influx = InfluxServer(run_dir / "influxdb", INFLUX_PORT)
        self.children: list[Child] = []
        self.password = secrets.token_urlsafe(9)  # a new one every run, printed
        self.board_url = f"http://{HTTP_BIND}"
        self.signed_out: str | None = None

    def start(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(fleet_toml(self.run_dir, hash_password(self.password)))
        self.broker.start()
        self.influx.start()
        fleet = str(ROOT / ".venv" / "bin" / "fleet")
        config = ["--config", str(self.config_path)]
        mark = self.broker.log_offset()
        collector = self._spawn("collector", [fleet, "collector", *config], signal.SIGTERM)
        self._wait_for_collector(collector, mark)
        # SIGINT: the simulator then publishes its devices' `offline` and exits.
        self._spawn("simulate", [fleet, "simulate", *config, *SIMULATE_ARGS], signal.SIGINT)

    def _spawn(self, name: str, argv: list[str], stop_signal: int) -> Child:
        child = Child(name, argv, self.run_dir / f"{name}.log", stop_signal)
        self.children.append(child)
        return child

    def _wait_for_collector(self, collector: Child, mark: int) -> None:
        """Until the collector has subscribed, readings published now would not be queued for it."""
        topic = subscriptions(TOPIC_PREFIX)[0]
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if collector.exited() is not None:
                return  # the main loop reports it
            if self.broker.subscribed(CLIENT_ID, topic, since=mark):
                return
            time.sleep(0.1)
        say(f"warning: the collector has not subscribed to {topic} after 20 s; see its log")

    def stop(self) -> None:
        for child in reversed(self.children):
            code = child.stop()
            say(f"stopped {child.name} (exit code {code})")
        self.children.clear()
        self.broker.stop()
        self.influx.stop()
        say("stopped the broker and InfluxDB")

    def dead_child(self) -> Child | None:
        return next((c for c in self.children if c.exited() is not None), None)

    def battery_counts(self, since_ms: int) -> dict[str, int]:
        """Battery points per device written since `since_ms` (empty before the database exists)."""
        q = f"SELECT count(pct) FROM battery WHERE time >= {since_ms:d}ms GROUP BY device"  # noqa: S608 - an int
        try:
            rows = self.influx.rows(q, DATABASE)
        except InfluxError as exc:
            if "database not found" in str(exc):
                return {}
            raise
        return {str(row["device"]): int(row["count"]) for row in rows}

    def _api(self, method: str, path: str, body: object = None) -> tuple[int, object]:
        data = None if body is None else json.dumps(body).encode()
        url = self.board_url + path  # http://, fixed above
        request = urllib.request.Request(url, data=data, method=method)  # noqa: S310
        request.add_header("Accept", "application/json")
        if data is not None:
            token = base64.b64encode(f"{DEMO_USER}:{self.password}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")  # a script's login
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - http
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, json.loads(exc.read() or b"null")

    def board(self) -> list[dict[str, object]]:
        """The board's devices; empty while the collector does not answer yet."""
        try:
            status, items = self._api("GET", "/api/v1/devices")
        except (OSError, ValueError):
            return []
        return items if status == 200 and isinstance(items, list) else []

    def sign_out_one(self) -> None:
        """Sign out one device that is ready (else charging), as the demo user, once."""
        if self.signed_out is not None:
            return
        items = self.board()
        for wanted in ("ready", "charging"):
            for item in items:
                if item.get("state") != wanted:
                    continue
                device = str(item["device"])
                body = {"device": device, "officer": "Officer Demo", "hours": 8}
                status, answer = self._api("POST", "/api/v1/assignments", body)
                if status == 201:
                    self.signed_out = device
                    say(f"signed {device} out to Officer Demo as user {DEMO_USER} (8 h)")
                    return
                say(f"could not sign {device} out: {status} {answer}")

    def board_states(self) -> set[str]:
        return {str(item.get("state")) for item in self.board()}

    def where_to_look(self) -> None:
        q = "SELECT last(pct) FROM battery GROUP BY device"
        say()
        say(f"MQTT broker      127.0.0.1:{MQTT_PORT}")
        if shutil.which("mosquitto_sub"):
            say(f"  watch it:      mosquitto_sub -h 127.0.0.1 -p {MQTT_PORT} -t 'fleet/#' -v")
        say(f"InfluxDB         {self.influx.url}  (database {DATABASE})")
        say(
            f"  query it:      curl -G {self.influx.url}/query --data-urlencode db={DATABASE}"
            f' --data-urlencode "q={q}"'
        )
        say(f"open alerts      curl http://{HTTP_BIND}/api/v1/alerts")
        if shutil.which("mosquitto_sub"):
            say(
                f"  as they change: mosquitto_sub -h 127.0.0.1 -p {MQTT_PORT} -t 'fleet/v1/+/alerts/#' -v"
            )
        say(f"collector health curl http://{HTTP_BIND}/healthz")
        say(f"metrics          curl http://{HTTP_BIND}/metrics")
        say(f"in a terminal    .venv/bin/fleet status --config {self.config_path}")
        say()
        say(f"THE BOARD        {self.board_url}/   (wall screen: {self.board_url}/?kiosk=1)")
        say(f"  log in as      user {DEMO_USER}, password {self.password}")
        say(f"config and logs  {self.run_dir}/ (fleet.toml, collector.log, simulate.log)")
        say()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/demo", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="run briefly, verify readings reached InfluxDB"
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=20.0,
        help="seconds that --check runs at least (default 20; up to 60 more for the board)",
    )
    parser.add_argument("--fresh", action="store_true", help="delete run/demo/ before starting")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    run_dir = ROOT / "run" / "demo"
    if args.fresh and run_dir.exists():
        shutil.rmtree(run_dir)

    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    demo = Demo(run_dir)
    started_ms = int(time.time() * 1000)
    try:
        demo.start()
    except (ServerError, OSError, subprocess.SubprocessError) as exc:
        say(f"demo: could not start: {exc}")
        demo.stop()
        return 1

    try:
        demo.where_to_look()
        say(f"running for {args.duration:g} s, then checking" if args.check else "Ctrl-C stops it")
        failed = run_until_stopped(
            demo, stopping, started_ms, args.duration if args.check else None
        )
        counts = demo.battery_counts(started_ms)
        states = demo.board_states()
    finally:
        demo.stop()
    if failed is not None:
        say(f"demo: {failed.name} exited with code {failed.exited()}\n{failed.report()}")
        return 1
    if not args.check:
        return 0
    total = sum(counts.values())
    missing = [s for s in BOARD_STATES if s not in states]
    if total > 0 and not missing:
        say(f"check passed: {total} battery points from {len(counts)} devices reached InfluxDB")
        say(f"check passed: the board shows {', '.join(sorted(states))}")
        return 0
    if total == 0:
        say(f"check FAILED: no battery points reached InfluxDB; see the logs in {run_dir}/")
    if missing:
        shown = ", ".join(sorted(states)) or "nothing (no answer)"
        say(f"check FAILED: the board shows {shown}; missing {', '.join(missing)}")
    return 1


def run_until_stopped(
    demo: Demo, stopping: threading.Event, started_ms: int, duration: float | None
) -> Child | None:
    """Print progress until a signal, the end of `duration` or a child's death (returned)."""
    deadline = time.monotonic() + duration if duration is not None else None
    board_deadline = time.monotonic() + (duration or 0.0) + BOARD_WAIT_S
    next_status = time.monotonic() + STATUS_EVERY_S
    while not stopping.wait(0.5):
        failed = demo.dead_child()
        if failed is not None:
            return failed
        demo.sign_out_one()
        now = time.monotonic()
        if now >= next_status:
            next_status = now + STATUS_EVERY_S
            counts = demo.battery_counts(started_ms)
            say(
                f"{time.strftime('%H:%M:%S')}  battery points this run: "
                f"{sum(counts.values())} from {len(counts)} devices"
            )
        # --check: past the duration, until the whole board shows (or BOARD_WAIT_S more).
        if (
            deadline is not None
            and now >= deadline
            and (now >= board_deadline or set(BOARD_STATES) <= demo.board_states())
        ):
            return None
    return None


if __name__ == "__main__":
    sys.exit(main())
