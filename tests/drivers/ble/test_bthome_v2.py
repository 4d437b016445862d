"""The BTHome v2 decoder alone: reference vectors, the object table, encryption, hostile bytes.

The encoder here is the test's own, written from the format (bthome.io/format) with
`struct`, so the round trips check the decoder's sizes, byte order and signs against an
independent writer; the absolute values come from the reference vectors (protocols.md §3.2).
"""

from __future__ import annotations

import struct

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESCCM
from hypothesis import given, settings
from hypothesis import strategies as st

from fleet.drivers.ble.bthome_v2 import (
    LENGTH_PREFIXED,
    OBJECTS,
    BTHomeError,
    Measurement,
    Undecryptable,
    decode,
)

MAC = "A4:C1:38:8D:18:B2"
KEY = bytes.fromhex("231d39c1d7cc1ab1aee224cd096db932")

# --- the test's encoder ---------------------------------------------------------------------

_FORMATS = {(1, False): "<B", (1, True): "<b", (2, False): "<H", (2, True): "<h",
            (4, False): "<I", (4, True): "<i"}  # fmt: skip


def pack(object_id: int, raw: int) -> bytes:
    """One object: its id and the raw integer in the table's size and sign."""
    meaning = OBJECTS[object_id]
    if meaning.size == 3:  # struct has no 24-bit format
        value = struct.pack("<i" if meaning.signed else "<I", raw)[:3]
    else:
        value = struct.pack(_FORMATS[meaning.size, meaning.signed], raw)
    return bytes([object_id]) + value


def seal(
    objects: bytes, mac: str = MAC, key: bytes = KEY, counter: int = 7, info: int = 0x41
) -> bytes:
    """AES-CCM, 4-byte MIC, nonce MAC | D2 FC | device info | counter (bthome.io/format)."""
    count = counter.to_bytes(4, "little")
    nonce = bytes.fromhex(mac.replace(":", "")) + b"\xd2\xfc" + bytes([info]) + count
    sealed = AESCCM(key, tag_length=4).encrypt(nonce, objects, None)
    return bytes([info]) + sealed[:-4] + count + sealed[-4:]


def values(payload: bytes, **kwargs: bytes | None) -> dict[str, float | bool]:
    """name -> first value, as the drivers read them."""
    out: dict[str, float | bool] = {}
    for m in decode(payload, MAC, **kwargs).measurements:
        out.setdefault(m.name, m.value)
    return out


# --- reference vectors ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload_hex", "expected"),
    [
        ("4002c40903bf13", {"temperature": 25.0, "humidity": 50.55}),  # bthome.io example
        (
            "40000901 5d 025d09 03b718",
            {"packet_id": 9.0, "battery": 93.0, "temperature": 23.97, "humidity": 63.27},
        ),
        ("400c020c", {"voltage": 3.074}),
        ("404a020c", {"voltage": 307.4}),
        ("40015d0ca40d45f600", {"battery": 93.0, "voltage": 3.492, "temperature": 24.6}),
        ("405dc8fe", {"current": -0.312}),
        ("40 1600 1601".replace(" ", ""), {"battery_charging": False}),  # repeated: first one
        ("401601", {"battery_charging": True}),
        ("4057f6 580f".replace(" ", ""), {"temperature": -10.0}),
        ("40580f", {"temperature": 5.2}),  # 15 x 0.35 = 5.25, kept to one decimal
        ("4400 2a".replace(" ", ""), {"packet_id": 42.0}),  # trigger-based device
        ("401602", {"battery_charging": True}),  # any non-zero byte is "on"
        ("4002ffff", {"temperature": -0.01}),
        ("4045f6ff", {"temperature": -1.0}),
        ("405d1801", {"current": 0.28}),
        # Examples of the bthome.io object list (as quoted in WatchFlower docs/bthome-ble-api.md):
        # they pin sizes and factors the round trips take from the table itself.
        ("40 4b138a14".replace(" ", ""), {"gas": 1346.067}),
        ("40 0b021b00".replace(" ", ""), {"power": 69.14}),
        ("40 05138a14".replace(" ", ""), {"illuminance": 13460.67}),
        ("40 04138a01".replace(" ", ""), {"pressure": 1008.83}),
        ("40 424e3400".replace(" ", ""), {"duration": 13.39}),
        ("40 3d0960".replace(" ", ""), {"count": 24585.0}),
        ("40 3e2a2c0960".replace(" ", ""), {"count": 1611213866.0}),
        ("40 4d12138a14".replace(" ", ""), {"energy": 344593.17}),
        ("40 2e23 3f020c".replace(" ", ""), {"humidity": 35.0, "rotation": 307.4}),
    ],
)
def test_reference_payloads(payload_hex, expected):
    payload = decode(bytes.fromhex(payload_hex.replace(" ", "")), MAC)
    assert payload.stopped is None
    assert {m.name: m.value for m in reversed(payload.measurements)} == expected


def test_the_device_info_byte():
    assert decode(bytes.fromhex("40015d"), MAC).info.trigger_based is False
    info = decode(bytes.fromhex("44015d"), MAC).info
    assert (info.version, info.encrypted, info.trigger_based) == (2, False, True)


@pytest.mark.parametrize(("first", "version"), [(0x20, 1), (0x60, 3), (0x00, 0), (0xE1, 7)])
def test_other_versions_are_refused_by_name(first, version):
    with pytest.raises(BTHomeError, match=f"BTHome version {version}, only version 2"):
        decode(bytes([first, 0x01, 0x5D]), MAC)


def test_empty_service_data_is_refused():
    with pytest.raises(BTHomeError, match="empty service data"):
        decode(b"", MAC)


# --- the object table -----------------------------------------------------------------------


# protocols.md §3.2, "Object IDs useful for telemetry": id -> (bytes, signed, factor).
SPEC = {0x00: (1, False, 1), 0x01: (1, False, 1), 0x02: (2, True, 0.01), 0x03: (2, False, 0.01),
        0x0C: (2, False, 0.001), 0x4A: (2, False, 0.1), 0x43: (2, False, 0.001),
        0x5D: (2, True, 0.001), 0x45: (2, True, 0.1), 0x57: (1, True, 1), 0x58: (1, True, 0.35),
        0x0B: (3, False, 0.01), 0x5C: (4, True, 0.01), 0x0A: (3, False, 0.001),
        0x4D: (4, False, 0.001), 0x40: (2, False, 1), 0x41: (2, False, 0.1),
        0x44: (2, False, 0.01), 0x42: (3, False, 0.001), 0x50: (4, False, 1),
        0x15: (1, False, 1), 0x16: (1, False, 1), 0x1F: (1, False, 1), 0x0F: (1, False, 1)}  # fmt: skip


def test_the_table_agrees_with_the_protocol_notes():
    assert {i: (OBJECTS[i].size, OBJECTS[i].signed, OBJECTS[i].factor) for i in SPEC} == SPEC
    assert {i for i in (0x15, 0x16, 0x1F, 0x0F) if OBJECTS[i].kind == "binary"} == {
        0x15,
        0x16,
        0x1F,
        0x0F,
    }
    assert OBJECTS[0x53].size == OBJECTS[0x54].size == LENGTH_PREFIXED
    # bthome.io: the binary sensors are ids 0x0F-0x11 and 0x15-0x2D, one byte each.
    binaries = [*range(0x0F, 0x12), *range(0x15, 0x2E)]
    assert all((OBJECTS[i].kind, OBJECTS[i].size) == ("binary", 1) for i in binaries)


def test_the_table_gives_every_id_a_size_and_a_resolution():
    assert all(m.size in (1, 2, 3, 4) or m.size == LENGTH_PREFIXED for m in OBJECTS.values())
    decimals = {0x01: 0, 0x02: 2, 0x0C: 3, 0x45: 1, 0x58: 1, 0x62: 6}
    assert {i: OBJECTS[i].decimals for i in decimals} == decimals


def test_objects_we_do_not_report_are_stepped_over():
    # humidity, illuminance (3 bytes), a button event, text and raw (length-prefixed), then ours
    body = "03bf13 05138a14 3a01 5303616263 5402ffff 015d".replace(" ", "")
    payload = decode(bytes.fromhex("40" + body), MAC)
    assert payload.stopped is None
    assert payload.first("battery") == 93.0
    assert payload.first("humidity") == 50.55
    assert payload.first("text") is None  # skipped, not reported


def test_an_unknown_id_stops_with_the_reason_and_keeps_what_came_before():
    payload = decode(bytes.fromhex("40015d ff0102 0ca40d".replace(" ", "")), MAC)
    assert payload.measurements == (Measurement(0x01, "battery", 93.0),)
    assert payload.stopped == (
        "object 0xFF at byte 2 of the objects: unknown id, so of unknown size: "
        "the last 6 bytes not read"
    )


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ("015d0ca4", "object 0x0C at byte 2 of the objects: 2 value bytes needed, 1 left"),
        ("015d53", "object 0x53 at byte 2 of the objects: its length byte is missing"),
        ("015d530561", "object 0x53 at byte 2 of the objects: 5 value bytes needed, 1 left"),
    ],
)
def test_a_cut_object_stops_with_the_reason(body, why):
    payload = decode(bytes.fromhex("40" + body), MAC)
    assert payload.first("battery") == 93.0
    assert payload.stopped == why


def test_a_mac_in_the_payload_is_stepped_over():
    reversed_mac = bytes.fromhex(MAC.replace(":", ""))[::-1]
    assert values(b"\x42" + reversed_mac + bytes.fromhex("015d")) == {"battery": 93.0}
    with pytest.raises(BTHomeError, match="announces a MAC address"):
        decode(b"\x42" + reversed_mac[:3], MAC)


# --- encryption -----------------------------------------------------------------------------


def test_an_encrypted_payload_opens_with_its_key():
    payload = decode(seal(bytes.fromhex("015d0ca40d")), MAC, bindkey=KEY)
    assert payload.info.encrypted
    assert {m.name: m.value for m in payload.measurements} == {"battery": 93.0, "voltage": 3.492}


def test_the_nonce_uses_the_mac_sent_in_the_payload_when_there_is_one():
    other = "11:22:33:44:55:66"
    sealed = seal(bytes.fromhex("015d"), mac=other, info=0x43)
    with_mac = sealed[:1] + bytes.fromhex(other.replace(":", ""))[::-1] + sealed[1:]
    assert values(with_mac, bindkey=KEY) == {"battery": 93.0}


def _flip(payload: bytes, at: int) -> bytes:
    changed = bytearray(payload)
    # In the device-info byte flip "trigger-based": same layout, another nonce.
    changed[at] ^= 0x01 if at else 0x04
    return bytes(changed)


@pytest.mark.parametrize(
    ("payload", "key", "why"),
    [
        (seal(bytes.fromhex("015d")), None, "no bind key"),
        (seal(bytes.fromhex("015d")), bytes(16), "does not decrypt it"),
        (seal(bytes.fromhex("015d"), mac="11:22:33:44:55:66"), KEY, "does not decrypt it"),
        (_flip(seal(bytes.fromhex("015d")), 1), KEY, "does not decrypt it"),  # ciphertext
        (_flip(seal(bytes.fromhex("015d")), -6), KEY, "does not decrypt it"),  # counter
        (_flip(seal(bytes.fromhex("015d")), 0), KEY, "does not decrypt it"),  # device info
        (bytes.fromhex("41aabbccdd"), KEY, "shorter than its counter and MIC"),
    ],
)
def test_encrypted_payloads_without_the_right_key_are_undecryptable(payload, key, why):
    with pytest.raises(Undecryptable, match=why):
        decode(payload, MAC, bindkey=key)


def test_a_bind_key_of_the_wrong_size_is_the_callers_error():
    with pytest.raises(ValueError, match="16 bytes, not 4") as caught:
        decode(b"\x40", MAC, bindkey=b"abcd")
    assert not isinstance(caught.value, BTHomeError)


# --- properties -----------------------------------------------------------------------------


def _raw(object_id: int) -> st.SearchStrategy[int]:
    meaning = OBJECTS[object_id]
    bits = 8 * meaning.size
    if meaning.kind == "binary":
        return st.integers(0, 1)
    if meaning.signed:
        return st.integers(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    return st.integers(0, 2**bits - 1)


_REPORTED = sorted(i for i, m in OBJECTS.items() if m.kind != "skip")
objects = st.lists(st.sampled_from(_REPORTED).flatmap(lambda i: st.tuples(st.just(i), _raw(i))),
                   max_size=8)  # fmt: skip


def _expected(object_id: int, raw: int) -> Measurement:
    meaning = OBJECTS[object_id]
    if meaning.kind == "binary":
        return Measurement(object_id, meaning.name, raw == 1)
    return Measurement(object_id, meaning.name, round(raw * meaning.factor, meaning.decimals))


@settings(max_examples=300, deadline=None)
@given(objects, st.booleans(), st.integers(0, 2**32 - 1))
def test_encode_decode_round_trip(pairs, encrypted, counter):
    body = b"".join(pack(i, raw) for i, raw in pairs)
    payload = seal(body, counter=counter) if encrypted else b"\x40" + body
    decoded = decode(payload, MAC, bindkey=KEY if encrypted else None)
    assert decoded.stopped is None
    assert decoded.measurements == tuple(_expected(i, raw) for i, raw in pairs)


@settings(max_examples=300, deadline=None)
@given(objects, st.data())
def test_a_cut_payload_gives_a_prefix_of_the_values_and_says_so(pairs, data):
    body = b"".join(pack(i, raw) for i, raw in pairs)
    cut = data.draw(st.integers(0, len(body)))
    decoded = decode(b"\x40" + body[:cut], MAC)
    full = tuple(_expected(i, raw) for i, raw in pairs)
    assert decoded.measurements == full[: len(decoded.measurements)]
    assert (decoded.stopped is None) == (cut in _boundaries(pairs))


def _boundaries(pairs: list[tuple[int, int]]) -> set[int]:
    at, out = 0, {0}
    for i, _ in pairs:
        at += 1 + OBJECTS[i].size
        out.add(at)
    return out


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=48), st.sampled_from([None, KEY, bytes(16)]))
def test_any_bytes_give_values_or_a_decode_error(payload, key):
    try:
        decoded = decode(payload, MAC, bindkey=key)
    except BTHomeError as exc:
        reason = str(exc)
        assert reason  # every refusal says why
        return
    for m in decoded.measurements:
        assert OBJECTS[m.object_id].name == m.name


@settings(max_examples=300, deadline=None)
@given(objects, st.binary(max_size=16))
def test_values_before_garbage_stand(pairs, garbage):
    body = b"".join(pack(i, raw) for i, raw in pairs)
    decoded = decode(b"\x40" + body + garbage, MAC)
    expected = tuple(_expected(i, raw) for i, raw in pairs)
    assert decoded.measurements[: len(expected)] == expected
