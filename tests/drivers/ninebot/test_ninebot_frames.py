"""Frame codec on the reference's byte vectors (protocols.md §1.2, §1.6) and under fuzzing."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleet.drivers.ninebot.frames import (
    Frame,
    FrameDecoder,
    Framing,
    checksum,
    encode,
    looks_encrypted,
)
from tests.drivers.emulators.ninebot import ninebot_frame, xiaomi_frame

H = bytes.fromhex

# [CONSTRUCTED] from the real ES capture's values (§1.6.4)
ES_BATTERY_33 = H("5A A5 02 20 3E 04 22 21 00 58 FF")
ES_FW = H("5A A5 02 20 3E 04 1A 39 01 47 FF")
ES_LOCK_WORD = H("5A A5 02 20 3E 04 B2 00 0A DF FE")
ES_B0_CHUNKS = (
    H("5A A5 20 20 3E 04 B0 00 00 00 00 00 0A 25 1D 21 00 00 00 00"),
    H("00 41 02 00 00 00 00 06 00 FA 00 00 00 FF FF 00 00 FF FF 21"),
    H("F9"),
)
# [LIB] NinebotCrypto first message (miauth), §1.6.5
CRYPTO_FIRST = H("5A A5 00 31 CC FE BC 00 00 45 FF 00 00")


def test_checksum_worked_example_includes_the_length_byte():
    assert checksum(H("01 3E 20 01 22 02")) == H("7B FF")


@pytest.mark.parametrize(
    ("frame", "wire"),
    [
        (
            Frame(Framing.NINEBOT, src=0x3E, dst=0x20, cmd=0x01, arg=0x22, payload=b"\x02"),
            "5aa5013e200122027bff",
        ),
        (
            Frame(Framing.XIAOMI, addr=0x20, cmd=0x01, arg=0xB0, payload=b"\x20"),
            "55aa032001b0200bff",
        ),
        # documented requests (§1.6.2, §1.6.3)
        (
            Frame(Framing.NINEBOT, src=0x3D, dst=0x22, cmd=0x01, arg=0x30, payload=b"\x20"),
            "5aa5013d220130204eff",
        ),
        (
            Frame(Framing.XIAOMI, addr=0x22, cmd=0x01, arg=0x40, payload=b"\x1e"),
            "55aa032201401e7bff",
        ),
        (
            Frame(Framing.NINEBOT, src=0x3E, dst=0x20, cmd=0x01, arg=0xB2, payload=b"\x01"),
            "5aa5013e2001b201ecfe",
        ),
    ],
)
def test_encode_matches_documented_bytes(frame, wire):
    assert encode(frame).hex() == wire
    assert FrameDecoder().feed(H(wire), 0.0) == [frame]


def test_encode_rejects_field_out_of_byte_range():
    with pytest.raises(ValueError, match="byte range"):
        encode(Frame(Framing.NINEBOT, src=0x3E, dst=0x20, cmd=0x01, arg=0x100, payload=b""))


def test_es_battery_reply_decodes():
    (f,) = FrameDecoder().feed(ES_BATTERY_33, 0.0)
    assert (f.framing, f.src, f.dst, f.cmd, f.arg, f.payload) == (
        Framing.NINEBOT,
        0x20,
        0x3E,
        0x04,
        0x22,
        b"\x21\x00",
    )


def test_bad_checksum_is_rejected_and_counted():
    dec = FrameDecoder()
    assert dec.feed(H("5A A5 02 20 3E 04 22 21 00 58 00"), 0.0) == []
    assert dec.stats.bad_checksum == 1
    assert dec.stats.frames == 0
    # and the decoder is not stuck: the next good frame comes through
    assert len(dec.feed(ES_BATTERY_33, 0.0)) == 1


def test_leading_garbage_resyncs_on_repeated_header_byte():
    dec = FrameDecoder()
    (f,) = dec.feed(H("00 5A 5A A5 02 20 3E 04 1A 39 01 47 FF"), 0.0)
    assert f.arg == 0x1A
    assert f.payload == H("39 01")
    assert dec.stats.skipped_bytes == 2


def test_back_to_back_frames_in_one_read():
    frames = FrameDecoder().feed(ES_FW + ES_LOCK_WORD, 0.0)
    assert [f.arg for f in frames] == [0x1A, 0xB2]
    assert frames[1].payload == H("00 0A")


def test_ble_chunks_reassemble_into_one_frame():
    dec = FrameDecoder()
    assert dec.feed(ES_B0_CHUNKS[0], 0.0) == []
    assert dec.pending
    assert dec.feed(ES_B0_CHUNKS[1], 0.01) == []
    (f,) = dec.feed(ES_B0_CHUNKS[2], 0.02)
    assert f.arg == 0xB0
    assert len(f.payload) == 32
    assert not dec.pending


def test_byte_by_byte_delivery():
    dec = FrameDecoder()
    wire = b"".join(ES_B0_CHUNKS)
    out = [f for i in range(len(wire)) for f in dec.feed(wire[i : i + 1], 0.0)]
    assert len(out) == 1


def test_truncated_frame_waits_then_times_out():
    dec = FrameDecoder(timeout_s=0.5)
    truncated = H("5A A5 20 20 3E 04 B0") + bytes(10)  # L says 32, only 10 payload bytes
    assert dec.feed(truncated, 0.0) == []
    assert dec.pending
    assert dec.expire(0.4) == []  # still within the timeout: keeps waiting
    assert dec.pending
    assert dec.stats.timeouts == 0
    assert dec.expire(0.6) == []
    assert dec.stats.timeouts == 1
    assert not dec.pending
    # after the timeout a fresh frame decodes at once
    assert len(dec.feed(ES_BATTERY_33, 0.7)) == 1


def test_frame_hidden_inside_a_truncated_one_is_found():
    # A reply cut short, immediately followed by a whole one: the broken frame's
    # length swallows the good one, the checksum fails, and the good one is recovered.
    wire = H("5A A5 20 20 3E 04 B0 00 00 00") + ES_BATTERY_33 + bytes(40)
    frames = FrameDecoder().feed(wire, 0.0)
    assert [f.arg for f in frames] == [0x22]


def test_xiaomi_impossible_length_is_skipped():
    dec = FrameDecoder()
    wire = H("55 AA 01 23 01") + xiaomi_frame(0x23, 0x01, 0x1A, H("34 01"))
    (f,) = dec.feed(wire, 0.0)
    assert f.payload == H("34 01")


def test_mixed_framings_on_one_stream():
    wire = xiaomi_frame(0x23, 0x01, 0x3E, H("18 01")) + ninebot_frame(
        0x22, 0x3D, 0x04, 0x32, H("63 00")
    )
    frames = FrameDecoder().feed(wire, 0.0)
    assert [f.framing for f in frames] == [Framing.XIAOMI, Framing.NINEBOT]


def test_crypto_first_message_looks_encrypted_and_plain_frames_do_not():
    assert looks_encrypted(CRYPTO_FIRST)
    assert looks_encrypted(H("5A A5 00 A5 38 2B 8F 00 00 45 FF 00 00"))
    assert not looks_encrypted(ES_BATTERY_33)
    assert not looks_encrypted(b"".join(ES_B0_CHUNKS))
    # it does not decode as a plain frame either
    assert FrameDecoder().feed(CRYPTO_FIRST, 0.0) == []


frames_st = st.builds(
    lambda ninebot, a, b, cmd, arg, payload: (
        Frame(Framing.NINEBOT, src=a, dst=b, cmd=cmd, arg=arg, payload=payload)
        if ninebot
        else Frame(Framing.XIAOMI, addr=a, cmd=cmd, arg=arg, payload=payload[:253])
    ),
    st.booleans(),
    st.integers(0, 255),
    st.integers(0, 255),
    st.integers(0, 255),
    st.integers(0, 255),
    st.binary(max_size=255),
)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=600), cuts=st.lists(st.integers(0, 600), max_size=10))
def test_fuzz_no_exception_escapes_the_decoder(data, cuts):
    dec = FrameDecoder(timeout_s=0.1)
    points = sorted({0, len(data), *(c for c in cuts if c <= len(data))})
    now = 0.0
    for lo, hi in itertools.pairwise(points):
        for f in dec.feed(data[lo:hi], now):
            assert encode(f) in data  # only bytes that were really there come out
        now += 0.07
        dec.expire(now)
    assert len(dec._buf) <= len(data)


@settings(max_examples=200, deadline=None)
@given(
    frames=st.lists(frames_st, min_size=1, max_size=5),
    garbage=st.binary(max_size=30),
    chunk=st.integers(1, 40),
)
def test_fuzz_encoded_frames_survive_garbage_and_any_chunking(frames, garbage, chunk):
    wire = garbage + b"".join(encode(f) for f in frames)
    dec = FrameDecoder()
    out = [f for i in range(0, len(wire), chunk) for f in dec.feed(wire[i : i + chunk], 0.0)]
    # A header in the garbage may claim a length that swallows our frames: they
    # come out once that false start times out.
    for t in range(1, len(garbage) + 2):
        out += dec.expire(float(t))
    # garbage may itself contain a valid-looking frame, so require our frames as a suffix
    assert out[len(out) - len(frames) :] == frames
