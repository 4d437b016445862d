"""Config models of the Ninebot drivers, kept free of transport imports.

The agent's settings load these to validate a configuration; importing them
must not pull in bleak or pyserial (the collector reads the same settings).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Literal

from pydantic import Field

from fleet.drivers.base import DriverConfig

ModelName = Literal["es", "max", "m365", "m365_pro"]
# A BLE MAC address, or the UUID macOS gives a peripheral instead.
ADDRESS_PATTERN = r"^([0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}$|^[0-9A-Fa-f-]{36}$"


class NinebotSerialConfig(DriverConfig):
    """A Ninebot / Xiaomi scooter on a serial UART tap."""

    renamed_keys: ClassVar[Mapping[str, str]] = {"reopen_backoff_s": "reopen_backoff_initial_s"}

    kind: Literal["ninebot_serial"] = Field("ninebot_serial", description="Driver kind.")
    port: str = Field(
        min_length=1,
        description="Serial port of the tap, e.g. /dev/serial/by-id/usb-FTDI_...-if00-port0.",
    )
    baudrate: int = Field(115200, gt=0, description="Line speed; the scooter bus runs at 115200.")
    model: ModelName = Field(
        "es",
        description="Scooter family: picks the framing (5A A5 / 55 AA) and the units "
        "(es, max: Ninebot 0.1 km/h; m365, m365_pro: Xiaomi m/h).",
    )
    poll_interval_s: float = Field(
        1.0, gt=0, le=3600, description="Seconds between the starts of two poll cycles."
    )
    response_timeout_s: float = Field(
        0.3, gt=0, le=10, description="How long to wait for each register reply."
    )
    offline_after_misses: int = Field(
        3, ge=1, le=1000, description="Silent poll cycles in a row before the device is offline."
    )
    reopen_backoff_initial_s: float = Field(
        1.0, gt=0, le=600, description="First wait before reopening a failed port (doubles)."
    )
    reopen_backoff_max_s: float = Field(
        60.0, gt=0, le=3600, description="Longest wait between attempts to reopen the port."
    )


class NinebotBleConfig(DriverConfig):
    """A Ninebot / Xiaomi scooter reached over BLE (plaintext firmware only)."""

    renamed_keys: ClassVar[Mapping[str, str]] = {
        "reconnect_backoff_s": "reconnect_backoff_initial_s",
        "encrypted_backoff_s": "encrypted_backoff_initial_s",
    }

    kind: Literal["ninebot_ble"] = Field("ninebot_ble", description="Driver kind.")
    address: str = Field(
        pattern=ADDRESS_PATTERN, description="BLE address of the scooter, e.g. D4:3D:7E:12:34:56."
    )
    model: ModelName = Field(
        "es",
        description="Scooter family: picks the framing (5A A5 / 55 AA) and the units "
        "(es, max: Ninebot 0.1 km/h; m365, m365_pro: Xiaomi m/h).",
    )
    poll_interval_s: float = Field(
        5.0, gt=0, le=3600, description="Seconds between the starts of two poll cycles."
    )
    response_timeout_s: float = Field(
        1.0, gt=0, le=30, description="How long to wait for each register reply."
    )
    offline_after_misses: int = Field(
        3, ge=1, le=1000, description="Silent poll cycles in a row before reconnecting."
    )
    scan_timeout_s: float = Field(
        10.0, gt=0, le=300, description="How long one scan looks for the scooter's adverts."
    )
    connect_timeout_s: float = Field(20.0, gt=0, le=120, description="BLE connect timeout.")
    reconnect_backoff_initial_s: float = Field(
        2.0, gt=0, le=600, description="First wait before reconnecting (doubles per failure)."
    )
    reconnect_backoff_max_s: float = Field(
        120.0, gt=0, le=3600, description="Longest wait between reconnect attempts."
    )
    encrypted_backoff_initial_s: float = Field(
        60.0, gt=0, le=3600, description="First wait before re-probing an encrypted scooter."
    )
    encrypted_backoff_max_s: float = Field(
        600.0, gt=0, le=86400, description="Longest wait between probes of an encrypted scooter."
    )
