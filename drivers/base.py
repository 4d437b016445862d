"""The contract between a driver and whoever runs it (the agent).

A driver is built from its config model and then `run(sink)` is awaited: it
talks to its hardware, reports readings and device availability to the sink,
and returns only when cancelled. Raising means "I am broken": the runner logs
it and restarts the driver with backoff. A driver never sees MQTT, files or
the rest of the fleet (Telegraf's Accumulator idea).

Config models live beside their driver, derive from `DriverConfig` (strict,
documented) and carry `kind: Literal["..."]`, the discriminator the agent's
settings use to pick the model.
"""

from __future__ import annotations

from typing import ClassVar, Protocol

from pydantic import BaseModel, ConfigDict

from fleet.drivers.readings import Reading

# A fleet device id, as in the v1 topics (drivers cannot import the wire contract).
DEVICE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class DriverConfig(BaseModel):
    """Base of every driver's config model: unknown keys are errors, values immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


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
