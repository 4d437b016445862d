"""NinebotCrypto: the §1.6.5 vector, round trips, refusals, reassembly and the key files."""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESCCM
from hypothesis import given, settings
from hypothesis import strategies as st

from fleet.drivers.ninebot.ble_link import Link
from fleet.drivers.ninebot.crypto import (
    FrameRefused,
    NinebotCrypto,
    Phase,
    Reassembler,
    Refusal,
    name16,
)
from fleet.drivers.ninebot.frames import checksum
from fleet.drivers.ninebot.pairing import KeyStore
from fleet.drivers.ninebot.registers import MODELS
from fleet.drivers.ninebot.session import Exchange

# protocols.md §1.6.5 [LIB]: INIT 0x5B, app 0x3E -> BLE 0x21, before any key exchange.
INIT_PLAIN = bytes.fromhex("5AA5003E215B00")
VECTORS = {
    "NBScooter1234": bytes.fromhex("5AA50031CCFEBC000045FF0000"),
    "MIScooter5678": bytes.fromhex("5AA500A5382B8F000045FF0000"),
}
BLE_KEY = bytes(range(0x10, 0x20))
APP_KEY = bytes(range(0xA0, 0xB0))
READ_B0 = bytes.fromhex("5AA5013E2001B020")  # ESC quick block read, no checksum


def pair(
    name: str = "NBScooter1234", app_key: bytes | None = APP_KEY
) -> tuple[NinebotCrypto, NinebotCrypto]:
    """Driver side and scooter side, both past INIT (and past the app key if given)."""
    app, scooter = NinebotCrypto(name), NinebotCrypto(name)
    for side in (app, scooter):
        side.set_ble_key(BLE_KEY)
        if app_key is not None:
            side.set_app_key(app_key)
    return app, scooter


def plain_frames() -> st.SearchStrategy[bytes]:
    return st.builds(
        lambda head, payload: b"\x5a\xa5" + bytes([len(payload)]) + head + payload,
        st.binary(min_size=4, max_size=4),
        st.binary(max_size=255),
    )


# --- the published vector -------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_first_message_reproduces_the_vector_byte_for_byte(name: str) -> None:
    assert NinebotCrypto(name).encrypt(INIT_PLAIN) == VECTORS[name]


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_first_message_vector_decrypts_to_the_init(name: str) -> None:
    assert NinebotCrypto(name).decrypt(VECTORS[name]) == INIT_PLAIN


def test_the_vector_depends_on_the_name() -> None:
    with pytest.raises(FrameRefused) as caught:
        NinebotCrypto("NBScooter9999").decrypt(VECTORS["NBScooter1234"])
    assert caught.value.reason is Refusal.MAC


def test_first_message_crc_of_the_vector() -> None:
    # ~(3E+21+5B+00) = 0xFF45, stored little-endian after two zero bytes (§1.6.5 layout)
    assert VECTORS["NBScooter1234"][-6:] == bytes.fromhex("000045ff0000")


# --- counter frames -------------------------------------------------------------------------


def test_counter_frame_is_aes_ccm_with_the_described_counter_block() -> None:
    # An independent implementation of the construction crypto.py builds by hand: CCM with
    # nonce counter(4, BE) | ble_key[0:8] | 00, so that its counter blocks are exactly
    # 01 | counter | ble_key[0:8] | 00 00 | block# (§1.7), tag 4 bytes, 5A A5 L as AAD.
    app, _ = pair()
    wire = app.encrypt(READ_B0)
    key = hashlib.sha1(APP_KEY + BLE_KEY).digest()[:16]
    nonce = (1).to_bytes(4, "big") + BLE_KEY[:8] + b"\0"
    sealed = AESCCM(key, tag_length=4).encrypt(nonce, READ_B0[3:], READ_B0[:3])
    assert wire == READ_B0[:3] + sealed + b"\x01\x00"
    assert len(wire) == len(READ_B0) + 6


def test_each_step_of_the_handshake_changes_the_key() -> None:
    init = NinebotCrypto("NBScooter1234")
    keyed, scooter = pair(app_key=None)
    assert keyed.phase is Phase.BLE_KEY
    wire = keyed.encrypt(READ_B0)
    scooter.set_app_key(APP_KEY)  # the scooter moved on; the frame is from the old key
    assert scooter.phase is Phase.APP_KEY
    with pytest.raises(FrameRefused) as caught:
        scooter.decrypt(wire)
    assert caught.value.reason is Refusal.MAC
    assert init.encrypt(READ_B0)[3:7] != keyed.encrypt(READ_B0)[3:7]


def test_the_name_key_is_the_padded_utf8_name() -> None:
    assert name16("NBScooter1234") == b"NBScooter1234\0\0\0"
    assert name16("x" * 20) == b"x" * 16


@settings(max_examples=200, deadline=None)
@given(frames=st.lists(plain_frames(), min_size=1, max_size=5), app_key=st.booleans())
def test_round_trip_both_ways(frames: list[bytes], app_key: bool) -> None:
    app, scooter = pair(app_key=APP_KEY if app_key else None)
    for frame in frames:
        assert scooter.decrypt(app.encrypt(frame)) == frame
        assert app.decrypt(scooter.encrypt(frame)) == frame
    assert app.sent == scooter.received == len(frames)


@settings(max_examples=100, deadline=None)
@given(frame=plain_frames())
def test_first_message_round_trip_any_length(frame: bytes) -> None:
    assert (
        NinebotCrypto("MIScooter5678").decrypt(NinebotCrypto("MIScooter5678").encrypt(frame))
        == frame
    )


@settings(max_examples=150, deadline=None)
@given(frame=plain_frames(), data=st.data())
def test_any_flipped_bit_after_the_header_is_refused(frame: bytes, data: st.DataObject) -> None:
    app, scooter = pair()
    wire = bytearray(app.encrypt(frame))
    at = data.draw(st.integers(3, len(wire) - 1), label="byte")
    wire[at] ^= 1 << data.draw(st.integers(0, 7), label="bit")
    with pytest.raises(FrameRefused) as caught:
        scooter.decrypt(bytes(wire))
    # the counter bytes are checked too: a flipped counter is a replay or a wrong nonce
    assert caught.value.reason in (Refusal.MAC, Refusal.COUNTER)
    assert scooter.received == 0  # a forgery does not move the counter


# --- refusals with reasons ------------------------------------------------------------------


def test_wrong_mac_is_refused_and_a_good_frame_still_passes() -> None:
    app, scooter = pair()
    wire = bytearray(app.encrypt(READ_B0))
    wire[-3] ^= 0x80
    with pytest.raises(FrameRefused) as caught:
        scooter.decrypt(bytes(wire))
    assert caught.value.reason is Refusal.MAC
    assert "MAC" in str(caught.value)
    assert scooter.decrypt(app.encrypt(READ_B0)) == READ_B0


def test_replayed_frame_is_refused_by_its_counter() -> None:
    app, scooter = pair()
    wire = app.encrypt(READ_B0)
    assert scooter.decrypt(wire) == READ_B0
    with pytest.raises(FrameRefused) as caught:
        scooter.decrypt(wire)
    assert caught.value.reason is Refusal.COUNTER
    assert "replayed or stale" in caught.value.detail


def test_older_frame_is_refused_and_a_gap_is_accepted() -> None:
    app, scooter = pair()
    first, second, third = (app.encrypt(READ_B0) for _ in range(3))
    assert scooter.decrypt(third) == READ_B0  # the two before were lost on the air
    assert scooter.received == 3
    for old in (first, second):
        with pytest.raises(FrameRefused) as caught:
            scooter.decrypt(old)
        assert caught.value.reason is Refusal.COUNTER


def test_counter_wraps_past_16_bits() -> None:
    app, scooter = pair()
    app.sent = scooter.received = 0xFFFE
    wires = [app.encrypt(READ_B0) for _ in range(4)]
    for wire in wires:
        assert scooter.decrypt(wire) == READ_B0
    # 0x10000 is skipped: a 0 on the wire would mean the CRC-only first-message format
    assert [int.from_bytes(w[-2:], "little") for w in wires] == [0xFFFF, 1, 2, 3]
    assert scooter.received == 0x10003


@pytest.mark.parametrize("cut", [1, 5, 12])
def test_truncated_frame_is_refused(cut: int) -> None:
    app, scooter = pair()
    wire = app.encrypt(READ_B0)
    with pytest.raises(FrameRefused) as caught:
        scooter.decrypt(wire[:-cut])
    assert caught.value.reason is Refusal.TRUNCATED


def test_frame_with_trailing_bytes_or_a_foreign_header_is_malformed() -> None:
    app, scooter = pair()
    wire = app.encrypt(READ_B0)
    for bad in (wire + b"\0", b"\x55\xaa" + wire[2:]):
        with pytest.raises(FrameRefused) as caught:
            scooter.decrypt(bad)
        assert caught.value.reason is Refusal.MALFORMED


def test_gen3_frame_is_named_as_such() -> None:
    with pytest.raises(FrameRefused) as caught:
        NinebotCrypto("x").decrypt(b"\x5a\xb5" + bytes(14))
    assert caught.value.reason is Refusal.GEN3


def test_unauthenticated_first_message_format_is_refused_after_init() -> None:
    # Counter 0 is the CRC-only format: accepting it later would bypass the MAC.
    _, scooter = pair()
    forged = NinebotCrypto("NBScooter1234").encrypt(INIT_PLAIN)
    with pytest.raises(FrameRefused) as caught:
        scooter.decrypt(forged)
    assert caught.value.reason is Refusal.COUNTER


def test_counter_frame_before_init_is_refused() -> None:
    app, _ = pair()
    with pytest.raises(FrameRefused) as caught:
        NinebotCrypto("NBScooter1234").decrypt(app.encrypt(READ_B0))
    assert caught.value.reason is Refusal.COUNTER


def test_encrypt_takes_a_frame_without_checksum_only() -> None:
    with_checksum = READ_B0 + checksum(READ_B0[2:])
    with pytest.raises(ValueError, match="without checksum"):
        NinebotCrypto("x").encrypt(with_checksum)


# --- reassembly of notifications ------------------------------------------------------------


def test_reassembler_joins_20_byte_notifications_and_resyncs() -> None:
    app, scooter = pair()
    one = scooter.encrypt(READ_B0[:2] + bytes([32]) + READ_B0[3:7] + bytes(range(32)))
    two = scooter.encrypt(READ_B0)
    r = Reassembler()
    got: list[bytes] = []
    stream = b"\x01\x02" + one + two
    for i in range(0, len(stream), 20):
        got += r.feed(stream[i : i + 20])
    assert got == [one, two]
    assert [len(app.decrypt(w)) for w in got] == [39, 8]


def test_reassembler_drops_a_frame_whose_middle_was_lost() -> None:
    _, scooter = pair()
    long = scooter.encrypt(b"\x5a\xa5\x20" + bytes(4) + bytes(32))
    short = scooter.encrypt(READ_B0)
    r = Reassembler()
    assert r.feed(long[:20]) == []
    # long[20:40] never arrives; the next frame starts a notification of its own
    assert r.feed(short) == [short]
    assert r.dropped == 1


# --- the key files --------------------------------------------------------------------------


def test_key_store_creates_0700_directory_and_0600_file(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "state" / "keys")
    assert store.load("D4:3D:7E:12:34:56") is None
    store.save("D4:3D:7E:12:34:56", APP_KEY)
    path = store.path("d4:3d:7e:12:34:56")
    assert path.name == "D4-3D-7E-12-34-56.key"
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert store.load("d4:3d:7e:12:34:56") == APP_KEY
    store.save("D4:3D:7E:12:34:56", BLE_KEY)  # replaced atomically, no temp file left
    assert store.load("D4:3D:7E:12:34:56") == BLE_KEY
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_key_store_ignores_a_damaged_file_without_showing_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = KeyStore(tmp_path)
    secret_looking = "a1" * 15 + "zz"
    store.path("AA:BB:CC:DD:EE:FF").write_text(secret_looking)
    with caplog.at_level(logging.WARNING):
        assert store.load("AA:BB:CC:DD:EE:FF") is None
    assert "not 32 hex digits" in caplog.text
    assert secret_looking not in caplog.text


def test_key_store_warns_about_an_open_directory(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    os.chmod(open_dir, 0o755)
    with caplog.at_level(logging.WARNING):
        KeyStore(open_dir).save("AA:BB:CC:DD:EE:FF", APP_KEY)
    assert "make it 0700" in caplog.text
    assert APP_KEY.hex() not in caplog.text


@settings(max_examples=200, deadline=None)
@given(
    chunks=st.lists(
        st.one_of(
            st.binary(max_size=40),
            st.binary(max_size=30).map(lambda b: b"\x5a\xa5" + b),
            st.binary(max_size=30).map(lambda b: b"\x5a\xb5" + b),
        ),
        max_size=12,
    )
)
def test_hostile_notifications_never_raise_and_never_reach_the_exchange(
    chunks: list[bytes],
) -> None:
    async def nowhere(_data: bytes) -> None:
        raise AssertionError("nothing is sent")

    app, _ = pair()
    exchange = Exchange(MODELS["es"], 0x3E, nowhere, 0.1)
    link = Link("seg-x", nowhere)
    link.use_crypto(app)
    link.exchange = exchange
    for chunk in chunks:
        link.on_notify(bytearray(chunk))
    # random bytes never carry a valid MAC: nothing was decoded into a register
    assert all(not bank.words for bank in exchange.banks.values())
    assert app.received == 0
