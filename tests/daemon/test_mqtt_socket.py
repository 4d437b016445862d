"""The read buffer under paho and the inbox's gate, on their own (real sockets)."""

from __future__ import annotations

import socket
import threading

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from fleet.daemon.mqtt_inbox import Inbox
from fleet.daemon.mqtt_socket import CHUNK, PUBACK, ReadBuffered, pubacks
from tests.harness.waiting import wait_until


@pytest.fixture
def pair():
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    yield ReadBuffered(ours), theirs
    ours.close()
    theirs.close()


def test_small_reads_come_from_one_large_read(pair):
    buffered, peer = pair
    peer.sendall(b"\x30\x05hello" + b"\x40\x02\x00\x01")
    assert buffered.recv(1) == b"\x30"
    assert buffered.pending() == 10  # the rest of what one recv() took, no syscall needed
    assert buffered.recv(1) == b"\x05"
    assert buffered.recv(5) == b"hello"
    assert buffered.recv(100) == b"\x40\x02\x00\x01"  # never more than is there
    assert buffered.pending() == 0
    with pytest.raises(BlockingIOError):  # empty: as the socket says it, for paho
        buffered.recv(1)


def test_a_read_larger_than_the_buffer_comes_in_parts(pair):
    buffered, peer = pair
    data = bytes(range(256)) * (3 * CHUNK // 256 + 1)
    sender = threading.Thread(target=peer.sendall, args=(data,))
    sender.start()
    got = b""
    while len(got) < len(data):
        try:
            part = buffered.recv(len(data) - len(got))
        except BlockingIOError:
            continue
        assert 0 < len(part) <= CHUNK
        got += part
    sender.join()
    assert got == data


def test_the_peer_closing_reads_as_empty(pair):
    buffered, peer = pair
    peer.sendall(b"ab")
    peer.shutdown(socket.SHUT_WR)
    assert buffered.recv(2) == b"ab"
    wait_until(lambda: buffered.recv(1) == b"", message="end of stream")


def test_sends_and_options_are_the_sockets(pair):
    buffered, peer = pair
    assert buffered.send(b"xyz") == 3
    assert peer.recv(3) == b"xyz"
    # What paho and the link ask of a socket besides reading goes to the socket itself.
    assert buffered.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE) == socket.SOCK_STREAM
    assert buffered.fileno() >= 0


def test_the_inbox_gate_closes_at_its_bound_and_opens_when_taken():
    inbox: Inbox[int] = Inbox(bound=3, hard_bound=3, max_pause_s=3600)
    for i in range(3):
        assert inbox.room(0.0)
        inbox.put(i)
    assert not inbox.room(0.01)
    assert inbox.pauses == 1
    opened = threading.Event()

    def paho() -> None:
        if inbox.room(30):
            opened.set()

    waiter = threading.Thread(target=paho)
    waiter.start()
    assert inbox.take(2, timeout=1) == [0, 1]  # room: paho's wait ends now, not at 30 s
    waiter.join(10)
    assert opened.is_set()
    assert inbox.take(5, timeout=0.01) == [2]
    assert inbox.take(5, timeout=0.01) == []


def test_a_long_pause_reads_on_up_to_the_hard_bound():
    inbox: Inbox[int] = Inbox(bound=2, hard_bound=4, max_pause_s=0.05)
    inbox.put(0)
    inbox.put(1)
    assert not inbox.room(0.0)  # the pause starts
    wait_until(lambda: inbox.room(0.0), message="the long pause reads on")
    inbox.put(2)
    assert inbox.room(0.0)
    inbox.put(3)
    assert not inbox.room(0.01)  # the hard bound: nothing more, however long
    assert inbox.most == 4


def _paho_acks(protocol: MQTTProtocolVersion, mids: list[int]) -> list[tuple[int, bytes]]:
    """paho's own `ack` of each message, caught where it would queue the packet."""
    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=protocol, manual_ack=True)
    queued: list[tuple[int, bytes]] = []

    def catch(command: int, packet: bytes, mid: int, qos: int, info: object = None) -> None:
        queued.append((command, bytes(packet)))

    client._packet_queue = catch  # type: ignore[method-assign,assignment]
    for mid in mids:
        client.ack(mid, 1)
    return queued


@pytest.mark.parametrize("protocol", [MQTTProtocolVersion.MQTTv5, MQTTProtocolVersion.MQTTv311])
def test_one_write_of_pubacks_holds_the_bytes_paho_queues_for_each(protocol):
    mids = [1, 2, 255, 256, 0x7FFF, 0xABCD, 0xFFFF]
    queued = _paho_acks(protocol, mids)
    assert {command for command, _ in queued} == {PUBACK}
    assert pubacks(mids) == b"".join(packet for _, packet in queued)
