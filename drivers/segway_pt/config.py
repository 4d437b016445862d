"""Config model of the `segway_pt_battery` driver, free of transport imports (no smbus2 here:
the collector loads the same settings)."""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import Field, StringConstraints, model_validator
from pydantic_core import PydanticCustomError

from fleet.drivers.base import DriverConfig

# A Linux I²C bus: its number (/dev/i2c-N) or a device path (a udev link such as
# /dev/i2c-pt-left keeps a USB adapter's name stable across reboots).
BusName = int | Annotated[str, StringConstraints(pattern=r"^/dev/\S+$", max_length=255)]


def _wiring_error(message: str) -> PydanticCustomError:
    # A custom error type: the config's error line reads without pydantic's "Value error, ".
    return PydanticCustomError("fleet_pt_wiring", message)


def bus_path(bus: int | str) -> str:
    """The device file of `bus`, as the log and the availability reasons name it."""
    return f"/dev/i2c-{bus}" if isinstance(bus, int) else bus


class SegwayPtBatteryConfig(DriverConfig):
    """The two lithium packs of one Segway PT (i2 / x2), read over I²C (Linux i2c-dev).

    Both packs answer at the same address, so each needs its own bus (`buses`) or its own
    channel of an I²C multiplexer (`bus`, `mux_address`, `mux_channels`): one or the other.
    """

    kind: Literal["segway_pt_battery"] = Field("segway_pt_battery", description="Driver kind.")
    buses: tuple[BusName, BusName] | None = Field(
        None,
        description="The I²C buses of pack A and pack B, in that order: bus numbers (2 means "
        "/dev/i2c-2) or device paths. Leave unset when a multiplexer is used.",
    )
    bus: BusName | None = Field(
        None,
        description="With a multiplexer: the one I²C bus (number or device path) it is on.",
    )
    mux_address: int | None = Field(
        None,
        ge=0x03,  # the 7-bit addresses a device may use
        le=0x77,
        description="With a multiplexer (TCA9548A / PCA9548A style: one control byte, one bit "
        "per channel): its I²C address, e.g. 0x70 (112).",
    )
    mux_channels: tuple[int, int] | None = Field(
        None,
        description="With a multiplexer: the channels (0-7) of pack A and pack B, in that order.",
    )
    pack_address: int = Field(
        0x31,
        ge=0x03,  # the 7-bit addresses a device may use
        le=0x77,
        description="I²C address of a lithium pack's BMS; 0x31 (49) on every known pack.",
    )
    poll_interval_s: float = Field(
        10.0, gt=0, le=3600, description="Seconds between the starts of two reads of both packs."
    )
    checksum_retries: int = Field(
        3,
        ge=0,
        le=20,
        description="Re-reads allowed after a bad checksum or a short reply: per register, "
        "and for a list register (whose lost entry comes round again only after the whole "
        "list) as extra passes through it. Past them the pack is reported as giving corrupt "
        "replies and nothing is published.",
    )

    @model_validator(mode="after")
    def _one_wiring(self) -> Self:
        mux = (self.bus, self.mux_address, self.mux_channels)
        if self.buses is not None:
            if any(v is not None for v in mux):
                raise _wiring_error(
                    "give either buses (one bus per pack) or bus, mux_address and "
                    "mux_channels (a multiplexer), not both"
                )
            if bus_path(self.buses[0]) == bus_path(self.buses[1]):
                raise _wiring_error(
                    "buses: both packs answer at the same address, so they need two "
                    "different buses (or a multiplexer)"
                )
            return self
        if any(v is None for v in mux):
            raise _wiring_error(
                "give buses (one bus per pack), or bus, mux_address and mux_channels "
                "(a multiplexer)"
            )
        channels = self.mux_channels or (0, 0)
        if not all(0 <= c <= 7 for c in channels) or channels[0] == channels[1]:
            raise _wiring_error("mux_channels must be two different channels, 0-7")
        if self.mux_address == self.pack_address:
            raise _wiring_error("mux_address must differ from pack_address")
        return self

    def wiring(self) -> list[tuple[str, int | str, int | None]]:
        """(pack name, bus, multiplexer channel or None) of pack A and pack B."""
        if self.buses is not None:
            return [("A", self.buses[0], None), ("B", self.buses[1], None)]
        assert self.bus is not None
        assert self.mux_channels is not None
        return [("A", self.bus, self.mux_channels[0]), ("B", self.bus, self.mux_channels[1])]
