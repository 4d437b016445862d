"""The PT pack BMS's triplet framing: the real vectors of protocols.md §2.1, and properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleet.drivers.segway_pt import registers as reg
from fleet.drivers.segway_pt.triplet import (
    BadTriplet,
    checksum_for,
    checksum_ok,
    encode_triplet,
    parse_triplet,
)
from tests.drivers.emulators.segway_pt import (
    IDENTITY,
    REAL_IDENTITY_DUMP,
    REAL_SENSORS_DUMP,
    REAL_SINGLES,
    SENSORS,
    parse_dump,
)

byte = st.integers(0, 255)
word = st.integers(0, 0xFFFF)
READ_BY_THE_DRIVER = [r.number for r in reg.REGISTERS.values() if r.read]


def real_vectors() -> list[tuple[int, bytes]]:
    return [
        *REAL_SINGLES.items(),
        *((IDENTITY, data) for data in parse_dump(REAL_IDENTITY_DUMP)),
        *((SENSORS, data) for data in parse_dump(REAL_SENSORS_DUMP)),
    ]


def test_every_real_triplet_passes_the_checksum_and_parses() -> None:
    vectors = real_vectors()
    assert len(vectors) == 7 + 38 + 4
    for register, data in vectors:
        triplet = parse_triplet(register, data)
        assert (triplet.checksum, triplet.msb, triplet.lsb) == tuple(data)
    assert parse_triplet(0x03, REAL_SINGLES[0x03]).word == 0x0003
    # The worked example of the notes: 3 + 121 + 0 + 3 + 1 = 128.
    assert checksum_ok(3, 121, 0, 3)


def test_the_withdrawn_rule_would_refuse_real_triplets() -> None:
    # "sum % 8 == 1" was the author's first guess: a decoder using it loses real data.
    refused = [d for _, d in real_vectors() if sum(d) % 8 != 1]
    assert refused


def test_a_triplet_from_another_register_is_refused() -> None:
    with pytest.raises(BadTriplet, match="bad checksum") as caught:
        parse_triplet(0x1E, REAL_SINGLES[0x1D])  # the register is part of the sum
    assert not caught.value.short


@pytest.mark.parametrize("data", [b"", b"\xca", b"\xca\xff", b"\xca\xff\x19\x00"])
def test_a_reply_of_the_wrong_length_is_short_not_a_crash(data: bytes) -> None:
    with pytest.raises(BadTriplet) as caught:
        parse_triplet(0x1D, data)
    assert caught.value.short
    assert f"({len(data)} bytes)" in str(caught.value)


@pytest.mark.parametrize("register", READ_BY_THE_DRIVER)
def test_a_released_or_shorted_bus_never_looks_like_a_triplet(register: int) -> None:
    # SDA left high reads 0xFF, held low 0x00: neither may pass for a value.
    for filler in (0x00, 0xFF):
        with pytest.raises(BadTriplet):
            parse_triplet(register, bytes((filler,) * 3))


@given(register=byte, value=word, high_bits=st.integers(0, 3))
def test_encoded_triplets_parse_back_to_their_word(register, value, high_bits) -> None:
    data = encode_triplet(register, value, high_bits)
    assert data[0] >> 6 == high_bits
    assert parse_triplet(register, data).word == value


@given(register=byte, msb=byte, lsb=byte)
def test_exactly_four_checksum_bytes_are_valid_and_they_differ_by_64(register, msb, lsb) -> None:
    valid = [c for c in range(256) if checksum_ok(register, c, msb, lsb)]
    low = checksum_for(register, msb, lsb)
    assert valid == [low, low + 64, low + 128, low + 192]


@given(register=byte, value=word, position=st.integers(0, 2), delta=st.integers(1, 255))
def test_a_changed_byte_is_caught_unless_the_change_is_a_multiple_of_64(
    register, value, position, delta
) -> None:
    data = bytearray(encode_triplet(register, value))
    data[position] = (data[position] + delta) % 256
    if delta % 64:
        with pytest.raises(BadTriplet):
            parse_triplet(register, bytes(data))
    else:  # bit 6 or 7: the rule's blind spot (hence the double read of the state of charge)
        parse_triplet(register, bytes(data))


@given(register=byte, bit=st.integers(0, 5), position=st.integers(0, 2), value=word)
def test_every_single_bit_error_in_bits_0_to_5_is_caught(register, bit, position, value) -> None:
    data = bytearray(encode_triplet(register, value))
    data[position] ^= 1 << bit
    with pytest.raises(BadTriplet):
        parse_triplet(register, bytes(data))


@given(register=byte, data=st.binary(max_size=8))
def test_parse_never_raises_anything_but_bad_triplet(register, data) -> None:
    try:
        triplet = parse_triplet(register, data)
    except BadTriplet:
        return
    assert len(data) == 3
    assert checksum_ok(register, *data)
    assert triplet.word == data[1] << 8 | data[2]
