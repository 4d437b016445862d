"""The collector's per-message hot path, before and after, side by side in one run: decode +
validate (pydantic's models vs the msgspec fast path) and line building (the generic
`format_line` route vs the generated writers of `schema.reading_lines`), on a full Segway
reading, a handheld reading (as the agent sends them) and an OwnTracks message.

Run: .venv/bin/python tests/bench/bench_decode.py [--repeats N]

Each figure is the best of N timed batches (the least disturbed on a shared machine); the
ratios compare figures of the same run.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache, partial
from operator import attrgetter

from fleet.daemon.collector.lineproto import FieldValue, format_line, series_key
from fleet.daemon.collector.schema import GROUP_FIELDS, MEASUREMENTS, reading_lines
from fleet.daemon.wire import (
    Battery,
    DecodedReading,
    Decoder,
    DeviceRef,
    Location,
    State,
    Status,
    Telemetry,
    encode_telemetry,
)

NOW = datetime(2026, 11, 29, 21, 0, 0, 123000, tzinfo=UTC)
NOW_MS = 1795986000123

SEGWAY = encode_telemetry(
    Telemetry(
        schema=1,
        device="sw-03",
        seq=1842,
        ts=NOW,
        battery=Battery(pct=87.5, voltage_v=72.1, current_a=-3.2, temp_c=24.5, charging=False,
                        health_pct=96, cell_spread_v=0.012, pack_ids="C01061400098,C01061400117"),
        location=Location(lat=41.2705, lon=-72.947, accuracy_m=5, speed_kmh=8.2, heading_deg=180),
        status=Status(state=State.RIDING, odometer_km=1234.5, range_km=21.0, error_code=0,
                      locked=False, rssi_dbm=-61, firmware="1.3.9", speed_kmh=8.4),
    )
)  # fmt: skip
HANDHELD = encode_telemetry(
    Telemetry(
        schema=1,
        device="hh-07",
        seq=90211,
        ts=NOW,
        battery=Battery(pct=64.0, charging=True),
        location=Location(lat=41.27051, lon=-72.94702, accuracy_m=3.2, speed_kmh=4.1,
                          heading_deg=93.5),
        status=Status(rssi_dbm=-72),
    )
)  # fmt: skip
OWNTRACKS = (
    b'{"_type":"location","tid":"al","tst":1795986000,"lat":41.27051,"lon":-72.94702,'
    b'"acc":12,"vel":4,"cog":270,"batt":55,"bs":1,"t":"p","conn":"m"}'
)
MESSAGES = {
    "full Segway reading": ("fleet/v1/hq/segway/sw-03/telemetry", SEGWAY),
    "handheld reading": ("fleet/v1/hq/handheld/hh-07/telemetry", HANDHELD),
    "OwnTracks location": ("owntracks/alice/phone", OWNTRACKS),
}


def decoder(*, fast_path: bool) -> Decoder:
    return Decoder(
        prefix="fleet",
        default_site="hq",
        kinds=["segway", "handheld"],
        registry={"sw-03": DeviceRef("hq", "segway"), "hh-07": DeviceRef("hq", "handheld")},
        owntracks_map={"alice/phone": "hh-07"},
        max_payload_bytes=65536,
        max_future_s=300,
        max_age_s=30 * 86400,
        now_ms=lambda: NOW_MS,
        fast_path=fast_path,
    )


# The line building of before, kept here as the baseline: a (name, value) list per group,
# seq inserted, then the generic format_line.
_NAMES = {m: tuple(n for n in names if n != "seq") for m, names in GROUP_FIELDS.items()}
_VALUES = {m: attrgetter(*names) for m, names in _NAMES.items()}
_SEQ_AT = {m: names.index("seq") for m, names in GROUP_FIELDS.items()}


@lru_cache(maxsize=8192)
def _prefix(measurement: str, site: str, kind: str, device: str) -> str:
    """The line prefix as the old path cached it (schema.py now keeps one entry per device)."""
    return series_key(measurement, {"site": site, "kind": kind, "device": device})


def lines_before(r: DecodedReading) -> list[str]:
    lines = []
    for measurement, group in zip(MEASUREMENTS, (r.battery, r.location, r.status), strict=True):
        if group is not None:
            fields: list[tuple[str, FieldValue | None]]
            fields = list(zip(_NAMES[measurement], _VALUES[measurement](group), strict=True))
            fields.insert(_SEQ_AT[measurement], ("seq", r.seq))
            prefix = _prefix(measurement, r.site, r.kind, r.device)
            lines.append(format_line(prefix, fields, r.ts_ms))
    return lines


def micros(works: list[Callable[[], object]], repeats: int, batch: int = 500) -> list[float]:
    """CPU µs per call of each work: the best of `repeats` batches, the works' batches taking
    turns so that a burst of load elsewhere hits them alike. The thread's CPU time, not the
    wall clock: on a machine shared with other work, time spent waiting for a core is not ours."""
    best = [float("inf")] * len(works)
    for _ in range(repeats):
        for i, work in enumerate(works):
            start = time.thread_time()
            for _ in range(batch):
                work()
            best[i] = min(best[i], time.thread_time() - start)
    return [b / batch * 1e6 for b in best]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    before, after = decoder(fast_path=False), decoder(fast_path=True)
    rows = []
    for label, (topic, payload) in MESSAGES.items():
        reading = before.decode(topic, payload)
        assert reading is not None
        assert repr(after.decode(topic, payload)) == repr(reading), "the two paths differ"
        assert lines_before(reading) == reading_lines(reading), "the two line builders differ"
        d0, d1, l0, l1 = micros(
            [
                partial(before.decode, topic, payload),
                partial(after.decode, topic, payload),
                partial(lines_before, reading),
                partial(reading_lines, reading),
            ],
            args.repeats,
        )
        rows.append((label, len(payload), d0, d1, l0, l1))
    print(f"µs per message (best of {args.repeats} batches); before: pydantic + format_line")
    print()
    print("| message | bytes | decode+validate pydantic / msgspec | lines before / after "
          "| both, before / after |")  # fmt: skip
    print("|---|---|---|---|---|")
    for label, size, d0, d1, l0, l1 in rows:
        print(
            f"| {label} | {size} | {d0:.1f} / {d1:.1f} µs ({d0 / d1:.1f}×) "
            f"| {l0:.1f} / {l1:.1f} µs ({l0 / l1:.1f}×) "
            f"| {d0 + l0:.1f} / {d1 + l1:.1f} µs ({(d0 + l0) / (d1 + l1):.1f}×) |"
        )


if __name__ == "__main__":
    main()
