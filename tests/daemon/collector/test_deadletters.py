"""Dead letters are kept, listed and replayed: the real collector on a real Mosquitto and InfluxDB."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from fleet.config import FleetSettings, load_settings
from fleet.daemon.cli import main as fleet
from fleet.daemon.collector import deadletters as store
from fleet.daemon.collector.app import Collector
from fleet.daemon.collector.deadletters import DeadLetter, DeadLetterStore, Query
from fleet.daemon.mqtt import Inbound, MqttLink
from tests.harness.fleet import Listener, publisher, set_keys, telemetry, write_config
from tests.harness.paths import REPO
from tests.harness.process import spawn, stop_process, tail
from tests.harness.servers import InfluxServer, MosquittoServer
from tests.harness.waiting import wait_until

TOPIC = "fleet/v1/allingtown/segway/sw-03/telemetry"
MIB = 1024 * 1024


def load(path: Path, **env: str) -> FleetSettings:
    return load_settings(path, environ={f"FLEET_{k.upper()}": v for k, v in env.items()})


@pytest.fixture
def config(tmp_path: Path, mqtt_broker: MosquittoServer, influx: InfluxServer, tmp_db: str) -> Path:
    return write_config(tmp_path, broker=mqtt_broker, influx=influx, database=tmp_db)


@contextmanager
def collector_running(
    settings: FleetSettings, broker: MosquittoServer, clock_ms: Callable[[], int] | None = None
) -> Iterator[Collector]:
    since = broker.log_offset()
    collector = Collector(settings) if clock_ms is None else Collector(settings, clock_ms=clock_ms)
    undo = collector.start()
    try:
        broker.wait_subscribed(settings.mqtt.client_id, "owntracks/+/+", since=since)
        yield collector
    finally:
        undo()


def kept(settings: FleetSettings, query: Query | None = None) -> list[store.Kept]:
    path = settings.collector.deadletter_file(settings.spool.path)
    if not path.exists():
        return []
    conn = store.open_read_only(path)
    try:
        return store.select(conn, query or Query())
    finally:
        conn.close()


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = fleet(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# --- kept before acknowledged ------------------------------------------------------------------


def test_a_rejected_message_is_kept_whole_before_its_batch_is_acknowledged(
    config: Path, mqtt_broker: MosquittoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load(config)
    bad = b'{"schema": 1, "device": "sw-03", "note": "' + b"x" * 3000 + b'"'  # not JSON
    seen_at_ack: list[list[store.Kept]] = []
    real_ack_all = MqttLink.ack_all

    def ack_all(link: MqttLink, messages: Sequence[Inbound]) -> None:
        if any(message.topic == TOPIC for message in messages):
            # What a crash right after this acknowledgement would leave on disk.
            seen_at_ack.append(kept(settings))
        real_ack_all(link, messages)

    monkeypatch.setattr(MqttLink, "ack_all", ack_all)
    with collector_running(settings, mqtt_broker) as collector, publisher(settings) as pub:
        pub.publish(TOPIC, bad, qos=1)
        wait_until(lambda: seen_at_ack, timeout=15, message="the bad message acknowledged")
        assert collector.deadletters.fields()["deadletters_kept"] == 1
        # Another process lists it while the collector runs (and writes the file).
        listing = subprocess.run(
            [
                sys.executable,
                "-m",
                "fleet.daemon.cli",
                "deadletters",
                "--config",
                str(config),
                "--json",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert len(seen_at_ack) == 1
    [entry] = seen_at_ack[0]
    assert (entry.topic, entry.reason, entry.site) == (TOPIC, "bad_json", "allingtown")
    assert entry.payload == bad  # whole: the announcement carries only its first 1 KiB
    assert (entry.payload_bytes, entry.truncated, entry.format) == (len(bad), False, "mqtt")
    assert "not valid JSON" in entry.detail
    assert listing.returncode == 0, listing.stderr
    [shown] = json.loads(listing.stdout)
    assert shown["id"] == entry.id
    assert shown["payload"] == bad.decode()
    assert shown["reason"] == "bad_json"


def test_a_dead_letter_survives_a_kill_of_the_collector_process(
    tmp_path: Path, config: Path, mqtt_broker: MosquittoServer
) -> None:
    settings = load(config)
    dead = Listener(settings, mqtt_broker, "fleet/v1/+/deadletter")
    since = mqtt_broker.log_offset()
    log = tmp_path / "collector.log"
    proc = spawn(
        [sys.executable, "-m", "fleet.daemon.cli", "collector", "--config", str(config)],
        log,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        wait_until(
            lambda: mqtt_broker.subscribed(settings.mqtt.client_id, "owntracks/+/+", since=since),
            timeout=30,
            message=f"collector subscribed; its log:\n{tail(log)}",
        )
        with publisher(settings) as pub:
            pub.publish(TOPIC, b"\x00\xffnot json", qos=1)
        # The announcement goes out after the store's commit: kill at once on seeing it.
        wait_until(lambda: dead.messages, timeout=15, message="dead letter announced")
        assert stop_process(proc, sig=signal.SIGKILL) == -signal.SIGKILL
    finally:
        stop_process(proc)
        dead.close()
    [entry] = kept(settings)
    assert (entry.topic, entry.reason, entry.payload) == (TOPIC, "bad_json", b"\x00\xffnot json")


# --- listing -----------------------------------------------------------------------------------


def _fill(settings: FleetSettings, letters: list[DeadLetter]) -> None:
    s = settings.collector
    kept_store = DeadLetterStore(
        s.deadletter_file(settings.spool.path),
        max_bytes=s.deadletter_max_bytes,
        max_payload_bytes=s.max_payload_bytes,
    )
    try:
        assert kept_store.keep(letters)
    finally:
        kept_store.close()


def test_the_listing_filters_by_reason_and_since_and_escapes_hostile_text(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = load(config)
    hour = 3_600_000
    now = int(time.time() * 1000)
    _fill(
        settings,
        [
            DeadLetter(TOPIC, b"{", "bad_json", "payload is not valid JSON", now - 3 * hour),
            DeadLetter(TOPIC, b"{}", "schema", "payload: required field", now - 2 * hour),
            DeadLetter("evil/\x1b[2Jtopic", b"[", "bad_json", "topic \x07 bell", now - 60_000),
        ],
    )
    code, out, err = cli(capsys, "deadletters", "--config", str(config))
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "RECEIVED", "REASON", "TOPIC", "BYTES", "REPLAYED", "DETAIL"]
    assert len(lines) == 5
    assert "\x1b" not in out
    assert "\x07" not in out
    assert "evil/\\x1b[2Jtopic" in out
    assert lines[-1].startswith("3 dead letters in ")

    code, out, _ = cli(capsys, "deadletters", "--config", str(config), "--reason", "bad_json")
    assert code == 0
    assert [line.split()[2] for line in out.splitlines()[1:-1]] == ["bad_json", "bad_json"]

    code, out, _ = cli(
        capsys, "deadletters", "--config", str(config), "--reason", "bad_json", "--since", "90m"
    )
    rows = json.loads(fleet_json(capsys, config, "--reason", "bad_json", "--since", "90m"))
    assert [r["topic"] for r in rows] == ["evil/\x1b[2Jtopic"]
    assert "1 dead letter in " in out

    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime((now - 2 * hour - 60_000) / 1000))
    rows = json.loads(fleet_json(capsys, config, "--since", iso))
    assert [r["reason"] for r in rows] == ["schema", "bad_json"]
    rows = json.loads(fleet_json(capsys, config, "--limit", "1"))
    assert len(rows) == 1
    assert rows[0]["topic"].startswith("evil/")


def fleet_json(capsys: pytest.CaptureFixture[str], config: Path, *argv: str) -> str:
    code, out, err = cli(capsys, "deadletters", "--config", str(config), "--json", *argv)
    assert (code, err) == (0, ""), err
    return out


def test_the_listing_says_so_when_nothing_was_kept_and_exits_78_on_a_bad_config(
    tmp_path: Path, config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = cli(capsys, "deadletters", "--config", str(config))
    assert code == 0
    assert "no dead letters kept" in out
    broken = tmp_path / "broken.toml"
    broken.write_text('[collector]\ndeadletter_max_bytes = "lots"\n')
    code, _, err = cli(capsys, "deadletters", "--config", str(broken))
    assert code == 78
    assert "deadletter_max_bytes" in err
    code, _, err = cli(capsys, "deadletters", "replay", "--config", str(broken))
    assert code == 78


# --- replay ------------------------------------------------------------------------------------


def test_a_reading_refused_by_a_collector_with_a_slow_clock_is_replayed_once_its_clock_is_right(
    config: Path,
    mqtt_broker: MosquittoServer,
    influx: InfluxServer,
    tmp_db: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = load(config)
    ts_ms = int(time.time() * 1000) - 1000
    really_future_ms = ts_ms + 3_600_000
    slow = 10 * 60_000  # the collector's clock is ten minutes behind
    with (
        collector_running(settings, mqtt_broker, lambda: int(time.time() * 1000) - slow),
        publisher(settings) as pub,
    ):
        pub.publish(TOPIC, telemetry("sw-03", 7, ts_ms), qos=1)
        pub.publish(TOPIC, telemetry("sw-03", 8, really_future_ms), qos=1)
        wait_until(lambda: len(kept(settings)) == 2, timeout=15, message="both kept")
    assert [k.reason for k in kept(settings)] == ["future_ts", "future_ts"]
    assert influx.rows("SELECT * FROM battery", tmp_db) == []

    code, out, _ = cli(capsys, "deadletters", "replay", "--config", str(config), "--dry-run")
    assert code == 0
    assert "would replay 2 to the broker and 0 to InfluxDB" in out
    assert all(k.replayed_ms is None for k in kept(settings))

    with collector_running(settings, mqtt_broker) as collector:
        code, out, err = cli(
            capsys, "deadletters", "--config", str(config), "replay", "--reason", "future_ts"
        )
        assert (code, err) == (0, "")
        assert "replayed 2 of 2" in out
        stored = wait_until(
            lambda: influx.rows("SELECT seq, pct FROM battery", tmp_db),
            timeout=15,
            message="the replayed reading stored",
        )
        # The reading that really is an hour ahead is refused again: a new dead letter.
        wait_until(lambda: len(kept(settings)) == 3, timeout=15, message="refused again, kept")
        assert collector.ingest.counters.accepted == 1
        code, out, _ = cli(capsys, "deadletters", "replay", "--config", str(config))
        assert "replayed 1 of 1" in out  # only the new one; the first two are done
        wait_until(lambda: len(kept(settings)) == 4, timeout=15, message="refused once more")
    assert stored == [{"time": ts_ms, "seq": 7, "pct": 80.0}]
    assert influx.rows("SELECT seq, pct FROM battery", tmp_db) == stored  # exactly once
    entries = kept(settings)
    assert [(k.reason, k.replayed_ms is not None) for k in entries] == [
        ("future_ts", True),
        ("future_ts", True),
        ("future_ts", True),
        ("future_ts", False),
    ]
    assert [json.loads(k.payload)["seq"] for k in entries] == [7, 8, 8, 8]


def test_replay_fails_clearly_when_the_broker_is_away_and_marks_nothing(
    tmp_path: Path,
    mqtt_broker: MosquittoServer,
    influx: InfluxServer,
    tmp_db: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = write_config(tmp_path, broker=mqtt_broker, influx=influx, database=tmp_db)
    set_keys(config, {"mqtt.port": 1})
    settings = load(config)
    _fill(settings, [DeadLetter(TOPIC, b"{}", "schema", "d", int(time.time() * 1000))])
    monkeypatch.setenv("FLEET_MQTT__USERNAME", "collector")
    monkeypatch.setenv("FLEET_MQTT__PASSWORD", "hunter2-secret")
    secret = tmp_path / "replay-password"  # replay logs in as collector-replay, not collector
    secret.write_text("hunter2-replay-secret\n")
    code, out, err = cli(
        capsys,
        "deadletters",
        "replay",
        "--config",
        str(config),
        "--mqtt-password-file",
        str(secret),
    )
    assert code == 1
    assert "could not connect to the MQTT broker at 127.0.0.1:1" in err
    assert "hunter2" not in out + err
    assert [k.replayed_ms for k in kept(settings)] == [None]


# --- the bound ---------------------------------------------------------------------------------


def test_past_the_bound_the_oldest_are_dropped_and_counted(
    config: Path, mqtt_broker: MosquittoServer, influx: InfluxServer, tmp_db: str
) -> None:
    settings = load(config, collector__deadletter_max_bytes=str(MIB))
    n = 40
    payload_size = 60_000
    with collector_running(settings, mqtt_broker) as collector, publisher(settings) as pub:
        for i in range(n):
            pub.publish(TOPIC, f"{i:04d}".encode() + b"x" * (payload_size - 4), qos=1)
        wait_until(
            lambda: collector.deadletters.counters.kept == n, timeout=30, message="all handled"
        )
        dropped = collector.deadletters.counters.dropped
        stats = wait_until(
            lambda: influx.rows(
                "SELECT deadletters_dropped, deadletters_kept FROM pipeline "
                f"WHERE device = '' AND deadletters_kept = {n} LIMIT 1",
                tmp_db,
            ),
            timeout=20,
            message="pipeline point with the dead-letter counters",
        )
    entries = kept(settings)
    assert dropped > 0
    assert len(entries) + dropped == n
    # The newest are the ones kept, in order, whole.
    assert [int(k.payload[:4]) for k in entries] == list(range(dropped, n))
    assert all(len(k.payload) == payload_size for k in entries)
    assert sum(len(k.payload) for k in entries) <= MIB
    assert stats[0]["deadletters_dropped"] == dropped
    path = settings.collector.deadletter_file(settings.spool.path)
    conn = store.open_read_only(path)
    try:
        assert store.dropped_total(conn) == dropped
    finally:
        conn.close()


def test_a_too_large_payload_is_kept_truncated_and_never_replayed(
    config: Path, mqtt_broker: MosquittoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = load(config)
    big = b"{" + b" " * 200_000 + b"}"
    with collector_running(settings, mqtt_broker), publisher(settings) as pub:
        pub.publish(TOPIC, big, qos=1)
        [entry] = wait_until(lambda: kept(settings), timeout=15, message="kept")
        code, out, _ = cli(capsys, "deadletters", "replay", "--config", str(config))
    assert (entry.reason, entry.truncated, entry.payload_bytes) == ("too_large", True, len(big))
    assert entry.payload == big[: store.TOO_LARGE_KEPT]
    assert code == 0
    assert f"skipping 1 kept truncated (too large to replay): ids {entry.id}" in out
    assert "replayed 0 of 0" in out
    code, out, _ = cli(capsys, "deadletters", "--config", str(config))
    assert f"{len(big)}+" in out  # marked truncated in the listing


# --- InfluxDB's refusals -----------------------------------------------------------------------


def test_a_line_influxdb_refuses_is_kept_and_replays_once_the_conflict_is_gone(
    config: Path,
    mqtt_broker: MosquittoServer,
    influx: InfluxServer,
    tmp_db: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = load(config)
    ts_ms = int(time.time() * 1000) - 60_000
    # A string `pct` already in the shard: the collector's float `pct` is a type conflict (400).
    influx.post_query(f'CREATE RETENTION POLICY "raw" ON "{tmp_db}" DURATION 30d REPLICATION 1')
    influx.write(tmp_db, f'battery,site=x,kind=segway,device=other pct="high" {ts_ms}', rp="raw")
    with collector_running(settings, mqtt_broker), publisher(settings) as pub:
        pub.publish(TOPIC, telemetry("sw-03", 3, ts_ms), qos=1)
        [entry] = wait_until(lambda: kept(settings), timeout=20, message="refused line kept")
    assert (entry.reason, entry.format, entry.topic) == ("influx_rejected", "line", TOPIC)
    assert "conflict" in entry.detail
    assert entry.payload.decode().startswith("battery,device=sw-03,kind=segway,site=allingtown ")

    code, _, err = cli(capsys, "deadletters", "replay", "--config", str(config))
    assert code == 1
    assert "InfluxDB refused the lines again (status 400)" in err
    assert kept(settings)[0].replayed_ms is None

    influx.post_query('DROP MEASUREMENT "battery"', tmp_db)  # the fix
    code, out, err = cli(capsys, "deadletters", "replay", "--config", str(config))
    assert (code, err) == (0, "")
    assert "replayed 1 of 1" in out
    rows = influx.rows('SELECT seq, pct FROM "raw"."battery"', tmp_db)
    assert rows == [{"time": ts_ms, "seq": 3, "pct": 80.0}]
    assert kept(settings)[0].replayed_ms is not None


# --- the store itself --------------------------------------------------------------------------


def test_a_corrupt_store_is_moved_aside_and_a_fresh_one_started(tmp_path: Path) -> None:
    path = tmp_path / "dl.sqlite"
    path.write_bytes(b"this is not an SQLite file" * 100)
    kept_store = DeadLetterStore(path, max_bytes=MIB, max_payload_bytes=65536)
    try:
        assert kept_store.keep([DeadLetter(TOPIC, b"{", "bad_json", "d", 1)])
    finally:
        kept_store.close()
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("dl.sqlite.corrupt-")]
    assert len(aside) == 1
    assert aside[0].read_bytes().startswith(b"this is not")
    conn = store.open_read_only(path)
    try:
        assert [k.reason for k in store.select(conn, Query())] == ["bad_json"]
    finally:
        conn.close()


def test_writers_on_two_threads_share_the_store(tmp_path: Path) -> None:
    kept_store = DeadLetterStore(tmp_path / "dl.sqlite", max_bytes=MIB, max_payload_bytes=1024)

    def work(name: str) -> None:
        for i in range(50):
            kept_store.keep([DeadLetter(f"t/{name}", str(i).encode(), "schema", "d", i)])

    threads = [threading.Thread(target=work, args=(n,)) for n in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    kept_store.close()
    conn = store.open_read_only(tmp_path / "dl.sqlite")
    try:
        assert store.count(conn, Query()) == 100
    finally:
        conn.close()
