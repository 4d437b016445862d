"""The test harness itself: private servers really start, carry data and survive restarts;
the broker settings the collector relies on really hold; the scripts and the systemd
files are well-formed."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import paho.mqtt.client as mqtt
import psutil
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.harness.process import port_open
from tests.harness.servers import (
    InfluxError,
    InfluxServer,
    MosquittoServer,
    ServerError,
    find_binary,
    free_port,
)
from tests.harness.waiting import wait_until

pytestmark = pytest.mark.integration  # starts real servers and processes

ROOT = Path(__file__).resolve().parent.parent


# --- wait_until -----------------------------------------------------------------------


def test_wait_until_returns_the_first_truthy_value():
    values: Iterator[object] = iter([0, None, "", [], "ready", "later"])
    assert wait_until(lambda: next(values), timeout=20, interval=0) == "ready"


def test_wait_until_names_the_condition_and_the_last_value_on_timeout():
    seen = iter(range(1_000_000))
    with pytest.raises(
        AssertionError, match=r"^queue drained \(waited 0\.1 s; last value: \[\]\)$"
    ):
        wait_until(lambda: [] if next(seen) >= 0 else [1], timeout=0.1, message="queue drained")
    assert next(seen) > 1, "the predicate was polled more than once"


def test_wait_until_lets_a_predicate_error_through_at_once():
    def broken() -> bool:
        raise KeyError("boom")

    with pytest.raises(KeyError):
        wait_until(broken, timeout=60)


def test_free_port_can_be_bound_and_is_not_handed_out_twice():
    ports = {free_port() for _ in range(20)}
    assert len(ports) == 20
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", ports.pop()))


def test_a_missing_binary_points_at_scripts_setup():
    with pytest.raises(ServerError, match="scripts/setup"):
        find_binary("no-such-server-binary")


# --- Mosquitto ------------------------------------------------------------------------


class Subscriber:
    """A paho client that records what it receives (tests may import paho)."""

    def __init__(
        self,
        broker: MosquittoServer,
        client_id: str,
        *,
        clean: bool = True,
        manual_ack: bool = False,
    ) -> None:
        self.broker = broker
        self.client_id = client_id
        self.messages: list[mqtt.MQTTMessage] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv311,
            clean_session=clean,
            manual_ack=manual_ack,
        )
        self.client.on_message = self._on_message

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(msg)

    def count(self) -> int:
        with self._lock:
            return len(self.messages)

    def payloads(self) -> list[bytes]:
        with self._lock:
            return [bytes(m.payload) for m in self.messages]

    def connect(self) -> None:
        self.client.connect(self.broker.host, self.broker.port)
        self.client.loop_start()
        wait_until(self.client.is_connected, timeout=20, message="subscriber connected")

    def subscribe(self, topic: str) -> None:
        since = self.broker.log_offset()
        self.client.subscribe(topic, qos=1)
        self.broker.wait_subscribed(self.client_id, topic, since=since)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@contextmanager
def subscriber(broker: MosquittoServer, client_id: str, **kwargs: bool) -> Iterator[Subscriber]:
    sub = Subscriber(broker, client_id, **kwargs)
    sub.connect()
    try:
        yield sub
    finally:
        sub.close()


def publish_all(
    broker: MosquittoServer, topic: str, payloads: list[bytes], *, retain: bool = False
) -> None:
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="harness-pub")
    pub.max_inflight_messages_set(100)
    pub.connect(broker.host, broker.port)
    pub.loop_start()
    try:
        infos = [pub.publish(topic, p, qos=1, retain=retain) for p in payloads]
        for info in infos:
            info.wait_for_publish(timeout=10)
            assert info.is_published()
    finally:
        pub.disconnect()
        pub.loop_stop()


def test_broker_carries_a_qos1_message_from_publisher_to_subscriber(mqtt_broker):
    assert mqtt_broker.running
    with subscriber(mqtt_broker, "harness-roundtrip") as sub:
        sub.subscribe("harness/roundtrip")
        publish_all(mqtt_broker, "harness/roundtrip", [b"hello"])
        wait_until(sub.count, timeout=20, message="message received")
        assert sub.payloads() == [b"hello"]
        assert sub.messages[0].topic == "harness/roundtrip"


def test_offline_persistent_session_queues_more_than_the_default_1000(make_broker):
    broker = make_broker()
    with subscriber(broker, "harness-offline", clean=False) as sub:
        sub.subscribe("harness/queue")
    payloads = [str(i).encode() for i in range(1500)]
    publish_all(broker, "harness/queue", payloads)
    with subscriber(broker, "harness-offline", clean=False) as sub:
        wait_until(lambda: sub.count() >= 1500, timeout=10, message="1500 queued messages")
        assert sub.payloads() == payloads


def test_a_manual_ack_subscriber_gets_more_than_20_messages_in_flight(make_broker):
    broker = make_broker()
    with subscriber(broker, "harness-manual-ack", manual_ack=True) as sub:
        sub.subscribe("harness/inflight")
        publish_all(broker, "harness/inflight", [str(i).encode() for i in range(200)])
        # Nothing is acknowledged, so mosquitto's default would stop at 20.
        wait_until(lambda: sub.count() == 200, timeout=20, message="200 unacked in flight")


def test_clean_restart_keeps_port_retained_and_queued_messages(make_broker):
    broker = make_broker()
    port = broker.port
    with subscriber(broker, "harness-restart", clean=False) as sub:
        sub.subscribe("harness/restart/#")
    publish_all(broker, "harness/restart/retained", [b"kept"], retain=True)
    publish_all(broker, "harness/restart/queued", [b"q1", b"q2"])

    assert broker.stop() == 0
    assert not broker.running
    assert not port_open(broker.host, port)
    broker.start()
    assert broker.port == port
    assert broker.running

    with subscriber(broker, "harness-restart", clean=False) as sub:
        wait_until(lambda: sub.count() >= 3, timeout=20, message="queued + retained after restart")
        assert sorted(sub.payloads()) == [b"kept", b"q1", b"q2"]


def test_kill_stops_the_broker_at_once_and_restart_reuses_the_port(make_broker):
    broker = make_broker()
    pid, port = broker.pid, broker.port
    assert broker.kill() == -9
    assert not broker.running
    assert not port_open(broker.host, port)
    broker.restart()
    assert broker.pid != pid
    assert port_open(broker.host, port)


def test_a_broker_that_cannot_start_fails_with_its_log(tmp_path):
    broken = MosquittoServer(tmp_path / "broken", extra_config="no_such_option 1")
    with pytest.raises(ServerError, match=r"(?s)exited with code .*no_such_option"):
        broken.start()
    assert not broken.running


def test_a_port_already_in_use_is_reported(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        taken = sock.getsockname()[1]
        with pytest.raises(ServerError, match="already in use"):
            MosquittoServer(tmp_path / "m", taken).start()


def _alive(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


@pytest.mark.parametrize("ending", ["normal exit", "SIGKILL"])
def test_a_broker_does_not_outlive_the_process_that_started_it(tmp_path, ending):
    # atexit covers a normal exit; the parent-death signal covers a killed run.
    suicide = "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
    code = (
        f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
        "from pathlib import Path\n"
        "from tests.harness.servers import MosquittoServer\n"
        f"server = MosquittoServer(Path({str(tmp_path)!r})).start()\n"
        "print(server.pid, flush=True)\n"
        f"{suicide if ending == 'SIGKILL' else ''}\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == (-9 if ending == "SIGKILL" else 0), result.stderr
    pid = int(result.stdout.split()[0])
    try:
        wait_until(lambda: not _alive(pid), timeout=20, message=f"broker pid {pid} gone")
    finally:
        if _alive(pid):  # do not leave it behind when the test fails
            os.kill(pid, signal.SIGKILL)


# --- InfluxDB -------------------------------------------------------------------------


def test_a_line_written_to_influx_reads_back(influx, tmp_db):
    assert tmp_db in influx.databases()
    influx.write(
        tmp_db,
        "battery,device=sw-01,site=allingtown pct=87.5,seq=4i 1795989866000\n"
        'status,device=sw-01,site=allingtown state="riding" 1795989866000',
    )
    assert influx.rows("SELECT * FROM battery", tmp_db) == [
        {"time": 1795989866000, "device": "sw-01", "site": "allingtown", "pct": 87.5, "seq": 4}
    ]
    assert influx.rows("SELECT last(state) FROM status GROUP BY device", tmp_db) == [
        {"device": "sw-01", "time": 1795989866000, "last": "riding"}
    ]


def test_influx_errors_raise_with_status_and_reason(influx, tmp_db):
    with pytest.raises(InfluxError, match="HTTP 400") as bad_line:
        influx.write(tmp_db, "battery pct=oops 1")
    assert bad_line.value.status == 400
    with pytest.raises(InfluxError, match="database not found"):
        influx.query("SELECT * FROM battery", "no_such_db")
    with pytest.raises(InfluxError, match="HTTP 400"):
        influx.query("SELECT FROM", tmp_db)


def test_influx_restart_keeps_port_and_data(make_influx):
    server: InfluxServer = make_influx()
    port = server.port
    server.create_database("keep")
    server.write("keep", "m v=1 1795989866000")
    assert server.stop() == 0
    assert not port_open(server.host, port)
    server.start()
    assert server.port == port
    assert server.rows("SELECT v FROM m", "keep") == [{"time": 1795989866000, "v": 1}]


def test_tmp_db_names_are_unique_per_test(influx, tmp_db, request):
    assert tmp_db.startswith("t_test_tmp_db_names")
    assert influx.databases().count(tmp_db) == 1


def test_wait_subscribed_sees_only_subscriptions_after_the_mark(mqtt_broker):
    with subscriber(mqtt_broker, "harness-mark") as sub:
        sub.subscribe("harness/mark")
        mark = mqtt_broker.log_offset()
        assert mqtt_broker.subscribed("harness-mark", "harness/mark")
        assert not mqtt_broker.subscribed("harness-mark", "harness/mark", since=mark)
        assert not mqtt_broker.subscribed("harness-mark", "harness/other")


# --- scripts and systemd --------------------------------------------------------------

SCRIPTS = ["scripts/setup", "scripts/test", "scripts/demo", ".ci/run"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_is_executable_bash_that_parses(script):
    path = ROOT / script
    assert path.stat().st_mode & 0o111, f"{script} is not executable"
    assert path.read_text().startswith("#!/usr/bin/env bash\n")
    subprocess.run(["bash", "-n", str(path)], check=True)


def _unit_entries(path: Path) -> dict[str, list[str]]:
    """`Section.Key` -> values, keeping repeated keys (configparser would drop them)."""
    entries: dict[str, list[str]] = {}
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        entries.setdefault(f"{section}.{key}", []).append(value)
    return entries


UNITS = {
    "fleet-collector.service": (
        "collector",
        [
            "influx.token:/etc/fleet/credentials/influx.token",
            "mqtt.password:/etc/fleet/credentials/mqtt.password",
        ],
    ),
    "fleet-agent.service": ("agent", ["mqtt.password:/etc/fleet/credentials/agent-mqtt.password"]),
}


@pytest.mark.parametrize("name", sorted(UNITS))
def test_unit_execstart_names_the_real_console_script_and_command(name):
    command, credentials = UNITS[name]
    entries = _unit_entries(ROOT / "systemd" / name)
    (exec_start,) = entries["Service.ExecStart"]
    binary, *argv = exec_start.split()
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert Path(binary).name in scripts
    assert binary == "/opt/fleet/venv/bin/fleet"  # where scripts/install puts the virtualenv
    from fleet.daemon.cli import build_parser

    args = build_parser().parse_args(argv)
    assert args.command == command
    # The agent has its own file: on one box with the collector it is another broker user.
    assert str(args.config) == f"/etc/fleet/{'agent' if command == 'agent' else 'fleet'}.toml"
    assert entries["Service.RestartPreventExitStatus"] == ["78"]
    assert entries["Service.StateDirectory"] == ["fleet"]
    assert sorted(entries["Service.LoadCredential"]) == credentials


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
@pytest.mark.parametrize("name", sorted(UNITS))
def test_unit_passes_systemd_analyze_verify(tmp_path, name):
    # verify insists the ExecStart binary exists: point it at this checkout's.
    fleet = Path(sys.executable).parent / "fleet"
    assert fleet.exists(), "console script missing: pip install -e .[dev]"
    unit = tmp_path / name
    text = (ROOT / "systemd" / name).read_text()
    unit.write_text(text.replace("/opt/fleet/venv/bin/fleet", str(fleet)))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False
    )
    # Unknown keys and bad values are only warnings (exit 0): any output is a failure.
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


@pytest.mark.parametrize("name", sorted(UNITS))
def test_unit_is_type_notify_with_a_watchdog(name):
    entries = _unit_entries(ROOT / "systemd" / name)
    assert entries["Service.Type"] == ["notify"]
    assert entries["Service.NotifyAccess"] == ["main"]  # the threads notify as the main pid
    assert entries["Service.WatchdogSec"] == ["60s"]
    assert entries["Service.WatchdogSignal"] == ["SIGTERM"]  # a clean stop, no core dump
    assert "time-sync.target" in " ".join(entries["Unit.After"]).split()
    assert "time-sync.target" not in " ".join(entries.get("Unit.Wants", []))  # passive target
    assert _seconds(entries["Service.TimeoutStartSec"][0]) >= 60


def _seconds(value: str) -> float:
    assert value.endswith("s"), f"write seconds as 90s: {value}"
    assert value[:-1].isdigit(), f"write seconds as 90s: {value}"
    return float(value[:-1])


def test_collector_stop_timeout_covers_its_undo():
    """TimeoutStopSec >= every wait of Collector.start()'s undo, read from the code itself."""
    app = (ROOT / "daemon/collector/app.py").read_text()
    undo = app[app.index("        def undo() -> None:") :]
    waits = [float(w) for w in re.findall(r"stop_\w+\(([\d.]+)\)", undo)]
    assert len(waits) >= 4, waits  # ingest, alerts, stats, writer, and any added since
    # Waits with their own timeouts: the notifier (5 s), the HTTP server (5 s), the board (5 s).
    worst = sum(waits) + 5 + 5 + 5
    entries = _unit_entries(ROOT / "systemd/fleet-collector.service")
    stop = _seconds(entries["Service.TimeoutStopSec"][0])
    print(f"fleet-collector: undo waits at most {worst:.0f} s; TimeoutStopSec={stop:.0f}s")
    assert stop >= worst + 15, "leave a margin for paho and the interpreter"


def test_agent_stop_timeout_covers_its_drain():
    from fleet.config.agent import AgentSettings
    from fleet.daemon.agent.app import _LINK_FLUSH_S

    drain = AgentSettings.model_fields["drain_timeout_s"].default
    # The last commit and the drain each up to drain_timeout_s, paho's flush, the notifier.
    worst = 2 * drain + _LINK_FLUSH_S + 5
    entries = _unit_entries(ROOT / "systemd/fleet-agent.service")
    stop = _seconds(entries["Service.TimeoutStopSec"][0])
    print(f"fleet-agent: stop waits at most {worst:.0f} s; TimeoutStopSec={stop:.0f}s")
    assert stop >= worst + 15, "leave a margin for the drivers, BlueZ and the interpreter"


EXPOSURE_MAX = 2.0


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
@pytest.mark.parametrize("name", sorted(UNITS))
def test_unit_exposure_is_at_most_2(tmp_path, name, record_property):
    # --offline=yes rates the file as written; no running systemd is needed.
    fleet = Path(sys.executable).parent / "fleet"
    unit = tmp_path / name
    unit.write_text(
        (ROOT / "systemd" / name).read_text().replace("/opt/fleet/venv/bin/fleet", str(fleet))
    )
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        check=False,
    )
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\w+)", result.stdout)
    assert found, f"no overall exposure in:\n{result.stdout}\n{result.stderr}"
    exposure, verdict = float(found[1]), found[2]
    open_items = [line for line in result.stdout.splitlines() if line.startswith("✗")]
    print(f"\n{name}: exposure {exposure} {verdict}; still open:\n" + "\n".join(open_items))
    record_property("exposure", exposure)
    assert exposure <= EXPOSURE_MAX


# Linux >= 6.3: the kernel's own form of MemoryDenyWriteExecute= (systemd >= 253 uses it;
# 252 uses an equivalent seccomp filter). It holds across execve.
_MDWE = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
    sys.exit(f"PR_SET_MDWE: errno {ctypes.get_errno()}")
os.execv(sys.argv[1], sys.argv[1:])
"""


_WX_PROBE = """
import mmap
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
except PermissionError:
    print("refused")
"""


def _mdwe_supported() -> bool:
    """The wrapper works here, and after its execve a W+X mapping really is refused."""
    probe = subprocess.run(
        [sys.executable, "-c", _MDWE, sys.executable, "-c", _WX_PROBE],
        capture_output=True,
        text=True,
        check=False,
    )
    return probe.returncode == 0 and probe.stdout == "refused\n"


@pytest.mark.skipif(not _mdwe_supported(), reason="kernel without PR_SET_MDWE (Linux < 6.3)")
@pytest.mark.parametrize("command", ["collector", "agent"])
def test_the_services_run_without_writable_executable_memory(
    tmp_path, command, mqtt_broker, influx, tmp_db
):
    """Both units set MemoryDenyWriteExecute=yes: Python, paho, sqlite, TLS, cryptography and
    the drivers' libraries must not need W+X pages. The real process, up to READY and pings."""
    from tests.harness.agent import write_agent_config
    from tests.harness.fleet import write_config
    from tests.harness.process import spawn, stop_process, tail
    from tests.harness.sdnotify import NotifySocket

    if command == "collector":
        config = write_config(tmp_path, broker=mqtt_broker, influx=influx, database=tmp_db)
    else:
        config = write_agent_config(tmp_path, mqtt_broker)
    sock = NotifySocket(tmp_path)
    log = tmp_path / f"{command}.log"
    fleet = str(Path(sys.executable).parent / "fleet")
    env = {**os.environ, **sock.env(watchdog_s=0.4)}
    argv = [sys.executable, "-c", _MDWE, fleet, command, "--config", str(config)]
    proc = spawn(argv, log, env=env)
    try:
        sock.wait_for(lambda d: "READY" in d, message=f"READY\n{tail(log)}")
        sock.wait_for(lambda d: d.get("WATCHDOG") == "1", message=f"a ping\n{tail(log)}")
    finally:
        code = stop_process(proc, timeout=60)
        sock.close()
    assert code == 0, tail(log)
    assert "Permission denied" not in log.read_text()


@pytest.mark.skipif(not shutil.which("systemd-sysusers"), reason="systemd-sysusers missing")
def test_sysusers_file_creates_the_fleet_user(tmp_path):
    (tmp_path / "etc").mkdir()
    subprocess.run(
        ["systemd-sysusers", f"--root={tmp_path}", str(ROOT / "systemd/fleet.sysusers.conf")],
        check=True,
        capture_output=True,
    )
    passwd = (tmp_path / "etc/passwd").read_text().splitlines()
    (fleet,) = [line for line in passwd if line.startswith("fleet:")]
    assert fleet.split(":")[5] == "/var/lib/fleet"
