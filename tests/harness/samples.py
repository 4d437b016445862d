"""Sample payloads shared by the tests."""

from __future__ import annotations

from typing import Any

# The telemetry example of DESIGN.md, field for field.
DESIGN_EXAMPLE: dict[str, Any] = {
    "schema": 1,
    "device": "sw-03",
    "seq": 1842,
    "ts": "2026-11-29T21:00:00.123Z",
    "battery": {
        "pct": 87.5,
        "voltage_v": 72.1,
        "current_a": -3.2,
        "temp_c": 24.5,
        "charging": False,
        "health_pct": 96,
    },
    "location": {
        "lat": 41.2705,
        "lon": -72.9470,
        "accuracy_m": 5,
        "speed_kmh": 8.2,
        "heading_deg": 180,
    },
    "status": {
        "state": "riding",
        "odometer_km": 1234.5,
        "range_km": 21.0,
        "error_code": 0,
        "locked": False,
        "rssi_dbm": -61,
        "firmware": "1.3.9",
    },
}
