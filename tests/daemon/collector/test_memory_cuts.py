"""What the collector keeps per device, bounded and shared (issue 14: <= 60 MB steady at 1,000
devices): the line prefixes are held once per device, and devices without limits of their own
share their kind's `Limits`. Measured with tracemalloc over 1,000 devices, no servers."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable
from typing import Any

from fleet.config.alerts import AlertSettings
from fleet.daemon.collector import lineproto, schema
from fleet.daemon.collector.schema import reading_lines
from fleet.daemon.wire import Battery, DecodedReading, Location, State, Status

DEVICES = 1000


def _reading(device: str) -> DecodedReading:
    return DecodedReading(
        site="allingtown",
        kind="segway",
        device=device,
        seq=7,
        ts_ms=1_700_000_000_000,
        battery=Battery(pct=81.5, voltage_v=62.1, charging=False),
        location=Location(lat=41.26, lon=-72.95),
        status=Status(state=State.RIDING, odometer_km=12.5),
        source="telemetry",
    )


def _retained(work: Callable[[], Any]) -> tuple[int, Any]:
    """Bytes still allocated after `work()` returns, with what it returned kept alive."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        result = work()
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before, result
    finally:
        tracemalloc.stop()


def test_line_prefixes_cost_under_800_bytes_a_device() -> None:
    # Measured: 2,011 bytes a device before (each prefix cached here and again in lineproto,
    # with its tags), 521 after (one entry: three strings in a tuple).
    schema._prefixes.cache_clear()
    lineproto._series_key.cache_clear()
    readings = [_reading(f"mem-{i:04d}") for i in range(DEVICES)]

    def write_all() -> None:
        for reading in readings:
            reading_lines(reading)

    retained, _ = _retained(write_all)
    assert retained < DEVICES * 800, f"{retained / DEVICES:.0f} bytes a device"
    assert lineproto._series_key.cache_info().currsize == 0  # telemetry never fills it
    assert schema._prefixes.cache_info().currsize == DEVICES


def test_line_prefixes_are_bounded_and_rebuilt_alike() -> None:
    schema._prefixes.cache_clear()
    first = reading_lines(_reading("sw-0001"))
    for i in range(schema._prefixes.cache_info().maxsize or 0):
        reading_lines(_reading(f"churn-{i}"))  # pushes sw-0001 out
    assert schema._prefixes.cache_info().currsize == schema._prefixes.cache_info().maxsize
    assert reading_lines(_reading("sw-0001")) == first
    assert first[0].startswith("battery,device=sw-0001,kind=segway,site=allingtown ")


def test_the_general_line_builds_its_prefix_without_caching_it() -> None:
    lineproto._series_key.cache_clear()
    tags = {"site": "allingtown", "kind": "segway", "device": "sw-0001"}
    assert lineproto.line("pipeline", tags, {"received": 3}, 5) == (
        "pipeline,device=sw-0001,kind=segway,site=allingtown received=3i 5"
    )
    assert lineproto._series_key.cache_info().currsize == 0
    assert lineproto.build_series_key("pipeline", tags) == lineproto.series_key("pipeline", tags)


def test_devices_without_limits_of_their_own_share_their_kinds() -> None:
    settings = AlertSettings(
        kinds={"handheld": {"offline_after_s": 1800}},
        devices={"hh-9": {"battery_low_pct": 15}},
    )

    def limits_of_all() -> list[Any]:
        return [settings.limits_for("segway", f"sw-{i:04d}") for i in range(DEVICES)]

    retained, limits = _retained(limits_of_all)
    # Measured: 1,496 bytes a device before (a merged copy each, held by the alert engine), 10 after.
    assert retained < DEVICES * 100, f"{retained / DEVICES:.0f} bytes a device"
    assert all(one is limits[0] for one in limits)
    assert limits[0].offline_after_s == 600  # the defaults
    assert settings.limits_for("handheld", "hh-1").offline_after_s == 1800
    own = settings.limits_for("handheld", "hh-9")
    assert (own.offline_after_s, own.battery_low_pct) == (1800, 15)
    assert own is not settings.limits_for("handheld", "hh-1")
    # The shared cache is no field: not dumped, and no part of equality.
    assert "_kind_limits" not in settings.model_dump()
    assert settings == AlertSettings(
        kinds={"handheld": {"offline_after_s": 1800}},
        devices={"hh-9": {"battery_low_pct": 15}},
    )
