"""A sample as the bytes a device would send: v1 telemetry through daemon.wire, or OwnTracks JSON.

Fleet topics and telemetry JSON come from `daemon.wire` only, so the simulator
publishes exactly the contract the collector decodes. OwnTracks is not our
contract but the phone app's: its topic and JSON are built here the way the
app sends them (integers for batt, acc, vel; epoch seconds in tst).
"""

from __future__ import annotations

import json

from fleet.daemon import wire
from fleet.daemon.simulate.fleet import Member
from fleet.daemon.simulate.sample import Sample

ONLINE = b"online"
OFFLINE = b"offline"

# OwnTracks battery status: 1 unplugged, 2 charging, 3 full (on the charger).
_BS_UNPLUGGED, _BS_CHARGING, _BS_FULL = 1, 2, 3


def reading_topic(prefix: str, member: Member) -> str:
    if member.owntracks is not None:
        user, device = member.owntracks.split("/", 1)
        return wire.owntracks_topic(user, device)
    return wire.telemetry_topic(prefix, member.site, member.kind, member.device)


def availability_topic(prefix: str, member: Member) -> str:
    return wire.availability_topic(prefix, member.site, member.kind, member.device)


def availability_payload(online: bool) -> bytes:
    return ONLINE if online else OFFLINE


def telemetry(s: Sample, ts: float) -> wire.Telemetry:
    """The v1 telemetry model of a sample, stamped `ts` (epoch seconds).

    Validated like any received message (the groups are the contract's classes, revalidated
    by the model), so a simulator bug shows up here rather than as rejections at the collector.
    """
    return wire.Telemetry.model_validate(
        {
            "schema": wire.SCHEMA,
            "device": s.device,
            "seq": s.seq,
            "ts": round(ts, 3),
            "battery": wire.Battery(
                pct=s.pct,
                voltage_v=s.voltage_v,
                current_a=s.current_a,
                temp_c=s.temp_c,
                charging=s.charging,
                health_pct=s.health_pct,
            ),
            "location": wire.Location(
                lat=s.lat,
                lon=s.lon,
                accuracy_m=s.accuracy_m,
                speed_kmh=s.speed_kmh,
                heading_deg=s.heading_deg,
            )
            if s.fix
            else None,
            "status": wire.Status(
                state=wire.State(s.state),
                odometer_km=s.odometer_km,
                range_km=s.range_km,
                error_code=s.error_code,
                locked=s.locked,
                rssi_dbm=s.rssi_dbm,
                firmware=s.firmware,
                speed_kmh=s.speedometer_kmh,
            ),
        }
    )


def owntracks(s: Sample, ts: float, tid: str) -> bytes:
    """An OwnTracks `_type: location` message as the phone app sends it."""
    bs = _BS_UNPLUGGED if not s.charging else _BS_FULL if s.pct >= 100.0 else _BS_CHARGING
    doc = {
        "_type": "location",
        "tid": tid,
        "tst": int(ts),
        "lat": s.lat,
        "lon": s.lon,
        "acc": round(s.accuracy_m),
        "vel": round(s.speed_kmh),
        "cog": round(s.heading_deg) % 360,
        "batt": round(s.pct),
        "bs": bs,
        "t": "t" if s.speed_kmh > 0 else "p",  # trigger: movement or ping
        "conn": "m",
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def reading_payload(member: Member, s: Sample, ts: float) -> bytes:
    """What `member` sends for sample `s` on `reading_topic`."""
    if member.owntracks is not None:
        return owntracks(s, ts, member.device[-2:])
    return wire.encode_telemetry(telemetry(s, ts))
