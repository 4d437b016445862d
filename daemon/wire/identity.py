"""Whose availability counts: the registry's answer for the availability control topics.

Defence in depth for a broker the fleet does not configure: a generated broker already lets
only a registered agent publish its own availability and its own devices' (daemon/broker/),
so on one the collector refuses nothing here. Elsewhere any client can publish a retained
``offline`` for an agent and hold a site's offline alerts, so:

- an agent's availability counts only when the agent is registered (``[[agents]]``) for the
  topic's site; with no agent registered at all, every agent's counts (as before agents could
  be registered: ``fleet check-config`` warns);
- a device's availability never counts on a topic naming another site or kind than the
  device's registry entry (its telemetry is refused there as ``registry_mismatch``), and, once
  agents are registered, counts only for a device one of them reads - what a generated broker
  would have let through.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fleet.daemon.wire.decode import DeviceRef
from fleet.daemon.wire.topics import Control

if TYPE_CHECKING:  # the contract does not load the configuration's models to be imported
    from fleet.config import FleetSettings


@dataclass(frozen=True, slots=True)
class ControlRegistry:
    """What the configuration registers: agents with their site and devices, and devices."""

    agents: Mapping[str, str] = field(default_factory=dict)  # agent id -> its site
    agent_devices: Mapping[str, str] = field(default_factory=dict)  # device id -> its agent
    devices: Mapping[str, DeviceRef] = field(default_factory=dict)  # device id -> site, kind

    @classmethod
    def of(cls, settings: FleetSettings) -> ControlRegistry:
        return cls(
            agents={a.id: a.site or settings.site.id for a in settings.agents},
            agent_devices={d: a.id for a in settings.agents for d in a.devices},
            devices={d.id: DeviceRef(settings.device_site(d.id), d.kind) for d in settings.devices},
        )

    def availability_refusal(self, control: Control) -> str | None:
        """None when this availability message counts, else why it does not (one sentence)."""
        if control.what == "agent":
            return self._agent(control.site, control.id)
        if control.what == "availability":
            return self._device(control.site, control.kind, control.id)
        return None

    def _agent(self, site: str, agent: str) -> str | None:
        if not self.agents:
            return None  # nothing registered: every agent is trusted (back-compatible)
        registered = self.agents.get(agent)
        if registered is None:
            return f'agent "{agent}" is not registered in [[agents]]'
        if registered != site:
            return f'agent "{agent}" is registered for site "{registered}", not "{site}"'
        return None

    def _device(self, site: str, kind: str, device: str) -> str | None:
        ref = self.devices.get(device)
        if ref is not None and (ref.site, ref.kind) != (site, kind):
            return (
                f'device "{device}" is registered as {ref.kind} at site "{ref.site}", '
                f'not {kind} at site "{site}"'
            )
        if self.agents and device not in self.agent_devices:
            return f'device "{device}" is not read by any agent in [[agents]]'
        return None
