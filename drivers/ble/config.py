"""Config models of the BLE handheld drivers, kept free of transport imports.

The agent's settings load these to validate a configuration; importing them
must not pull in bleak or cryptography (the collector reads the same settings).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar, Final, Literal

from pydantic import Field, SecretStr, field_validator

from fleet.drivers.base import DriverConfig

MAC_PATTERN: Final = r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$"


class BleBatteryConfig(DriverConfig):
    """A handheld exposing the GATT Battery Service (0x180F), reporting as one fleet device."""

    renamed_keys: ClassVar[Mapping[str, str]] = {
        "backoff_initial_s": "reconnect_backoff_initial_s",
        "backoff_max_s": "reconnect_backoff_max_s",
    }

    kind: Literal["ble_battery"] = Field("ble_battery", description="Driver kind.")
    address: str = Field(pattern=MAC_PATTERN, description="Bluetooth MAC address of the handheld.")
    poll_interval_s: float = Field(
        60.0, gt=0, le=3600, description="Read the battery level this often while connected."
    )
    use_notify: bool = Field(
        True,
        description="Also subscribe to battery level notifications when the device offers them.",
    )
    connect_timeout_s: float = Field(
        20.0, gt=0, le=120, description="Give up a connect (or a single read) after this long."
    )
    scan_timeout_s: float = Field(
        10.0, gt=0, le=120, description="Scan this long for the device before counting a miss."
    )
    offline_after_scans: int = Field(
        3, ge=1, le=100, description="Consecutive scans without the device before it is offline."
    )
    reconnect_backoff_initial_s: float = Field(
        2.0, gt=0, le=600, description="First wait before reconnecting; doubles on each failure."
    )
    reconnect_backoff_max_s: float = Field(
        120.0, gt=0, le=3600, description="Longest wait between reconnect attempts."
    )


class BTHomeConfig(DriverConfig):
    """A BTHome v2 sensor (a handheld's battery beacon) reporting as one fleet device."""

    kind: Literal["bthome"] = Field("bthome", description="Driver kind.")
    address: str = Field(
        pattern=MAC_PATTERN, description="Bluetooth MAC address of the BTHome device."
    )
    bind_key: SecretStr | None = Field(
        None,
        description="32 hex digits: the AES key of an encrypted BTHome device; omit if plain. "
        "Prefer bind_key_file or the systemd credential 'agent.drivers.<device>.bind_key'.",
    )
    bind_key_file: Path | None = Field(
        None,
        description="File whose content (trailing newline stripped) is bind_key; read by the "
        "settings loader.",
    )
    offline_after_s: float = Field(
        60.0, gt=0, le=86400, description="No advert for this long marks the device offline."
    )
    min_interval_s: float = Field(
        10.0, ge=0, le=3600, description="Report a reading at most this often (adverts repeat)."
    )

    @field_validator("bind_key")
    @classmethod
    def _key_is_16_bytes(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            try:
                raw = bytes.fromhex(value.get_secret_value())
            except ValueError:
                raise ValueError("bind_key must be 32 hex digits") from None
            if len(raw) != 16:
                raise ValueError("bind_key must be 32 hex digits")
        return value
