"""The smbus2 adapter against an emulated pack on a fake bus: re-reads, counters, reasons."""

from __future__ import annotations

import pytest

from fleet.drivers.segway_pt.link import LinkStats, PackLink, PackUnreadable
from tests.drivers.emulators.segway_pt import (
    CELLS,
    IDENTITY,
    PACK_ADDRESS,
    REAL_SENSORS_C,
    SENSORS,
    SOC,
    EmulatedPack,
    FakeBus,
    FakeMux,
    adc_for,
    default_cells,
    triplet,
)


def link(
    name: str = "A", bus: int | str = 1, retries: int = 3, mux: tuple[int, int] | None = None
) -> PackLink:
    return PackLink(name, bus, address=PACK_ADDRESS, mux=mux, retries=retries, stats=LinkStats())


def on_bus(pack: EmulatedPack, path: str = "/dev/i2c-1") -> FakeBus:
    return FakeBus(path, {PACK_ADDRESS: pack})


def test_a_real_pack_reads_as_the_notes_say() -> None:
    pack = EmulatedPack.real()
    bus = on_bus(pack)
    values = link().read(bus)
    assert values.soc_pct == 25.0
    assert values.soc_raw == 0xFF19  # the whole word kept, MSB and all
    assert values.serial == "C01061400098"
    assert values.revision == "AH"
    assert values.current_a == 0.0
    assert not values.charging
    assert values.temps_c[1:] == REAL_SENSORS_C
    assert values.cell_raw == tuple(adc_for(v) for v in default_cells())
    assert values.spread_v == pytest.approx(5 * 8 / 1023)
    # Read-only: the only bytes ever written are register numbers the driver reads.
    assert {value for _, value in bus.writes} == {SOC, 0xD4, 0x95, SENSORS, CELLS, IDENTITY}
    assert pack.reads[SOC] == 2  # the state of charge is confirmed by a second read


def test_lists_are_read_by_their_index_wherever_they_start() -> None:
    pack = EmulatedPack.real()
    pack.positions = {IDENTITY: 0x21, SENSORS: 3, CELLS: 17}  # a previous reader stopped there
    values = link().read(on_bus(pack))
    assert values.serial == "C01061400098"
    assert values.temps_c[1:] == REAL_SENSORS_C
    assert pack.reads[IDENTITY] == 38  # 0x21..0x25, then 0x00..0x20
    # From the start of the list, the serial is complete after its last character, 0x20.
    pack.positions = {}
    link().read(on_bus(pack))
    assert pack.reads[IDENTITY] == 38 + 0x21


def test_bad_checksums_and_short_replies_are_re_read_counted_and_never_used() -> None:
    pack = EmulatedPack.made(soc_pct=40, serial="C01061400117", sensors_c=(30.0, 21.0, 22.0, 23.0))
    pack.corrupt, pack.short = 3, 3  # all on the state of charge, the first register read
    the_link = link(retries=6)
    values = the_link.read(on_bus(pack))
    assert values.soc_pct == 40.0
    assert values.temps_c[1] == 30.0
    assert the_link.stats.short_replies == 3
    assert the_link.stats.bad_checksums == 3
    assert the_link.stats.gave_up == 0


def test_noise_on_every_seventh_reply_still_reads_every_value_exactly() -> None:
    pack = EmulatedPack.real()
    pack.noise_every = 7
    the_link = link()
    values = the_link.read(on_bus(pack))
    clean = link().read(on_bus(EmulatedPack.real()))
    assert values == clean
    assert the_link.stats.bad_checksums >= 10


def test_a_flipped_bit_6_passes_the_checksum_but_not_the_double_read() -> None:
    pack = EmulatedPack.real()
    pack.soc_glitches = 1  # 25 % (0x19) read as 89 % (0x59) with a valid checksum
    the_link = link()
    assert the_link.read(on_bus(pack)).soc_pct == 25.0
    assert the_link.stats.disagreements == 1
    assert pack.reads[SOC] == 3


def test_a_pack_that_keeps_garbling_is_given_up_with_the_reason() -> None:
    pack = EmulatedPack.real()
    pack.corrupt = 4
    the_link = link(name="B", bus=2, retries=3)
    with pytest.raises(PackUnreadable) as caught:
        the_link.read(on_bus(pack, "/dev/i2c-2"))
    assert str(caught.value) == (
        "pack B on /dev/i2c-2 at 0x31 gives corrupt replies: register 0x1d (state of charge): "
        "no two reads in a row agreed (3 re-reads)"
    )
    assert pack.reads[SOC] == 4  # bounded: 1 + 3 re-reads
    assert the_link.stats.gave_up == 1


def test_a_list_that_never_completes_is_given_up() -> None:
    pack = EmulatedPack.real()
    pack.lists[CELLS] = pack.lists[CELLS][:20]  # three groups never come
    with pytest.raises(
        PackUnreadable, match=r"register 0x96 \(cell-group voltages\): 3 of 23 entries missing"
    ):
        link(retries=2).read(on_bus(pack))
    assert pack.reads[CELLS] == 23 * (1 + 2)  # one full pass and two more


def test_stray_list_entries_are_counted_and_skipped() -> None:
    pack = EmulatedPack.real()
    sensors = pack.lists[SENSORS]
    pack.lists[SENSORS] = [*sensors[:2], triplet(SENSORS, 0x5168), *sensors[2:]]  # index 5
    the_link = link()
    assert the_link.read(on_bus(pack)).temps_c[1:] == REAL_SENSORS_C
    assert the_link.stats.stray_entries == 1


def test_a_pack_without_12_v_does_not_answer() -> None:
    pack = EmulatedPack.real()
    pack.answering = False
    with pytest.raises(PackUnreadable) as caught:
        link(name="B", bus=2).read(on_bus(pack, "/dev/i2c-2"))
    assert str(caught.value) == (
        "pack B does not answer on /dev/i2c-2 at 0x31 - is 12 V on BATTERY ENABLE? "
        "([Errno 121] Remote I/O error)"
    )
    assert isinstance(caught.value.__cause__, OSError)


def test_packs_behind_a_multiplexer_are_selected_before_each_read() -> None:
    a, b = EmulatedPack.real(), EmulatedPack.made(soc_pct=70, serial="C01061400117")
    mux = FakeMux(0x70, {0: a, 5: b})
    bus = FakeBus("/dev/i2c-1", mux=mux)
    assert link("A", mux=(0x70, 0)).read(bus).serial == "C01061400098"
    assert link("B", mux=(0x70, 5)).read(bus).serial == "C01061400117"
    assert [w for w in bus.writes if w[0] == 0x70] == [(0x70, 0x01), (0x70, 0x20)]
    mux.answering = False
    with pytest.raises(
        PackUnreadable, match=r"^the multiplexer at 0x70 on /dev/i2c-1 does not answer \(pack B: "
    ):
        link("B", mux=(0x70, 5)).read(bus)
    mux.answering = True
    b.answering = False
    with pytest.raises(
        PackUnreadable,
        match=r"^pack B does not answer on /dev/i2c-1 via multiplexer 0x70 channel 5 at 0x31 - ",
    ):
        link("B", mux=(0x70, 5)).read(bus)
