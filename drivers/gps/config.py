"""Config model of the NMEA GPS driver, kept free of transport imports."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from fleet.drivers.base import DriverConfig


class NmeaGpsConfig(DriverConfig):
    """A serial NMEA 0183 GPS attached to one fleet device."""

    kind: Literal["nmea_gps"] = Field("nmea_gps", description="Driver kind.")
    port: str = Field(
        min_length=1,
        description="Serial port of the receiver, e.g. /dev/ttyACM0 or /dev/serial/by-id/...",
    )
    baudrate: Literal[4800, 9600, 19200, 38400, 57600, 115200] = Field(
        9600, description="Line speed: 4800 for classic NMEA 0183 talkers, 9600 for most modules."
    )
    min_interval_s: float = Field(
        1.0, ge=0, le=3600, description="Report a position at most this often (seconds)."
    )
    offline_after_s: float = Field(
        10.0, gt=0, le=3600, description="No sentence for this long marks the device offline."
    )
