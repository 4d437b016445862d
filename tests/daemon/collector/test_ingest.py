"""Ingest: what is acknowledged, when, and what happens to what cannot be stored."""

from __future__ import annotations

import json
import threading
import time

from fleet.daemon import wire
from fleet.daemon.collector.ingest import Ingest
from fleet.daemon.mqtt import Inbound
from fleet.daemon.spool import Entry, Spool
from tests.harness.waiting import wait_until

NOW_MS = int(time.time() * 1000)
TOPIC = "fleet/v1/allingtown/segway/sw-01/telemetry"


class ExplodingDecoder(wire.Decoder):
    """The real decoder, except that it fails like a bug would on one topic."""

    def decode(self, topic: str, payload: bytes) -> wire.DecodedReading | None:
        if topic.endswith("/boom/telemetry"):
            raise KeyError("unexpected")
        return super().decode(topic, payload)


def make_ingest(spool: Spool, acks: list[int], dead: list[tuple[str, bytes]]) -> Ingest:
    decoder = ExplodingDecoder(
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
    return Ingest(
        decoder=decoder,
        spool=spool,
        publish=lambda topic, payload: dead.append((topic, payload)),
        ack=lambda batch: acks.extend(m.mid for m in batch),
        deadletter_topic=lambda topic: "fleet/v1/allingtown/deadletter",
        on_spooled=lambda: None,
        batch_max=100,
    )


def message(mid: int, topic: str = TOPIC, payload: bytes | None = None) -> Inbound:
    if payload is None:
        device = topic.split("/")[4]
        body = {
            "schema": 1,
            "device": device,
            "seq": mid,
            "ts": NOW_MS / 1000,
            "battery": {"pct": 50},
        }
        payload = json.dumps(body).encode()
    return Inbound(topic=topic, payload=payload, qos=1, mid=mid, generation=1, retain=False)


def run_until_acked(ingest: Ingest, count: int, acks: list[int]) -> None:
    stop = threading.Event()
    thread = threading.Thread(target=ingest.run, args=(stop,))
    thread.start()
    try:
        wait_until(lambda: len(acks) >= count, message=f"{count} acks")
    finally:
        stop.set()
        thread.join(10)


def test_every_message_is_acknowledged_in_order_once_its_batch_is_on_disk(tmp_path):
    spool = Spool(tmp_path / "s.sqlite", max_bytes=10**9, fsync=True)
    acks: list[int] = []
    dead: list[tuple[str, bytes]] = []
    ingest = make_ingest(spool, acks, dead)
    for m in (
        message(1),
        message(2, payload=b"{not json"),
        message(3, topic="fleet/v1/allingtown/segway/boom/telemetry"),
        message(4),
    ):
        ingest.put(m)
    run_until_acked(ingest, 4, acks)
    assert acks == [1, 2, 3, 4]
    assert [r.n for r in spool.head(100)] == [1, 1]
    reasons = [json.loads(payload)["reason"] for _, payload in dead]
    assert reasons == ["bad_json", "internal_error"]
    assert "KeyError" in json.loads(dead[1][1])["detail"]
    assert ingest.counters.rejected == {"bad_json": 1, "internal_error": 1}
    assert ingest.counters.accepted == 2


def test_a_full_spool_holds_back_acknowledgements_until_it_drains(tmp_path):
    spool = Spool(tmp_path / "s.sqlite", max_bytes=200, fsync=False)
    spool.append([Entry("x", "m f=1 " + "1" * 300, 1)])
    assert spool.full
    acks: list[int] = []
    ingest = make_ingest(spool, acks, [])
    ingest.put(message(7))
    stop = threading.Event()
    thread = threading.Thread(target=ingest.run, args=(stop,))
    thread.start()
    try:
        wait_until(lambda: ingest.counters.received == 1, message="message taken")
        assert acks == []  # nothing acknowledged while the reading has nowhere to go
        spool.remove(spool.head(10))
        wait_until(lambda: acks == [7], message="acknowledged once spooled")
        assert [r.topic for r in spool.head(10)] == [TOPIC]
    finally:
        stop.set()
        thread.join(10)
