"""The spool writer against a real HTTP endpoint that misbehaves on cue."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from fleet.config.influx import InfluxSettings
from fleet.daemon.collector.sinks import V1Sink, V2Sink, parse_retry_after
from fleet.daemon.collector.writer import Writer, write_backoff
from fleet.daemon.spool import Entry, Spool
from tests.harness.http_receiver import HttpReceiver, Reply
from tests.harness.waiting import wait_until

pytestmark = pytest.mark.integration  # a real HTTP server answers the writes

TOPIC = "fleet/v1/allingtown/segway/sw-01/telemetry"


def lines(start: int, count: int) -> list[str]:
    return [
        f"battery,device=sw-01 pct={i % 100} {1_800_000_000_000 + i}"
        for i in range(start, start + count)
    ]


def settings(url: str, **extra) -> InfluxSettings:
    values = {
        "url": url,
        "batch_size": 10,
        "flush_interval_s": 0.05,
        "write_backoff_initial_s": 0.05,
        "write_backoff_max_s": 0.2,
        "retention": "INF",
    }
    values.update(extra)
    return InfluxSettings(**values)


@contextmanager
def running_writer(
    tmp_path, receiver: HttpReceiver, entries: list[Entry], **extra
) -> Iterator[tuple[Writer, Spool, list[tuple[str, str, str]]]]:
    spool = Spool(tmp_path / "spool.sqlite", max_bytes=10**9, fsync=False)
    spool.append(entries)
    rejected: list[tuple[str, str, str]] = []
    s = settings(receiver.url, **extra)
    writer = Writer(
        spool,
        V1Sink(s),
        batch_size=s.batch_size,
        flush_interval_s=s.flush_interval_s,
        backoff=write_backoff(s.write_backoff_initial_s, s.write_backoff_max_s),
        on_rejected=lambda lines, reason: rejected.extend((t, line, reason) for t, line in lines),
        oldest_allowed_ms=lambda: None,
    )
    stop = threading.Event()
    thread = threading.Thread(target=writer.run, args=(stop,))
    thread.start()
    try:
        yield writer, spool, rejected
    finally:
        stop.set()
        thread.join(10)
        assert not thread.is_alive()


def one_row_per_line(ls: list[str]) -> list[Entry]:
    return [Entry(TOPIC, line, 1) for line in ls]


def written_lines(receiver: HttpReceiver, status_ok_only: bool = True) -> list[str]:
    out: list[str] = []
    for request in receiver.writes():
        out.extend(request.body.decode().split("\n"))
    return out


def test_batches_are_written_in_order_and_leave_the_spool(tmp_path):
    with (
        HttpReceiver() as receiver,
        running_writer(tmp_path, receiver, one_row_per_line(lines(0, 25))) as (writer, spool, _),
    ):
        wait_until(lambda: spool.depth().rows == 0, message="spool drained")
    assert written_lines(receiver) == lines(0, 25)
    assert all(len(r.body.split(b"\n")) <= 10 for r in receiver.writes())
    request = receiver.writes()[0]
    assert request.query["db"] == ["fleet"]
    assert request.query["precision"] == ["ms"]
    assert request.query["rp"] == ["raw"]
    assert writer.counters.written_points == 25


def test_server_errors_are_retried_until_accepted(tmp_path):
    with HttpReceiver() as receiver:
        receiver.script.extend([Reply(204, b"{}")] * 3)  # bootstrap: CREATE DB, SHOW RP, CREATE RP
        receiver.script.extend([Reply(503, b"overloaded"), Reply(500, b'{"error":"timeout"}')])
        with running_writer(tmp_path, receiver, one_row_per_line(lines(0, 5))) as (
            writer,
            spool,
            rejected,
        ):
            wait_until(lambda: spool.depth().rows == 0, message="spool drained")
    bodies = [r.body for r in receiver.writes()]
    assert len(bodies) == 3
    assert len(set(bodies)) == 1  # the same batch, three times
    assert writer.counters.retries == 2
    assert rejected == []


def test_retry_after_is_honoured(tmp_path):
    with HttpReceiver() as receiver:
        receiver.script.extend([Reply(204, b"{}")] * 3)
        receiver.script.append(Reply(429, b"slow down", {"Retry-After": "1"}))
        with running_writer(tmp_path, receiver, one_row_per_line(lines(0, 3))) as (_, spool, _r):
            wait_until(lambda: spool.depth().rows == 0, message="spool drained")
    first, second = receiver.writes()[:2]
    assert second.at - first.at >= 1.0


def test_a_refused_line_is_never_retried_and_only_a_2xx_counts_the_rest_as_written(tmp_path):
    bad = lines(2, 1)[0]
    body = (
        '{"error":"partial write: unable to parse \'' + bad + "': invalid number dropped=0\"}"
    ).encode()
    with HttpReceiver() as receiver:
        receiver.script.extend([Reply(204, b"{}")] * 3)
        receiver.script.append(Reply(400, body))
        with running_writer(tmp_path, receiver, one_row_per_line(lines(0, 5))) as (
            writer,
            spool,
            rejected,
        ):
            wait_until(lambda: spool.depth().rows == 0, message="spool drained")
    first, second = receiver.writes()
    assert first.body.decode().split("\n") == lines(0, 5)
    # The rest goes again (a point written twice is one point); the refused line never does.
    assert second.body.decode().split("\n") == [line for line in lines(0, 5) if line != bad]
    assert [(t, line) for t, line, _ in rejected] == [(TOPIC, bad)]
    assert "invalid number" in rejected[0][2]
    assert writer.counters.rejected_points == 1
    assert writer.counters.written_points == 4
    assert writer.counters.resent_points == 4


def test_a_batch_refused_whole_writes_nothing(tmp_path):
    """InfluxDB 2.x refuses a whole batch for one unparsable line: the rest must not be
    counted as written, nor dropped, but written again."""
    bad = lines(1, 1)[0]
    body = ('{"code":"invalid","message":"unable to parse \'' + bad + "': bad\"}").encode()
    with HttpReceiver() as receiver:
        receiver.script.extend([Reply(204, b"{}")] * 3)
        receiver.script.extend([Reply(400, body), Reply(503, b"busy")])
        with running_writer(tmp_path, receiver, one_row_per_line(lines(0, 3))) as (
            writer,
            spool,
            rejected,
        ):
            wait_until(lambda: spool.depth().rows == 0, message="spool drained")
    bodies = [r.body.decode().split("\n") for r in receiver.writes()]
    rest = [lines(0, 1)[0], lines(2, 1)[0]]
    assert bodies == [lines(0, 3), rest, rest]  # a failed re-send is retried like any batch
    assert [line for _, line, _ in rejected] == [bad]
    assert writer.counters.written_points == 2


def test_a_too_large_batch_is_split(tmp_path):
    with HttpReceiver() as receiver:
        receiver.script.extend([Reply(204, b"{}")] * 3)
        receiver.script.append(Reply(413, b"Request Entity Too Large"))
        with running_writer(tmp_path, receiver, one_row_per_line(lines(0, 10))) as (
            _,
            spool,
            rejected,
        ):
            wait_until(lambda: spool.depth().rows == 0, message="spool drained")
    sizes = [len(r.body.split(b"\n")) for r in receiver.writes()]
    assert sizes[0] == 10
    assert max(sizes[1:]) <= 5
    assert sorted(written_lines(receiver)[10:]) == sorted(lines(0, 10))
    assert rejected == []


def test_a_vanished_database_is_created_again(tmp_path):
    with HttpReceiver() as receiver:
        receiver.script.extend([Reply(204, b"{}")] * 3)
        receiver.script.append(Reply(404, b'{"error":"database not found: \\"fleet\\""}'))
        with running_writer(tmp_path, receiver, one_row_per_line(lines(0, 2))) as (_, spool, _r):
            wait_until(lambda: spool.depth().rows == 0, message="spool drained")
    creates = [r for r in receiver.requests if r.path == "/query" and b"CREATE+DATABASE" in r.body]
    assert len(creates) == 2


@pytest.mark.parametrize(
    ("header", "expected"),
    [("7", 7.0), (None, None), ("soon", None), ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0)],
)
def test_retry_after_header_forms(header, expected):
    assert parse_retry_after(header) == expected


def test_v2_backend_speaks_the_v2_write_api():
    with HttpReceiver() as receiver:
        sink = V2Sink(
            settings(
                receiver.url, api="v2", org="westhaven-pd", token="s3cr3t-token", database="fleet"
            )
        )
        result = sink.write("\n".join(lines(0, 3)).encode())
        sink.close()
    assert result.ok
    (request,) = receiver.requests
    assert request.path == "/api/v2/write"
    assert request.query["org"] == ["westhaven-pd"]
    assert request.query["bucket"] == ["fleet"]
    assert request.query["precision"] == ["ms"]
    assert request.headers["authorization"] == "Token s3cr3t-token"
    assert request.body.decode().split("\n") == lines(0, 3)


def test_v2_backend_reports_status_and_retry_after():
    with HttpReceiver(
        Reply(429, b'{"code":"too many requests"}', {"Retry-After": "3"})
    ) as receiver:
        sink = V2Sink(settings(receiver.url, api="v2", org="o", token="t"))
        result = sink.write(b"battery,device=a pct=1 1")
        sink.close()
    assert (result.status, result.retry_after) == (429, 3.0)


def test_v1_backend_sends_token_or_basic_auth_without_leaking_it():
    with HttpReceiver() as receiver:
        V1Sink(settings(receiver.url, token="tok-123")).write(b"x f=1 1")
        V1Sink(settings(receiver.url, username="fleet", password="pw-456")).write(b"x f=1 1")
    token_req, basic_req = receiver.requests
    assert token_req.headers["authorization"] == "Token tok-123"
    assert basic_req.headers["authorization"] == "Basic ZmxlZXQ6cHctNDU2"
    assert "tok-123" not in token_req.path
    assert "pw-456" not in basic_req.path


# --- against the real InfluxDB: what `written` counts is what the server stored ---------------

T0 = 1_800_000_000_000


@contextmanager
def writer_on(tmp_path, influx, db: str, entries: list[Entry]):
    spool = Spool(tmp_path / "spool.sqlite", max_bytes=10**9, fsync=False)
    spool.append(entries)
    rejected: list[tuple[str, str, str]] = []
    s = settings(
        influx.url, database=db, batch_size=100, retention_policy="autogen", downsample_policy=""
    )
    sink = V1Sink(s)
    writer = Writer(
        spool,
        sink,
        batch_size=s.batch_size,
        flush_interval_s=s.flush_interval_s,
        backoff=write_backoff(s.write_backoff_initial_s, s.write_backoff_max_s),
        on_rejected=lambda lines, reason: rejected.extend((t, line, reason) for t, line in lines),
        oldest_allowed_ms=lambda: None,
    )
    stop = threading.Event()
    thread = threading.Thread(target=writer.run, args=(stop,))
    thread.start()
    try:
        wait_until(lambda: spool.depth().rows == 0, timeout=20, message="spool drained")
        yield writer, rejected
    finally:
        stop.set()
        thread.join(10)
        sink.close()
        assert not thread.is_alive()


def stored(influx, db: str) -> list[int]:
    return [r["time"] for r in influx.rows("SELECT * FROM battery", db)]


def test_real_influx_some_lines_refused_counts_only_the_stored_ones(tmp_path, influx, tmp_db):
    influx.write(tmp_db, f"battery,device=sw-01 pct=1.5,v=70.0 {T0}")
    batch = [
        f"battery,device=sw-01 pct=2.5 {T0 + 1}",
        f"battery,device=sw-01 pct=3i {T0 + 2}",  # integer where the server has float
        f'battery,device=sw-01 pct="x" {T0 + 3}',  # string where the server has float
        f"battery,device=sw-01 v=71i {T0 + 4}",  # a second field in conflict
        f"battery,device=sw-01 pct=4.5 {T0 + 5}",
        f"battery,device=sw-01 pct= {T0 + 6}",  # unparsable
    ]
    with writer_on(tmp_path, influx, tmp_db, one_row_per_line(batch)) as (writer, rejected):
        pass
    assert stored(influx, tmp_db) == [T0, T0 + 1, T0 + 5]
    assert sorted(line for _, line, _ in rejected) == sorted(batch[1:4] + batch[5:])
    assert writer.counters.written_points == 2
    assert writer.counters.rejected_points == 4
    print(f"lines re-sent to learn what the server stored: {writer.counters.resent_points}")


def test_real_influx_a_batch_with_every_line_refused_writes_nothing(tmp_path, influx, tmp_db):
    influx.write(tmp_db, f"battery,device=sw-01 pct=1.5 {T0}")
    batch = [f"battery,device=sw-01 pct={i}i {T0 + i}" for i in range(1, 6)]
    rows = [Entry(TOPIC, "\n".join(batch[:2]), 2), Entry(TOPIC, "\n".join(batch[2:]), 3)]
    with writer_on(tmp_path, influx, tmp_db, rows) as (writer, rejected):
        pass
    assert stored(influx, tmp_db) == [T0]
    assert [line for _, line, _ in rejected] == batch
    assert all("field type conflict" in reason for _, _, reason in rejected)
    assert writer.counters.written_points == 0
    assert writer.counters.rejected_points == 5


def test_real_influx_every_line_unparsable_writes_nothing(tmp_path, influx, tmp_db):
    batch = [f"battery,device=sw-01 pct= {T0 + i}" for i in range(3)]
    with writer_on(tmp_path, influx, tmp_db, one_row_per_line(batch)) as (writer, rejected):
        pass
    assert stored(influx, tmp_db) == []
    assert [line for _, line, _ in rejected] == batch
    assert writer.counters.written_points == 0
