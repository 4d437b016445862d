"""Config models of the Ninebot drivers, kept free of transport imports.

The agent's settings load these to validate a configuration; importing them
must not pull in bleak or pyserial (the collector reads the same settings).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from fleet.drivers.base import DriverConfig

ModelName = Literal["es", "max", "m365", "m365_pro"]
# A BLE MAC address, or the UUID macOS gives a peripheral instead.
ADDRESS_PATTERN = r"^([0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}$|^[0-9A-Fa-f-]{36}$"


def _idle_interval(default: float) -> Any:
    return Field(
        default,
        gt=0,
        le=3600,
        description="Seconds between poll cycles while the last reading said standing "
        "(idle); the longest a scooter ridden away goes unseen. A default below "
        "poll_interval_s is raised to it; a value set below it is refused.",
    )


def _charging_interval(default: float) -> Any:
    return Field(
        default,
        gt=0,
        le=3600,
        description="Seconds between poll cycles while the last reading said charging "
        "(or charger plugged); the longest an unplugged scooter goes unseen. A default "
        "below poll_interval_s is raised to it; a value set below it is refused.",
    )


def _check_slow_intervals(config: NinebotSerialConfig | NinebotBleConfig) -> None:
    # Set below the fast interval is a mix-up worth a clear refusal (the keys read
    # alike); a default below it (poll_interval_s = 30) just follows it.
    for name in ("idle_poll_interval_s", "charging_poll_interval_s"):
        if name in config.model_fields_set and getattr(config, name) < config.poll_interval_s:
            raise ValueError(
                f"{name} ({getattr(config, name)}) is below poll_interval_s "
                f"({config.poll_interval_s}): a standing or charging scooter is polled "
                "at most as often as a moving one"
            )


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
        1.0,
        gt=0,
        le=3600,
        description="Seconds between the starts of two poll cycles while the scooter moves, "
        "is faulted, or did not answer the last poll.",
    )
    idle_poll_interval_s: float = _idle_interval(10.0)
    charging_poll_interval_s: float = _charging_interval(10.0)
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

    @model_validator(mode="after")
    def _slow_intervals_are_slow(self) -> NinebotSerialConfig:
        _check_slow_intervals(self)
        return self


class NinebotBleConfig(DriverConfig):
    """A Ninebot / Xiaomi scooter reached over BLE (plaintext or NinebotCrypto firmware)."""

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
        5.0,
        gt=0,
        le=3600,
        description="Seconds between the starts of two poll cycles while the scooter moves, "
        "is faulted, or did not answer the last poll.",
    )
    # Slower than a serial tap's: every exchange over BLE costs the scooter's radio too.
    idle_poll_interval_s: float = _idle_interval(30.0)
    charging_poll_interval_s: float = _charging_interval(30.0)
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
        60.0,
        gt=0,
        le=3600,
        description="First wait before trying again a scooter whose encryption is not "
        "supported or that was not paired (nobody pressed the power button).",
    )
    encrypted_backoff_max_s: float = Field(
        600.0,
        gt=0,
        le=86400,
        description="Longest wait between tries of an unsupported or unpaired scooter.",
    )
    key_dir: Path = Field(
        Path("/var/lib/fleet/ninebot-keys"),
        description="Directory of the app keys of paired NinebotCrypto scooters (one 0600 "
        "file per scooter; created 0700), so each pairs once.",
    )
    pair_interval_s: float = Field(
        1.0, gt=0, le=10, description="Seconds between two app-key offers (5C) while pairing."
    )
    pair_timeout_s: float = Field(
        60.0,
        gt=0,
        le=600,
        description="How long one pairing waits for the power button before backing off.",
    )

    @model_validator(mode="after")
    def _slow_intervals_are_slow(self) -> NinebotBleConfig:
        _check_slow_intervals(self)
        return self
