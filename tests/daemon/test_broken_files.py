"""A broken spool, alert-state or outbox file: detected at start, moved aside, what reads back kept.

Files are broken the way disks break them: a page in the middle overwritten, the
header overwritten, the whole file garbage, the file truncated to nothing. The
oracle for "nothing readable lost" is independent of the salvage: before the
process starts, every original row is looked up by its rowid in the broken file;
each lookup that answers is a row the new file must hold, byte for byte.
"""

from __future__ import annotations

import json
import logging
import random
import sqlite3
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from fleet.config import FleetSettings
from fleet.daemon import wire
from fleet.daemon.agent.app import Agent
from fleet.daemon.agent.outbox import Outbox
from fleet.daemon.alerts.store import AlertStore
from fleet.daemon.collector import schema
from fleet.daemon.collector.app import make_decoder
from fleet.daemon.spool import Entry, Spool
from fleet.daemon.sqlite_files import check, open_checked
from tests.harness.agent import Subscriber, running_agent, settings_of, write_agent_config
from tests.harness.alerting import webhook
from tests.harness.fleet import running_collector, set_keys, settings_from, telemetry, write_config
from tests.harness.http_receiver import HttpReceiver
from tests.harness.process import free_port, spawn, stop_process, tail
from tests.harness.servers import InfluxServer, MosquittoServer
from tests.harness.waiting import wait_until

PAGE = 4096
DEVICE = "sw-31"
TOPIC = f"fleet/v1/allingtown/segway/{DEVICE}/telemetry"


# --- breaking files ------------------------------------------------------------------------------


def checkpoint(path: Path) -> None:
    """Fold the -wal into the main file, so that overwriting a page of it breaks real data."""
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def overwrite(path: Path, offset: int, length: int, seed: int = 7) -> bytes:
    junk = random.Random(seed).randbytes(length)
    with path.open("r+b") as f:
        f.seek(offset)
        f.write(junk)
    return path.read_bytes()


def break_middle_page(path: Path, table: str = "spool") -> bytes:
    """Overwrite the middle one of the table's leaf pages (not one of its index's)."""
    with sqlite3.connect(path) as conn:
        leaves = [
            int(row[0])
            for row in conn.execute(
                "SELECT pageno FROM dbstat WHERE name = ? AND pagetype = 'leaf' ORDER BY pageno",
                (table,),
            )
        ]
    conn.close()
    assert len(leaves) >= 8, "too small a table to break in the middle"
    return overwrite(path, (leaves[len(leaves) // 2] - 1) * PAGE, PAGE)


def readable_rows(path: Path, table: str, rowids: list[int]) -> dict[int, tuple[Any, ...]]:
    """The oracle: each original row that a lookup by rowid still returns from the broken file."""
    found: dict[int, tuple[Any, ...]] = {}
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        for rowid in rowids:
            try:
                row = conn.execute(f"SELECT * FROM {table} WHERE rowid = ?", (rowid,)).fetchone()
            except sqlite3.DatabaseError:
                continue
            if row is not None:
                found[rowid] = tuple(row)
    finally:
        conn.close()
    return found


def all_rows(path: Path, table: str) -> dict[int, tuple[Any, ...]]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute(f"SELECT rowid, * FROM {table}").fetchall()
    conn.close()
    return {int(r[0]): tuple(r[1:]) for r in rows}


def fill_spool(path: Path, n: int) -> dict[int, tuple[Any, ...]]:
    spool = Spool(path, max_bytes=1 << 30, fsync=False)
    for start in range(0, n, 100):
        spool.append(
            [Entry(f"t/{i}", f"m,device=d{i} v={i}i {i}" * 3, 1) for i in range(start, start + 100)]
        )
    spool.close()
    checkpoint(path)
    return all_rows(path, "spool")


def aside(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f"{path.name}.corrupt-*"))


# --- the shared module, on real SQLite files ------------------------------------------------------


def test_a_page_overwritten_in_the_middle_keeps_every_row_that_reads_back(tmp_path, caplog):
    path = tmp_path / "spool.sqlite"
    original = fill_spool(path, 3000)
    broken = break_middle_page(path)
    readable = readable_rows(path, "spool", list(original))
    assert 0 < len(original) - len(readable) < 100, "the damage should cost one page of rows"

    with caplog.at_level(logging.CRITICAL, logger="fleet.daemon.sqlite_files"):
        spool = Spool(path, max_bytes=1 << 30, fsync=False)
    recovery = spool.recovery
    assert recovery is not None
    assert recovery.rows == len(readable)
    assert spool.depth().rows == len(readable)
    spool.close()
    kept = all_rows(path, "spool")
    assert kept == readable  # every readable row, unchanged, and nothing else
    # Kept for a person, as broken as it was; the log says what, why and where.
    (moved,) = [p for p in aside(path) if not p.name.endswith(("-wal", "-shm"))]
    assert moved == recovery.moved_to
    assert moved.read_bytes() == broken
    (record,) = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    text = record.getMessage()
    assert str(path) in text
    assert str(moved) in text
    assert "database disk image is malformed" in text
    assert f"{len(readable)} readable rows" in text


def test_the_new_file_goes_on_numbering_after_the_salvaged_rows(tmp_path):
    path = tmp_path / "spool.sqlite"
    original = fill_spool(path, 2000)
    break_middle_page(path)
    spool = Spool(path, max_bytes=1 << 30, fsync=False)
    spool.append([Entry("t/new", "m v=1i 1", 1)])
    head = spool.head(10_000)
    spool.close()
    assert head[-1].topic == "t/new"
    assert head[-1].id > max(original)  # ids never handed out twice: order is kept


def test_an_overwritten_header_is_read_through_a_rebuilt_one(tmp_path, caplog):
    path = tmp_path / "spool.sqlite"
    original = fill_spool(path, 2000)
    broken = overwrite(path, 0, 100)
    assert check(path) == "file is not a database"
    with caplog.at_level(logging.CRITICAL, logger="fleet.daemon.sqlite_files"):
        recovery = open_checked(path)
    assert recovery is not None
    assert all_rows(path, "spool") == original  # only the header was gone: every row is back
    assert recovery.moved_to.read_bytes() == broken
    assert "rebuilt header" in caplog.text


def test_a_file_that_is_not_a_database_is_replaced(tmp_path):
    path = tmp_path / "alerts.sqlite"
    junk = random.Random(3).randbytes(64 * 1024)
    path.write_bytes(junk)
    store = AlertStore(path)
    assert store.recovery is not None
    assert store.recovery.rows == 0
    assert store.load_records() == []
    store.close()
    assert store.recovery.moved_to.read_bytes() == junk
    assert check(path) is None


def test_an_empty_file_is_replaced_and_said_so(tmp_path, caplog):
    path = tmp_path / "outbox.sqlite"
    path.touch()
    with caplog.at_level(logging.CRITICAL, logger="fleet.daemon.sqlite_files"):
        outbox = Outbox(path, max_bytes=1 << 20, fsync=False)
    assert outbox.recovery is not None
    assert "empty (0 bytes)" in outbox.recovery.problem
    assert outbox.depth().rows == 0
    outbox.close()
    assert outbox.recovery.moved_to.stat().st_size == 0
    assert "empty (0 bytes)" in caplog.text


def test_a_sound_file_is_left_alone(tmp_path):
    path = tmp_path / "spool.sqlite"
    original = fill_spool(path, 500)
    spool = Spool(path, max_bytes=1 << 30, fsync=False)
    assert spool.recovery is None
    assert spool.depth().rows == 500
    spool.close()
    assert aside(path) == []
    assert all_rows(path, "spool") == original


def test_uncheckpointed_rows_in_the_wal_are_salvaged_too(tmp_path):
    path = tmp_path / "spool.sqlite"
    original = fill_spool(path, 3000)  # checkpointed into the main file
    # More rows that live only in the -wal (a crash before the checkpoint).
    spool = Spool(path, max_bytes=1 << 30, fsync=False)
    spool.append([Entry("t/late", f"late v={i}i {i}", 1) for i in range(300)])
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_autocheckpoint=0")
    wal_only = {
        int(r[0]): tuple(r[1:])
        for r in conn.execute("SELECT rowid, * FROM spool WHERE topic = 't/late'")
    }
    # Copy the pair as a crash would leave it (closing would checkpoint).
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    copy = crashed / "spool.sqlite"
    copy.write_bytes(path.read_bytes())
    Path(f"{copy}-wal").write_bytes(Path(f"{path}-wal").read_bytes())
    conn.close()
    spool.close()
    assert Path(f"{copy}-wal").stat().st_size > 0
    break_middle_page(copy)
    readable = readable_rows(copy, "spool", [*original, *wal_only])
    assert set(wal_only) <= set(readable)
    recovery = open_checked(copy)
    assert recovery is not None
    assert all_rows(copy, "spool") == readable
    assert Path(f"{recovery.moved_to}-wal").exists()  # the -wal went with its file


def test_the_outbox_keeps_its_readable_rows_and_device_counters(tmp_path):
    path = tmp_path / "outbox.sqlite"
    outbox = Outbox(path, max_bytes=1 << 30, fsync=False)
    for start in range(0, 2000, 100):
        entries = [
            Entry(TOPIC, telemetry(DEVICE, i, 1_700_000_000_000 + i).decode(), 1)
            for i in range(start + 1, start + 101)
        ]
        outbox.add(entries, {DEVICE: start + 100, "sw-99": 5})
    outbox.close()
    checkpoint(path)
    original = all_rows(path, "spool")
    break_middle_page(path)
    readable = readable_rows(path, "spool", list(original))
    outbox = Outbox(path, max_bytes=1 << 30, fsync=False)
    assert outbox.recovery is not None
    assert outbox.seqs() == {DEVICE: 2000, "sw-99": 5}
    assert outbox.depth().rows == len(readable) < len(original)
    outbox.close()
    assert all_rows(path, "spool") == readable


def test_alert_state_keeps_the_records_that_read_back(tmp_path):
    path = tmp_path / "alerts.sqlite"
    AlertStore(path).close()  # its schema
    conn = sqlite3.connect(path)
    # Many records, as a long-running engine leaves them (the doc is what the store wrote).
    docs = {
        i: json.dumps({"rule": "battery_low", "severity": "warning", "device": f"sw-{i}"})
        for i in range(1500)
    }
    conn.executemany(
        "INSERT INTO alert VALUES (?, ?, ?)",
        [(f"sw-{i}", "battery_low", doc) for i, doc in docs.items()],
    )
    conn.commit()
    conn.close()
    checkpoint(path)
    original = all_rows(path, "alert")
    break_middle_page(path, "alert")
    readable = readable_rows(path, "alert", list(original))
    assert 0 < len(readable) < len(original)
    store = AlertStore(path)
    assert store.recovery is not None
    store.close()
    assert all_rows(path, "alert") == readable


# --- the real processes -----------------------------------------------------------------------------


def spool_readings(settings: FleetSettings, n: int) -> None:
    """Readings in the collector's spool as the collector spools them (InfluxDB away)."""
    decoder = make_decoder(settings)
    spool = Spool(settings.spool.path, max_bytes=1 << 30, fsync=False)
    base = int(time.time() * 1000) - 3_600_000
    for start in range(1, n + 1, 50):
        entries = []
        for seq in range(start, min(n, start + 49) + 1):
            reading = decoder.decode(TOPIC, telemetry(DEVICE, seq, base + seq * 1000))
            assert reading is not None
            lines = schema.reading_lines(reading)
            entries.append(Entry(TOPIC, "\n".join(lines), len(lines)))
        spool.append(entries)
    spool.close()
    checkpoint(settings.spool.path)


def seq_of(row: tuple[Any, ...]) -> int:
    """The seq of a spooled reading (its lines carry `seq=<n>i`)."""
    lines = str(row[4])
    return int(lines.split("seq=", 1)[1].split("i", 1)[0])


def healthz(port: int) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_collector_starts_on_a_broken_spool_and_alert_state_and_keeps_what_reads_back(
    tmp_path: Path, mqtt_broker: MosquittoServer, influx: InfluxServer, tmp_db: str
) -> None:
    http_port = free_port()
    with HttpReceiver() as receiver:
        config = write_config(
            tmp_path,
            broker=mqtt_broker,
            influx=influx,
            database=tmp_db,
            alerts=f'[alerts.notify]\ncritical = ["{webhook(receiver)}"]\n',
        )
        set_keys(config, {"http.bind": f"127.0.0.1:{http_port}"})
        settings = settings_from(config)
        spool_readings(settings, 1500)
        original = all_rows(settings.spool.path, "spool")
        AlertStore(settings.alerts.state_path).close()
        break_middle_page(settings.spool.path)
        overwrite(settings.alerts.state_path, 0, 100)  # not a database any more
        readable = readable_rows(settings.spool.path, "spool", list(original))
        expected = sorted(seq_of(row) for row in readable.values())
        assert 0 < len(original) - len(readable) < 100

        client = settings.mqtt.client_id
        alert_topic = f"fleet/v1/allingtown/alerts/{client}/state_file_corrupt"
        alerts = Subscriber(settings, mqtt_broker, alert_topic)
        log = tmp_path / "collector.log"
        fleet = str(Path(sys.executable).with_name("fleet"))
        proc = spawn([fleet, "collector", "--config", str(config)], log)
        try:
            # It says what it did: which file, what SQLite said, where it went, what it kept.
            def logged() -> str:
                text = log.read_text()
                return text if text.count("is broken (SQLite:") == 2 else ""

            text = wait_until(logged, timeout=20, message="both recoveries logged")
            assert f"SQLite file {settings.spool.path} is broken" in text
            assert "database disk image is malformed" in text
            assert f"SQLite file {settings.alerts.state_path} is broken" in text
            assert "file is not a database" in text
            assert f"{len(readable)} readable rows copied" in text

            def stored() -> list[int]:
                rows = influx.rows(f"SELECT seq FROM battery WHERE device = '{DEVICE}'", tmp_db)
                return [r["seq"] for r in rows]

            wait_until(lambda: len(stored()) >= len(expected), timeout=30, message="drained")
            assert sorted(stored()) == expected  # every readable reading, once

            docs = wait_until(lambda: alerts.json(alert_topic), timeout=10, message="the alert")
            assert len(docs) == 2
            for doc in docs:
                assert doc["severity"] == "critical"
                assert doc["state"] == "firing"
                assert doc["device"] == client
                assert doc["rule"] == "state_file_corrupt"
            messages = " ".join(str(d["message"]) for d in docs)
            assert str(settings.spool.path) in messages
            assert ".corrupt-" in messages
            assert str(settings.alerts.state_path) in messages

            hooks = wait_until(
                lambda: receiver.requests[:] if len(receiver.requests) >= 2 else [], 20
            )
            bodies = " ".join(r.body.decode() for r in hooks)
            assert "state_file_corrupt" in bodies or "is broken" in bodies

            def counted() -> list[dict[str, Any]]:
                return influx.rows("SELECT max(state_files_recovered) FROM pipeline", tmp_db)

            rows = wait_until(counted, timeout=20, message="the counter in `pipeline`")
            assert rows[0]["max"] == 2

            status, body = healthz(http_port)
            assert status == 200
            assert {r["file"] for r in body["state_files_recovered"]} == {
                str(settings.spool.path),
                str(settings.alerts.state_path),
            }
        finally:
            alerts.close()
            assert stop_process(proc) == 0, tail(log)


def test_agent_starts_on_a_broken_outbox_and_sends_what_reads_back(
    tmp_path: Path, mqtt_broker: MosquittoServer
) -> None:
    settings = settings_of(write_agent_config(tmp_path, mqtt_broker))
    path = settings.agent.outbox_path
    topic = wire.telemetry_topic("fleet", "allingtown", "segway", DEVICE)
    outbox = Outbox(path, max_bytes=1 << 30, fsync=False)
    for start in range(0, 1500, 100):
        entries = [
            Entry(topic, telemetry(DEVICE, i, 1_700_000_000_000 + i * 1000).decode(), 1)
            for i in range(start + 1, start + 101)
        ]
        outbox.add(entries, {DEVICE: start + 100})
    outbox.close()
    checkpoint(path)
    original = all_rows(path, "spool")
    break_middle_page(path)
    readable = readable_rows(path, "spool", list(original))
    expected = sorted(json.loads(str(row[4]))["seq"] for row in readable.values())
    assert 0 < len(original) - len(readable) < 100

    agent_id = settings.agent.id
    alert_topic = f"fleet/v1/allingtown/alerts/{agent_id}/state_file_corrupt"
    sub = Subscriber(settings, mqtt_broker, "fleet/v1/allingtown/#")
    try:
        agent = Agent(settings, specs=[])
        with running_agent(agent):
            wait_until(
                lambda: len(sub.seqs(topic)) >= len(expected), timeout=30, message="forwarded"
            )
            assert sorted(sub.seqs(topic)) == expected
            (doc,) = wait_until(lambda: sub.json(alert_topic), timeout=10, message="alert")
            assert doc["severity"] == "critical"
            assert doc["state"] == "firing"
            assert doc["device"] == agent_id
            assert doc["kind"] == "agent"
            assert str(path) in str(doc["message"])
            assert ".corrupt-" in str(doc["message"])
            assert agent.state_files_recovered == 1
            retained = [m for m in sub.messages if m.topic == alert_topic]
            assert retained  # published retained: a later subscriber gets it
    finally:
        sub.close()
    assert len(aside(path)) >= 1


@pytest.mark.parametrize("name", ["spool.sqlite", "alerts.sqlite"])
def test_a_collector_in_process_counts_each_recovered_file(
    tmp_path: Path, mqtt_broker: MosquittoServer, influx: InfluxServer, tmp_db: str, name: str
) -> None:
    settings = settings_from(
        write_config(tmp_path, broker=mqtt_broker, influx=influx, database=tmp_db)
    )
    (tmp_path / name).write_bytes(b"\x00garbage" * 512)
    with running_collector(settings, mqtt_broker) as collector:
        assert [r.path.name for r in collector.recoveries] == [name]
        assert "state_files_recovered=1i" in collector.stats.lines()[0]
