"""paho reading through a buffer, gated by its owner's room, and a batch's acks in one write,
against a real Mosquitto (daemon/mqtt_socket.py, daemon/mqtt_inbox.py, MqttLink.ack_all)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from fleet.config import load_settings
from fleet.config.mqtt import MqttSettings
from fleet.daemon.mqtt import Inbound, MqttLink
from fleet.daemon.mqtt_inbox import Inbox
from fleet.daemon.mqtt_socket import CHUNK
from tests.harness.fleet import set_keys, write_config
from tests.harness.waiting import wait_until

TOPIC = "test/reads"


def _settings(tmp_path: Path, broker, influx, tmp_db, **keys: object) -> MqttSettings:
    path = write_config(tmp_path, broker=broker, influx=influx, database=tmp_db)
    if keys:
        set_keys(path, keys)
    return load_settings(path).mqtt


@contextmanager
def _running(link: MqttLink) -> Iterator[MqttLink]:
    link.start()
    try:
        assert link.wait_connected(10)
        yield link
    finally:
        link.stop()


def _publish(settings: MqttSettings, payloads: list[bytes]) -> None:
    with _running(MqttLink(settings, client_id="test-reads-pub", persistent=False)) as pub:
        for payload in payloads:
            pub.publish(TOPIC, payload, qos=1)
        assert pub.flush(60)


def _subscriber(settings: MqttSettings, client_id: str, **kwargs) -> MqttLink:
    return MqttLink(settings, client_id=client_id, subscriptions=[TOPIC], manual_ack=True, **kwargs)


def _queue_for(settings: MqttSettings, client_id: str, payloads: list[bytes]) -> None:
    """A persistent session subscribed, then away while `payloads` are published to it."""
    with _running(_subscriber(settings, client_id)):
        pass  # the session and its subscription now exist at the broker
    _publish(settings, payloads)


def test_messages_arrive_whole_and_in_order_across_the_reads(tmp_path, make_broker, influx, tmp_db):
    settings = _settings(tmp_path, make_broker(), influx, tmp_db)
    # Sizes around the read size and far past it: packets split at every place.
    sizes = [0, 1, 127, 128, 16_383, 16_384, CHUNK - 5, CHUNK, CHUNK + 3, 3 * CHUNK + 7]
    payloads = [bytes([i % 251]) * sizes[i % len(sizes)] + str(i).encode() for i in range(400)]
    _queue_for(settings, "test-reads-sizes", payloads)
    got: list[Inbound] = []
    link = _subscriber(settings, "test-reads-sizes", on_message=got.append)
    with _running(link):
        wait_until(lambda: len(got) >= len(payloads), timeout=60, message="every message")
        link.ack_all(got)
    assert [m.payload for m in got] == payloads


def test_a_full_inbox_stops_paho_reading_until_room_is_made(tmp_path, make_broker, influx, tmp_db):
    settings = _settings(tmp_path, make_broker(), influx, tmp_db)
    payloads = [f"m{i}".encode() * 40 for i in range(1_500)]
    _queue_for(settings, "test-reads-gate", payloads)
    inbox: Inbox[Inbound] = Inbox(bound=100, hard_bound=100, max_pause_s=3600)
    link = _subscriber(settings, "test-reads-gate", on_message=inbox.put, read_gate=inbox.room)
    taken: list[Inbound] = []
    with _running(link):
        # Paho has come round its loop many times since the inbox filled, reading nothing.
        wait_until(lambda: link.read_pauses >= 20, timeout=30, message="paho paused")
        assert inbox.waiting() == 100
        assert inbox.pauses >= 1
        while len(taken) < len(payloads):
            batch = inbox.take(60, timeout=10)
            assert batch, f"stalled after {len(taken)}"
            assert inbox.waiting() <= 100
            link.ack_all(batch)
            taken += batch
    assert [m.payload for m in taken] == payloads
    assert inbox.most <= 100


def test_a_long_stall_keeps_the_connection(
    tmp_path, make_broker, influx, tmp_db, caplog: pytest.LogCaptureFixture
):
    # Nothing is taken for several keepalives: paho's PINGRESP sits behind messages it does
    # not read, and paho drops a link whose PINGRESP does not come. After half a keepalive
    # the gate lets paho read on (up to the hard bound), so the PINGRESPs are read.
    settings = _settings(tmp_path, make_broker(), influx, tmp_db, **{"mqtt.keepalive_s": 5})
    _queue_for(settings, "test-reads-stall", [f"s{i}".encode() for i in range(300)])
    inbox: Inbox[Inbound] = Inbox(bound=10, hard_bound=1_000, max_pause_s=2.5)
    lost: list[bool] = []
    link = _subscriber(
        settings,
        "test-reads-stall",
        on_message=inbox.put,
        read_gate=inbox.room,
        on_disconnect=lambda: lost.append(True),
    )
    with caplog.at_level(logging.DEBUG, logger="paho"), _running(link):
        wait_until(
            lambda: sum("Received PINGRESP" in r.getMessage() for r in caplog.records) >= 2,
            timeout=30,
            message="two PINGRESPs read while stalled",
        )
        assert lost == []
        assert link.connected
        assert inbox.waiting() == 300  # read on, below the hard bound


def test_a_batch_acknowledged_at_once_is_not_sent_again(tmp_path, make_broker, influx, tmp_db):
    settings = _settings(tmp_path, make_broker(), influx, tmp_db)
    payloads = [f"a{i}".encode() for i in range(10)]
    _queue_for(settings, "test-reads-ack", payloads)
    got: list[Inbound] = []
    link = _subscriber(settings, "test-reads-ack", on_message=got.append)
    with _running(link):
        wait_until(lambda: len(got) == 10, message="ten messages")
        link.ack_all(got[:6])
        assert link.flush(10)  # nothing of ours in flight; the acks went with the next write
        wait_until(lambda: not link._client.want_write(), message="the acks written")
    again: list[Inbound] = []
    with _running(_subscriber(settings, "test-reads-ack", on_message=again.append)) as link:
        wait_until(lambda: len(again) >= 4, message="the unacknowledged four")
        link.ack_all(again)
        wait_until(lambda: not link._client.want_write(), message="the acks written")
    assert [m.payload for m in again] == payloads[6:]
    with _running(_subscriber(settings, "test-reads-ack", on_message=again.append)):
        # A round trip on the same session: had any ack been lost, its message came first.
        _publish(settings, [b"marker"])
        wait_until(lambda: again[-1].payload == b"marker", message="the marker")
    assert [m.payload for m in again] == [*payloads[6:], b"marker"]


def test_per_filter_callbacks_are_refused_not_silently_skipped(
    tmp_path, make_broker, influx, tmp_db
):
    # paho's matcher of per-filter callbacks is not walked for each message (the link has
    # one sink), so adding such a callback must fail loudly rather than never be called.
    settings = _settings(tmp_path, make_broker(), influx, tmp_db)
    link = _subscriber(settings, "test-reads-filters")
    with pytest.raises(NotImplementedError):
        link._client.message_callback_add(TOPIC, lambda *args: None)


def test_a_qos_2_message_in_a_batch_is_acknowledged_one_by_one_by_paho(
    tmp_path, make_broker, influx, tmp_db, monkeypatch
):
    # The link subscribes at QoS 1, so a broker that keeps to the protocol never sends QoS 2;
    # one that does gets paho's own PUBREC for it, in order, and no hand-made PUBACK at all.
    link = _subscriber(_settings(tmp_path, make_broker(), influx, tmp_db), "test-reads-qos2")
    sent: list[object] = []
    monkeypatch.setattr(link._client, "ack", lambda mid, qos: sent.append((mid, qos)))
    monkeypatch.setattr(link._client, "_packet_queue", lambda *packet: sent.append("batch"))
    now, stale = link._generation, link._generation - 1
    link.ack_all(
        [
            Inbound(TOPIC, b"a", 1, 5, now, False),
            Inbound(TOPIC, b"b", 2, 6, now, False),
            Inbound(TOPIC, b"c", 0, 7, now, False),  # QoS 0: nothing to acknowledge
            Inbound(TOPIC, b"d", 1, 8, stale, False),  # of a connection gone: not ours to ack
        ]
    )
    assert sent == [(5, 1), (6, 2)]
    sent.clear()
    link.ack_all([Inbound(TOPIC, b"a", 1, 9, now, False), Inbound(TOPIC, b"b", 1, 10, now, False)])
    assert sent == ["batch"]  # QoS 1 only: one write of both
