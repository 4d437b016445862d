"""A sub-station for the browser tests: a real `fleet collector` fed by `fleet simulate`.

The simulated fleet (sites alternate, so allingtown gets sw-01, sw-03, sw-05, hh-01 and
westhaven sw-02, sw-04, hh-02):
- sw-03 reports a fault            -> out_of_service
- sw-05 falls silent after a second -> offline (segways are expected every 10 s here)
- sw-04 starts at 63 %, parked and never charged: it drains past the 60 % an 8-hour
  shift needs within about 15 s of wall time at --speedup 600 -> low
The collector has one user, `sgt`, whose password hash is made with the collector's own
`auth.hash_password` (cheap scrypt parameters: the hash is checked at every login).
"""

from __future__ import annotations

import base64
import itertools
import json
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleet.daemon.collector.http.auth import hash_password
from tests.harness.fleet import settings_from, write_config
from tests.harness.influx import InfluxServer
from tests.harness.process import free_port, spawn, stop_process, tail
from tests.harness.servers import MosquittoServer
from tests.harness.waiting import wait_until

FLEET = str(Path(sys.executable).with_name("fleet"))
USER, PASSWORD = "sgt", "correct horse battery"
SPEEDUP = 600
SIM_ARGS = [
    "--segways", "5",
    "--handhelds", "2",
    "--rate", "1",
    "--seed", "7",
    "--speedup", str(SPEEDUP),
    "--fault", "sw-03",
    "--silence", f"sw-05={SPEEDUP}",  # one wall second of readings, then nothing
    "--low-battery", "sw-04=63",
]  # fmt: skip
DEVICES = 7
_numbers = itertools.count(1)


@dataclass
class Station:
    url: str
    workdir: Path
    collector: subprocess.Popen[bytes]
    simulator: subprocess.Popen[bytes]

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=10) as answer:
            return json.load(answer)

    def post(self, path: str, body: object) -> tuple[int, Any]:
        """A change made by a script: HTTP Basic as the test user (no session, no CSRF)."""
        token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        request = urllib.request.Request(
            self.url + path,
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Basic {token}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return answer.status, json.load(answer)
        except urllib.error.HTTPError as refused:
            return refused.code, json.load(refused)

    def devices(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.get("/api/v1/devices")
        return items

    def device(self, device: str) -> dict[str, Any] | None:
        return next((d for d in self.devices() if d["device"] == device), None)

    def logs(self) -> str:
        return "\n".join(
            f"--- {name}\n{tail(self.workdir / name, 30)}"
            for name in ("collector.log", "simulate.log")
        )


def _config(
    workdir: Path, broker: MosquittoServer, influx: InfluxServer, db: str, port: int
) -> Path:
    path = write_config(
        workdir,
        broker=broker,
        influx=influx,
        database=db,
        client_id=f"collector-browser-{next(_numbers)}",
        extra=f"""
[board]
assignments_path = "{workdir / "assignments.sqlite"}"
history_step_s = 10

[board.kinds.segway]
expected_silence_s = 10
""",
    )
    text = path.read_text()
    text = text.replace(
        'name = "Allingtown"\n', 'name = "Allingtown"\nothers = { westhaven = "West Haven" }\n'
    )
    users = json.dumps({USER: hash_password(PASSWORD, n=2**10)})
    users_toml = users.replace('": "', '" = "').replace("{", "{ ").replace("}", " }")
    text = text.replace(
        'bind = "127.0.0.1:0"\n',
        f'bind = "127.0.0.1:{port}"\nsession_key_path = "{workdir / "session.key"}"\n'
        f"users = {users_toml}\n",
    )
    path.write_text(text)
    return path


def start_station(workdir: Path, broker: MosquittoServer, influx: InfluxServer, db: str) -> Station:
    port = free_port()
    config = _config(workdir, broker, influx, db, port)
    settings = settings_from(config)
    since = broker.log_offset()
    collector = spawn([FLEET, "collector", "--config", str(config)], workdir / "collector.log")
    station = Station(f"http://127.0.0.1:{port}", workdir, collector, collector)
    try:
        broker.wait_subscribed(settings.mqtt.client_id, "owntracks/+/+", since=since, timeout=30)
        wait_until(lambda: _answers(station), timeout=30, message="the collector's HTTP server")
        station.simulator = spawn(
            [FLEET, "simulate", "--config", str(config), *SIM_ARGS], workdir / "simulate.log"
        )
        wait_until(
            lambda: len(station.devices()) >= DEVICES,
            timeout=60,
            message=f"{DEVICES} simulated devices on the board",
        )
    except BaseException as exc:  # a Ctrl-C too must not leave the two running
        exc.add_note(station.logs())
        stop_station(station)
        raise
    return station


def _answers(station: Station) -> bool:
    try:
        station.get("/healthz")
    except urllib.error.HTTPError:
        return True  # 503 while the spool or MQTT settles: it is up and routing
    except OSError:
        return False
    return True


def stop_station(station: Station) -> None:
    if station.simulator is not station.collector:
        stop_process(station.simulator)
    assert stop_process(station.collector) == 0, station.logs()
