"""NMEA GPS: decoder tables on the reference vectors, fuzzing, and the driver on a real PTY."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from fleet.drivers.gps.config import NmeaGpsConfig
from fleet.drivers.gps.decode import Fix, NmeaDecoder
from fleet.drivers.gps.nmea import NmeaGps
from tests.drivers.emulators.gps import NmeaTalker, gga, rmc, sentence
from tests.drivers.emulators.recording import RecordingSink, until

pytestmark = pytest.mark.integration  # real pseudo-terminals

# protocols.md §4.2
GGA_MUNICH = "$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47"
RMC_MUNICH = "$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A"
RMC_VANCOUVER = "$GPRMC,225446,A,4916.45,N,12311.12,W,000.5,054.7,191194,020.3,E*68"
GGA_SOUTH = "$GPGGA,184353.07,1929.045,S,02410.506,E,1,04,2.6,100.00,M,-33.9,M,,0000*6D"
GNRMC = "$GNRMC,154706.00,A,4724.5288205,N,00937.0842621,E,0.01,144.09,141114,0.00,E,A*10"
GGA_NO_FIX_REAL = "$GPGGA,132411.60,5231.91297,N,00516.97745,E,0,00,2.3,5.7,M,46.6,M,,*63"
RMC_VOID = "$GPRMC,123520,V,,,,,,,230394,,,N*5B"
GGA_BAD_CHECKSUM = "$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*48"


def decode(*lines: str) -> tuple[NmeaDecoder, list[Fix]]:
    dec = NmeaDecoder()
    fixes = [fix for line in lines for fix in dec.feed_line(line)]
    return dec, fixes + dec.flush()


@pytest.mark.parametrize(
    ("line", "lat", "lon", "accuracy", "speed", "heading"),
    [
        (GGA_MUNICH, 48.1173, 11.5166667, 4.5, None, None),
        (RMC_MUNICH, 48.1173, 11.5166667, None, 41.485, 84.4),
        (RMC_VANCOUVER, 49.2741667, -123.1853333, None, 0.926, 54.7),
        (GGA_SOUTH, -19.4840833, 24.1751, 13.0, None, None),
        (GNRMC, 47.4088137, 9.618071, None, 0.019, 144.09),
    ],
)
def test_reference_sentences_decode(line, lat, lon, accuracy, speed, heading):
    dec, fixes = decode(line)
    assert len(fixes) == 1
    loc = fixes[0].location
    assert loc.lat == pytest.approx(lat, abs=1e-6)
    assert loc.lon == pytest.approx(lon, abs=1e-6)
    assert loc.accuracy_m == accuracy
    assert loc.speed_kmh == (None if speed is None else pytest.approx(speed, abs=1e-3))
    assert loc.heading_deg == (None if heading is None else pytest.approx(heading))
    assert dec.stats.fixes == 1


def test_gga_and_rmc_of_one_epoch_merge_into_one_fix():
    _, fixes = decode(GGA_MUNICH, RMC_MUNICH)
    assert len(fixes) == 1
    loc = fixes[0].location
    assert (loc.accuracy_m, loc.speed_kmh, loc.heading_deg) == (4.5, 41.485, 84.4)
    assert fixes[0].satellites == 8


def test_fix_is_emitted_when_the_pair_completes_without_waiting_for_the_next_epoch():
    dec = NmeaDecoder()
    assert dec.feed_line(GGA_MUNICH) == []
    assert len(dec.feed_line(RMC_MUNICH)) == 1


@pytest.mark.parametrize(
    "lines",
    [
        [GGA_NO_FIX_REAL],  # quality 0 although lat/lon are filled
        [RMC_VOID],  # status V, empty coordinates (pynmea2 would say 0.0)
        [gga("123519", 48.1, 11.5), rmc("123519", 48.1, 11.5, status="V")],  # epoch disagrees
        ["$GPRMC,123519,A,,,,,022.4,084.4,230394,,,A*00"],  # no position, wrong checksum
        [sentence("GPRMC,123519,A,,,,,022.4,084.4,230394,,,A")],  # status A, no position
        [sentence("GPGGA,123519,9530.000,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,")],  # lat > 90
    ],
)
def test_an_invalid_fix_never_becomes_a_position(lines):
    _, fixes = decode(*lines)
    assert fixes == []


def test_checksum_errors_and_garbage_are_counted_and_skipped():
    dec, fixes = decode(
        GGA_BAD_CHECKSUM,
        GGA_MUNICH[:-3],  # checksum missing
        "hello world",
        "\x00\xff$$$",
        "$GPGGA,garbage*00",
        sentence("GPGSV,1,1,01,01,40,083,46"),
        RMC_MUNICH,
    )
    assert [f.location.lat for f in fixes] == [pytest.approx(48.1173)]
    assert dec.stats.checksum_errors >= 2
    assert dec.stats.garbage >= 2
    assert dec.stats.ignored == 1


def test_sentences_split_across_reads_are_reassembled():
    stream = (GGA_MUNICH + "\r\n" + RMC_MUNICH + "\r\n").encode()
    dec = NmeaDecoder()
    fixes = [fix for i in range(len(stream)) for fix in dec.feed(stream[i : i + 1])]
    assert len(fixes) == 1
    assert fixes[0].location.speed_kmh == pytest.approx(41.485)


def test_an_endless_line_is_dropped_and_memory_stays_bounded():
    dec = NmeaDecoder()
    assert dec.feed(b"$GPGGA," + b"9" * 10_000) == []
    assert dec.feed(f"\r\n{GGA_MUNICH}\r\n{RMC_MUNICH}\r\n".encode()) != []
    assert dec.stats.garbage >= 1


def test_rmc_without_course_has_no_heading():
    _, fixes = decode(rmc("101010", 41.27, -72.947, knots=3.0, course=None))
    assert fixes[0].location.heading_deg is None
    assert fixes[0].location.speed_kmh == pytest.approx(5.556)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.binary(max_size=120), max_size=20))
def test_fuzz_bytes_never_raise(chunks):
    dec = NmeaDecoder()
    for chunk in chunks:
        dec.feed(chunk)
    dec.flush()


_FIELD = st.text(alphabet="0123456789.,-+NSEWAVMK ", max_size=12)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["GPGGA", "GPRMC", "GNGGA", "GNRMC", "GPGSV"]), st.lists(_FIELD, max_size=16)
)
def test_fuzz_checksum_valid_sentences_never_raise_and_fixes_are_in_range(kind, fields):
    dec = NmeaDecoder()
    fixes = dec.feed_line(sentence(",".join([kind, *fields]))) + dec.flush()
    for fix in fixes:
        assert -90 <= fix.location.lat <= 90
        assert -180 <= fix.location.lon <= 180
        assert fix.location.speed_kmh is None or fix.location.speed_kmh >= 0


# --- the driver on a real pseudo-terminal ---------------------------------------------------


@contextlib.asynccontextmanager
async def running(driver: NmeaGps, sink: RecordingSink) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(driver.run(sink))
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, OSError, ConnectionError):
            await task


def config(port: str, **kw) -> NmeaGpsConfig:
    return NmeaGpsConfig(device="hh-07", port=port, **{"min_interval_s": 0, **kw})


def epoch(utc: str, lat: float, lon: float, knots: float, course: float) -> list[str]:
    return [gga(utc, lat, lon, hdop=1.2), rmc(utc, lat, lon, knots=knots, course=course)]


async def test_positions_from_a_talker_on_a_pty_arrive_as_readings():
    sink = RecordingSink()
    with NmeaTalker() as talker:
        talker.play(epoch("210000.00", 41.2705, -72.947, 10.0, 180.0))
        async with running(NmeaGps(config(talker.port), clock=lambda: 1234), sink):
            await until(lambda: sink.readings, message="no reading")
    r = sink.readings[0]
    assert (r.device, r.ts_ms, r.battery, r.status) == ("hh-07", 1234, None, None)
    assert r.location is not None
    assert r.location.lat == pytest.approx(41.2705, abs=1e-6)
    assert r.location.lon == pytest.approx(-72.947, abs=1e-6)
    assert r.location.speed_kmh == pytest.approx(18.52)
    assert r.location.heading_deg == 180.0
    assert r.location.accuracy_m == 6.0
    assert sink.availability_log[0][:2] == ("hh-07", True)


async def test_a_noisy_line_yields_only_valid_positions():
    sink = RecordingSink()
    driver = NmeaGps(config("unused"), clock=lambda: 0)
    with NmeaTalker() as talker:
        driver = NmeaGps(config(talker.port), clock=lambda: 0)
        talker.play(
            [
                b"\x00\xff\xfe garbage",
                GGA_BAD_CHECKSUM,
                GGA_NO_FIX_REAL,
                RMC_VOID,
                *epoch("210001", 41.2705, -72.947, 1.0, 90.0),
                b"$GPRMC,2100",  # a sentence cut by a partial write ...
                b"02,A,4116.230,N\r\n",  # ... and its rest: no checksum -> refused
            ]
        )
        async with running(driver, sink):
            await until(lambda: len(sink.readings) >= 3 and driver.decoder.stats.invalid_fixes >= 3)
    positions = [(r.location.lat, r.location.lon) for r in sink.readings if r.location]
    assert {(round(lat, 5), round(lon, 5)) for lat, lon in positions} == {(41.2705, -72.947)}
    assert len(positions) == len(sink.readings)
    stats = driver.decoder.stats
    assert stats.checksum_errors >= 1
    assert stats.garbage >= 1


async def test_min_interval_throttles_readings():
    sink = RecordingSink()
    with NmeaTalker(period_s=0.005) as talker:
        talker.play(epoch("210002", 41.0, -72.0, 0.0, 0.0))
        driver = NmeaGps(config(talker.port, min_interval_s=0.25), clock=time.monotonic_ns)
        async with running(driver, sink):
            await until(lambda: len(sink.readings) >= 4, within=5)
    stamps = [r.ts_ms for r in sink.readings]
    gaps_ms = [(b - a) / 1e6 for a, b in itertools.pairwise(stamps)]
    assert min(gaps_ms) >= 249, gaps_ms
    assert driver.decoder.stats.fixes > len(sink.readings)


async def test_silence_goes_offline_and_talking_again_comes_back_online():
    sink = RecordingSink()
    with NmeaTalker() as talker:
        talker.play(epoch("210003", 41.0, -72.0, 0.0, 0.0))
        driver = NmeaGps(config(talker.port, offline_after_s=0.3))
        async with running(driver, sink):
            await until(lambda: sink.online("hh-07") is True)
            talker.silence()
            await until(lambda: sink.online("hh-07") is False, message="never offline")
            assert "no NMEA data" in sink.availability_log[-1][2]
            talker.play(epoch("210004", 41.0, -72.0, 0.0, 0.0))
            await until(lambda: sink.online("hh-07") is True, message="never back")


async def test_a_pulled_receiver_raises_and_reports_offline():
    sink = RecordingSink()
    with NmeaTalker() as talker:
        talker.play(epoch("210005", 41.0, -72.0, 0.0, 0.0))
        task = asyncio.create_task(NmeaGps(config(talker.port)).run(sink))
        await until(lambda: sink.online("hh-07") is True)
        talker.hang_up()
        with pytest.raises((OSError, ConnectionError)):
            await asyncio.wait_for(task, 5)
    assert sink.online("hh-07") is False


async def test_a_missing_port_raises_oserror():
    sink = RecordingSink()
    with pytest.raises(OSError, match="does-not-exist-gps"):
        await NmeaGps(config("/dev/does-not-exist-gps")).run(sink)
    assert sink.online("hh-07") is None  # never came online, so no offline noise


def test_config_rejects_bad_values():
    with pytest.raises(ValidationError, match="should match pattern"):
        NmeaGpsConfig(device="bad id", port="/dev/ttyACM0")
    with pytest.raises(ValidationError, match="baudrate"):
        NmeaGpsConfig(device="hh-07", port="/dev/ttyACM0", baudrate=1234)
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        NmeaGpsConfig.model_validate({"device": "hh-07", "port": "/dev/x", "colour": "red"})
    assert NmeaGpsConfig(device="hh-07", port="/dev/ttyACM0").baudrate == 9600
