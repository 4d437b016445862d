"""Per-message isolation: nothing that runs for one message can fail its batch."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Callable

from fleet.daemon import wire
from fleet.daemon.collector.ingest import Ingest
from fleet.daemon.mqtt import Inbound
from fleet.daemon.spool import Spool
from tests.harness.waiting import wait_until

NOW_MS = int(time.time() * 1000)
TOPIC = "fleet/v1/allingtown/segway/sw-01/telemetry"
ACK_TOPIC = "fleet/v1/allingtown/alerts/sw-01/battery_low/ack"


def decoder() -> wire.Decoder:
    return wire.Decoder(
        prefix="fleet",
        default_site="allingtown",
        kinds=["segway", "handheld"],
        registry={},
        owntracks_map={},
        max_payload_bytes=65536,
        max_future_s=300,
        max_age_s=None,
        now_ms=lambda: NOW_MS,
    )


def reading(mid: int, seq: int | None = None) -> Inbound:
    body = {
        "schema": 1,
        "device": "sw-01",
        "seq": mid if seq is None else seq,
        "ts": (NOW_MS + mid) / 1000,
        "battery": {"pct": 50},
    }
    return Inbound(TOPIC, json.dumps(body).encode(), 1, mid, 1, False)


def control(mid: int, payload: bytes) -> Inbound:
    return Inbound(ACK_TOPIC, payload, 1, mid, 1, False)


class Harness:
    def __init__(self, tmp_path, **hooks: Callable[..., object]) -> None:
        self.spool = Spool(tmp_path / "spool.sqlite", max_bytes=10**9, fsync=False)
        self.acks: list[int] = []
        self.dead: list[dict[str, object]] = []
        self.handed: list[int] = []
        publish = hooks.pop("publish", None)

        def publish_(topic: str, payload: bytes) -> None:
            if publish is not None:
                publish(topic, payload)
            self.dead.append(json.loads(payload))

        self.ingest = Ingest(
            decoder=decoder(),
            spool=self.spool,
            publish=publish_,
            ack=lambda batch: self.acks.extend(m.mid for m in batch),
            deadletter_topic=lambda topic: "fleet/v1/allingtown/deadletter",
            on_spooled=lambda: None,
            batch_max=1000,
            **hooks,  # type: ignore[arg-type]
        )

    def run(self, messages: list[Inbound]) -> None:
        """All messages in one batch; returns once every one is acknowledged."""
        for m in messages:
            self.ingest.put(m)
        stop = threading.Event()
        failed: list[BaseException] = []

        def target() -> None:
            try:
                self.ingest.run(stop)
            except BaseException as exc:  # noqa: BLE001 - what the test looks for
                failed.append(exc)

        thread = threading.Thread(target=target)
        thread.start()
        try:
            wait_until(
                lambda: len(self.acks) >= len(messages) or failed,
                message=f"{len(messages)} acks",
            )
        finally:
            stop.set()
            thread.join(10)
        assert failed == [], "the ingest thread raised"

    def spooled_seqs(self) -> list[int]:
        rows = self.spool.head(10_000)
        return [
            int(line.split("seq=")[1].split("i")[0]) for r in rows for line in r.lines.split("\n")
        ]


def test_a_control_hook_that_blows_up_costs_only_its_message(tmp_path):
    def on_control(message: Inbound) -> bool:
        if not message.topic.endswith("/ack"):
            return False
        json.loads(message.payload)  # deep nesting: RecursionError, like an unbounded parser
        return True

    deep = b"[" * 100_000 + b"]" * 100_000
    h = Harness(tmp_path, on_control=on_control)
    h.run([reading(1), control(2, deep), reading(3), control(4, b'{"by": "sgt"}'), reading(5)])
    assert h.acks == [1, 2, 3, 4, 5]
    assert h.spooled_seqs() == [1, 3, 5]
    assert [(d["reason"], d["topic"]) for d in h.dead] == [("internal_error", ACK_TOPIC)]
    assert "RecursionError" in str(h.dead[0]["detail"])
    assert h.ingest.counters.rejected == {"internal_error": 1}


def test_bad_control_input_is_dead_lettered_with_its_own_reason(tmp_path):
    def on_control(message: Inbound) -> bool:
        if not message.topic.endswith("/ack"):
            return False
        if len(message.payload) > 1024:
            raise wire.Rejected(wire.Reason.TOO_LARGE, f"{len(message.payload)} bytes")
        return True

    h = Harness(tmp_path, on_control=on_control)
    h.run([reading(1), control(2, b"x" * 2_000_000), reading(3)])
    assert h.acks == [1, 2, 3]
    assert [d["reason"] for d in h.dead] == ["too_large"]
    assert h.ingest.counters.received == 2  # control messages are the alert service's count
    assert h.spooled_seqs() == [1, 3]


def test_a_seq_jump_to_2_62_is_stored_with_its_batch(tmp_path):
    h = Harness(tmp_path)
    messages = [reading(1), reading(2, seq=2**62), *(reading(i) for i in range(3, 61))]
    h.run(messages)
    assert len(h.acks) == 60
    assert h.dead == []
    assert len(h.spooled_seqs()) == 60
    assert h.ingest.seq.restarts == 2  # there, and back
    assert h.ingest.seq.missing == 0


def test_failures_after_the_commit_do_not_stop_the_acknowledgements(tmp_path):
    def publish(topic: str, payload: bytes) -> None:
        raise RuntimeError("link gone")

    def on_readings(readings: list[wire.DecodedReading]) -> None:
        raise RuntimeError("engine broken")

    h = Harness(tmp_path, publish=publish, on_readings=on_readings)
    h.run([reading(1), Inbound(TOPIC, b"{not json", 1, 2, 1, False), reading(3)])
    assert h.acks == [1, 2, 3]
    assert h.spooled_seqs() == [1, 3]
    assert h.ingest.counters.internal_errors == 2
    assert h.ingest.counters.dead_lettered == 1


def test_a_line_that_sqlite_would_refuse_fails_alone(tmp_path):
    class Surrogate(wire.Decoder):
        def decode(self, topic: str, payload: bytes) -> wire.DecodedReading | None:
            r = super().decode(topic, payload)
            if r is not None and r.seq == 2:
                return dataclasses.replace(r, kind="seg\ud800")  # as a decoder bug might
            return r

    h = Harness(tmp_path)
    h.ingest._decoder = Surrogate(
        prefix="fleet",
        default_site="allingtown",
        kinds=["segway"],
        registry={},
        owntracks_map={},
        max_payload_bytes=65536,
        max_future_s=300,
        max_age_s=None,
        now_ms=lambda: NOW_MS,
    )
    h.run([reading(1), reading(2), reading(3)])
    assert h.acks == [1, 2, 3]
    assert h.spooled_seqs() == [1, 3]
    assert [d["reason"] for d in h.dead] == ["internal_error"]


def test_seq_state_is_committed_with_the_batch_and_restored(tmp_path):
    h = Harness(tmp_path)
    h.run([reading(1), reading(2), reading(5)])
    (row,) = h.spool.seq_rows()
    assert (row.device, row.site, row.kind, row.highest) == ("sw-01", "allingtown", "segway", 5)
    again = Harness(tmp_path)
    again.run([reading(10, seq=5), reading(11, seq=9)])  # a redelivery, then 6..8 lost
    assert again.ingest.seq.duplicates == 1
    assert again.ingest.seq.missing == 3
