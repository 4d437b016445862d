"""The contract between a driver and whoever runs it (the agent).

A driver is built from its config model and then `run(sink)` is awaited: it
talks to its hardware, reports readings and device availability to the sink,
and returns only when cancelled. Raising means "I am broken": the runner logs
it and restarts the driver with backoff. A driver never sees MQTT, files or
the rest of the fleet (Telegraf's Accumulator idea).

Config models live beside their driver, derive from `DriverConfig` (strict,
documented, with the `device` every driver reports as) and carry
`kind: Literal["..."]`, the discriminator the agent's settings use to pick the
model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator

from fleet.drivers.backoff import check_backoff_pair
from fleet.drivers.contract import ID_PATTERN
from fleet.drivers.readings import Reading


class DriverConfig(BaseModel):
    """Base of every driver's config model: unknown keys are errors, values immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Old key -> new key: the config loader refuses an old key naming its new one.
    renamed_keys: ClassVar[Mapping[str, str]] = {}

    device: str = Field(
        pattern=ID_PATTERN,  # the contract's id rule, as in the v1 topics
        description="Fleet device id the driver's readings are reported as.",
    )

    _check_backoff = field_validator("*")(check_backoff_pair)


class DriverSink(Protocol):
    def reading(self, reading: Reading) -> None:
        """A fresh observation of a device."""

    def availability(self, device: str, online: bool, detail: str = "") -> None:
        """The device became reachable (online) or not (offline); `detail` says why, in words."""

    def advert_seen(self) -> None:
        """A BLE advertisement arrived (any): feeds the agent's scanner liveness watchdog."""


class Driver(Protocol):
    kind: ClassVar[str]

    async def run(self, sink: DriverSink) -> None: ...
