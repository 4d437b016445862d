"""The audit trail: one log line a hostile name cannot forge, and `audit` / `assignment` points
that reach a real InfluxDB through the real spool and writer."""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fleet.config.influx import InfluxSettings
from fleet.daemon.board.audit import Audit, one_line, quoted
from fleet.daemon.board.model import Assignment
from fleet.daemon.collector import schema
from fleet.daemon.collector.sinks import V1Sink
from fleet.daemon.collector.writer import Writer, write_backoff
from fleet.daemon.spool import Spool
from tests.harness.servers import InfluxServer
from tests.harness.waiting import wait_until

T0 = 1_796_043_480_000
H = 3_600_000
HOSTILE = 'Diaz" action="delete\naudit: user="root" \\ \r\t\x00\u2028\x85 😀'


# --- the log line --------------------------------------------------------------------------


def test_quoting_keeps_any_value_on_one_line_and_reversible():
    assert quoted("kim") == '"kim"'
    assert quoted('a "b" \\ c') == '"a \\"b\\" \\\\ c"'
    assert quoted("a\nb\r\tc\x00\x1b\u2028\x85é😀") == (
        '"a\\nb\\r\\tc\\u0000\\u001b\\u2028\\u0085é😀"'
    )
    text = quoted(HOSTILE)
    assert text.isprintable()
    # Reversible: a reader of the log gets the exact value back (a JSON string, here).
    assert json.loads(text) == HOSTILE


def test_one_audit_log_line_per_change_and_a_hostile_name_cannot_forge_one(caplog):
    caplog.set_level(logging.INFO, logger="fleet.daemon.board.audit")
    audit = Audit(_NoSpool(), lambda: None, site="allingtown", schema=schema)  # type: ignore[arg-type]
    audit.record("kim", "sign_out", "sw-03", f"to {HOSTILE}", T0)
    (rec,) = [r for r in caplog.records if r.name == "fleet.daemon.board.audit"]
    line = rec.getMessage()
    assert rec.levelno == logging.INFO
    assert line.isprintable()  # no line break of any kind: one line in the journal
    assert line.startswith('audit: user="kim" action="sign_out" target="sw-03" detail="to Diaz\\"')
    # A reader splitting key="value" pairs finds exactly the four, with the exact values.
    pairs = re.findall(r'(\w+)=("(?:[^"\\]|\\.)*")', line)
    assert " ".join(f"{k}={v}" for k, v in pairs) == line.removeprefix("audit: ")
    assert {k: json.loads(v) for k, v in pairs} == {
        "user": "kim",
        "action": "sign_out",
        "target": "sw-03",
        "detail": f"to {HOSTILE}",
    }


class _NoSpool:
    """Takes points and keeps them (the log-line tests need no InfluxDB)."""

    def __init__(self) -> None:
        self.entries: list[Any] = []

    def append(self, entries: Any) -> None:
        self.entries.extend(entries)


def test_every_point_gets_its_own_timestamp():
    # Same series and time would be one point in InfluxDB: changes in one ms must not merge.
    spool = _NoSpool()
    audit = Audit(spool, lambda: None, site="allingtown", schema=schema)  # type: ignore[arg-type]
    for _ in range(3):
        audit.record("kim", "ack", "sw-03/battery_low", "", T0)
    stamps = [e.lines.rsplit(" ", 1)[1] for e in spool.entries]
    assert stamps == [str(T0), str(T0 + 1), str(T0 + 2)]
    audit.record("kim", "ack", "sw-03/battery_low", "", T0 + 10)
    assert spool.entries[-1].lines.endswith(f" {T0 + 10}")


def test_an_assignment_change_is_out_or_in():
    audit = Audit(_NoSpool(), lambda: None, site="allingtown", schema=schema)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'lent' is not one of"):
        audit.assignment("lent", Assignment("sw-03", "Diaz", T0, T0 + H, "kim"), "hq", T0)


def test_a_point_the_spool_cannot_take_is_logged_and_counted(tmp_path, caplog, monkeypatch):
    """A full disk (SQLite's max_page_count): the change stays recorded in its own store."""
    spool = Spool(tmp_path / "spool.sqlite", max_bytes=10**9, fsync=False)
    conn = spool._conn()
    conn.execute(f"PRAGMA max_page_count = {conn.execute('PRAGMA page_count').fetchone()[0]}")
    woken: list[int] = []
    audit = Audit(spool, lambda: woken.append(1), site="allingtown", schema=schema)
    caplog.set_level(logging.INFO)
    for i in range(200):  # until the last free page is taken
        audit.record("kim", "out_of_service", f"sw-{i}", "x" * 500, T0 + i)
        if audit.counters.spool_failures:
            break
    assert audit.counters.spool_failures == 1
    assert audit.counters.records == i + 1
    assert len(woken) == i == spool.depth().rows
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == [
        "audit point not spooled (database or disk is full); the change itself is recorded"
    ]
    spool.close()


def test_one_line_escapes_only_what_breaks_a_line():
    assert one_line('plain "quoted" \\') == 'plain "quoted" \\'
    assert one_line("a\nb\x00") == "a\\nb\\u0000"


# --- real spool, real writer, real InfluxDB ---------------------------------------------------


@pytest.fixture
def pipeline(tmp_path: Path, influx: InfluxServer, tmp_db: str) -> Iterator[tuple[Audit, Spool]]:
    spool = Spool(tmp_path / "spool.sqlite", max_bytes=10**9, fsync=False)
    s = InfluxSettings(url=influx.url, database=tmp_db, retention="INF", flush_interval_s=0.05)
    writer = Writer(
        spool,
        V1Sink(s),
        batch_size=s.batch_size,
        flush_interval_s=s.flush_interval_s,
        backoff=write_backoff(0.05, 0.2),
        on_rejected=lambda lines, reason: pytest.fail(f"InfluxDB refused {lines}: {reason}"),
        oldest_allowed_ms=lambda: None,
    )
    stop = threading.Event()
    thread = threading.Thread(target=writer.run, args=(stop,))
    thread.start()
    try:
        yield Audit(spool, writer.notify, site="allingtown", schema=schema), spool
    finally:
        stop.set()
        thread.join(10)
        assert not thread.is_alive()
        spool.close()


def test_audit_and_assignment_points_land_in_influxdb(pipeline, influx, tmp_db):
    audit, spool = pipeline
    a = Assignment("sw-03", "Ñúñez O'Brien", T0, T0 + 8 * H, "kim", 'note "x" \\ y')
    audit.assignment("out", a, "allingtown", T0, kind="segway")
    audit.record("kim", "sign_out", "sw-03", "to Ñúñez O'Brien", T0)
    audit.assignment("in", a, "allingtown", T0 + 9 * H, kind="segway", by="lee")
    audit.record("lee", "sign_in", "sw-03", HOSTILE, T0 + 9 * H)

    def stored(measurement: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = influx.rows(f"SELECT * FROM {measurement}", tmp_db)
        return rows

    wait_until(
        lambda: len(stored("audit")) == 2 and len(stored("assignment")) == 2,
        message="2 audit and 2 assignment points in InfluxDB",
    )
    wait_until(lambda: spool.depth().rows == 0, message="the spool drained")
    assert stored("assignment") == [
        {
            "time": T0,
            "site": "allingtown",
            "kind": "segway",
            "device": "sw-03",
            "change": "out",
            "officer": "Ñúñez O'Brien",
            "by": "kim",
            "note": 'note "x" \\ y',
            "out_ms": T0,
            "due_ms": T0 + 8 * H,
            "hours_out": None,
            "late_min": None,
        },
        {
            "time": T0 + 9 * H,
            "site": "allingtown",
            "kind": "segway",
            "device": "sw-03",
            "change": "in",
            "officer": "Ñúñez O'Brien",
            "by": "lee",
            "note": 'note "x" \\ y',
            "out_ms": T0,
            "due_ms": T0 + 8 * H,
            "hours_out": 9,
            "late_min": 60,
        },
    ]
    audit_rows = stored("audit")
    assert [(r["time"], r["site"], r["action"], r["user"], r["target"]) for r in audit_rows] == [
        (T0 + 1, "allingtown", "sign_out", "kim", "sw-03"),  # a ms after the assignment point
        (T0 + 9 * H + 1, "allingtown", "sign_in", "lee", "sw-03"),
    ]
    assert audit_rows[0]["detail"] == "to Ñúñez O'Brien"
    assert audit_rows[1]["detail"] == one_line(HOSTILE)  # quotes and backslashes exact
    assert "\n" not in audit_rows[1]["detail"]

    # Tags are what Grafana groups by; the rest are fields of stable types.
    tags = {
        name: {v[0] for v in series["values"]}
        for result in influx.query("SHOW TAG KEYS", tmp_db)["results"]
        for series in result.get("series", [])
        for name in [series["name"]]
    }
    assert tags == {"audit": {"action", "site"}, "assignment": {"change", "device", "kind", "site"}}
    types = {
        (series["name"], key): kind
        for result in influx.query("SHOW FIELD KEYS", tmp_db)["results"]
        for series in result.get("series", [])
        for key, kind in series["values"]
    }
    assert types == {
        ("audit", "detail"): "string",
        ("audit", "target"): "string",
        ("audit", "user"): "string",
        ("assignment", "by"): "string",
        ("assignment", "due_ms"): "integer",
        ("assignment", "hours_out"): "float",
        ("assignment", "late_min"): "float",
        ("assignment", "note"): "string",
        ("assignment", "officer"): "string",
        ("assignment", "out_ms"): "integer",
    }
