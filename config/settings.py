"""`FleetSettings`: the whole configuration of a fleet process.

Values come, highest precedence first, from environment variables
(`FLEET_MQTT__PORT`), systemd credentials, `*_file` secret files, the TOML
file and the defaults; see `config.sources` for the details. Use
`config.load_settings` to load it: that reports every problem at once as a
`ConfigError`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from fleet.config.agent import AgentSettings
from fleet.config.alerts import AlertSettings
from fleet.config.base import KindStr, Loc, raise_problems
from fleet.config.board import BoardSettings
from fleet.config.broker import AgentRegistration, BrokerSettings
from fleet.config.collector import CollectorSettings, HttpSettings, SpoolSettings
from fleet.config.devices import DeviceConfig, SiteSettings
from fleet.config.influx import InfluxSettings
from fleet.config.mqtt import MqttSettings
from fleet.config.sources import (
    CONFIG_ENV,
    ENV_NESTED_DELIMITER,
    ENV_PREFIX,
    SourcePlan,
    active_plan,
)

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


class FleetSettings(BaseSettings):
    """Configuration of the collector, the agent and the tools that share their settings."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTED_DELIMITER,
        case_sensitive=False,
        extra="forbid",
        frozen=True,
        allow_inf_nan=False,
    )

    log_level: Annotated[LogLevel, BeforeValidator(_upper)] = Field(
        default="INFO", description="Least severe log level written: DEBUG, INFO, WARNING, ERROR."
    )
    kinds: list[KindStr] = Field(
        default_factory=lambda: ["segway", "handheld"],
        min_length=1,
        description="Device kinds accepted on the wire (the {kind} topic level); messages of "
        "other kinds go to the dead-letter topic.",
    )
    site: SiteSettings = Field(
        default_factory=SiteSettings, description="The site of this installation."
    )
    mqtt: MqttSettings = Field(default_factory=MqttSettings, description="The MQTT broker.")
    influx: InfluxSettings = Field(
        default_factory=InfluxSettings, description="The InfluxDB that readings are written to."
    )
    spool: SpoolSettings = Field(
        default_factory=SpoolSettings,
        description="The disk spool between the broker and InfluxDB.",
    )
    http: HttpSettings = Field(
        default_factory=HttpSettings, description="The collector's HTTP endpoint."
    )
    collector: CollectorSettings = Field(
        default_factory=CollectorSettings, description="Limits of the collector's ingest path."
    )
    agent: AgentSettings = Field(
        default_factory=AgentSettings,
        description="The agent (`fleet agent`): its drivers, outbox and supervision.",
    )
    alerts: AlertSettings = Field(
        default_factory=AlertSettings,
        description="The collector's alert engine: rules, repeats, shifts, notification routes.",
    )
    board: BoardSettings = Field(
        default_factory=BoardSettings,
        description="The officers' readiness board: the coming shift, thresholds per kind, "
        "the charge history kept, and the sign-out sheet.",
    )
    devices: list[DeviceConfig] = Field(
        default_factory=list,
        description="The device registry: names, sites and OwnTracks identities of known "
        "devices. Devices not listed are still accepted.",
    )
    agents: list[AgentRegistration] = Field(
        default_factory=list,
        description="The agents the collector trusts, each with its site and devices. When "
        "any is listed, availability from an agent not listed is ignored (and counted); a "
        "generated broker lets each write only its own devices' topics.",
    )
    broker: BrokerSettings = Field(
        default_factory=BrokerSettings,
        description="The Mosquitto configuration `fleet broker-config` writes.",
    )

    @field_validator("kinds")
    @classmethod
    def _unique_kinds(cls, kinds: list[str]) -> list[str]:
        seen: dict[str, int] = {}
        problems: list[tuple[Loc, str]] = []
        for index, kind in enumerate(kinds):
            if kind in seen:
                problems.append(((index,), f"duplicate kind (also kinds[{seen[kind]}])"))
            seen.setdefault(kind, index)
        raise_problems(problems)
        return kinds

    @model_validator(mode="after")
    def _check_registry(self) -> FleetSettings:
        problems: list[tuple[Loc, str]] = []
        ids: dict[str, int] = {}
        pairs: dict[str, int] = {}
        kinds = ", ".join(self.kinds)
        for index, device in enumerate(self.devices):
            if device.kind not in self.kinds:
                problems.append(
                    (("devices", index, "kind"), f"not one of the configured kinds ({kinds})")
                )
            if device.id in ids:
                problems.append(
                    (
                        ("devices", index, "id"),
                        f"duplicate device id '{device.id}' (devices[{ids[device.id]}] "
                        f"and devices[{index}])",
                    )
                )
            ids.setdefault(device.id, index)
            if device.owntracks is not None:
                if device.owntracks in pairs:
                    problems.append(
                        (
                            ("devices", index, "owntracks"),
                            f"OwnTracks pair already used by devices[{pairs[device.owntracks]}]",
                        )
                    )
                pairs.setdefault(device.owntracks, index)
        problems += self._agent_problems(ids)
        raise_problems(problems)
        return self

    def _agent_problems(self, devices: dict[str, int]) -> list[tuple[Loc, str]]:
        problems: list[tuple[Loc, str]] = []
        agents: dict[str, int] = {}
        owner: dict[str, int] = {}
        for index, agent in enumerate(self.agents):
            if agent.id in agents:
                problems.append(
                    (
                        ("agents", index, "id"),
                        f"duplicate agent id (also agents[{agents[agent.id]}])",
                    )
                )
            agents.setdefault(agent.id, index)
            site = agent.site or self.site.id
            for n, device in enumerate(agent.devices):
                where: Loc = ("agents", index, "devices", n)
                if device not in devices:
                    problems.append((where, f"'{device}' is not in the device registry"))
                elif device in owner:
                    problems.append(
                        (where, f"'{device}' is already read by agents[{owner[device]}]")
                    )
                elif self.device_site(device) != site:
                    problems.append(
                        (
                            where,
                            f"'{device}' belongs to site '{self.device_site(device)}', "
                            f"the agent to '{site}'",
                        )
                    )
                owner.setdefault(device, index)
        return problems

    def agent_site(self, agent_id: str) -> str | None:
        """The site of a registered agent; None when it is not registered."""
        for agent in self.agents:
            if agent.id == agent_id:
                return agent.site or self.site.id
        return None

    def device_site(self, device_id: str) -> str:
        """The site of a device: its registry entry's site, else this installation's site."""
        for device in self.devices:
            if device.id == device_id:
                return device.site or self.site.id
        return self.site.id

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        plan = active_plan()
        if plan is None:
            # Constructed directly (not through load_settings): same sources, from
            # this process's environment, failing at once on a source problem.
            config = os.environ.get(CONFIG_ENV)
            plan = SourcePlan(
                settings_cls,
                Path(config) if config else None,
                os.environ,
                defer_problems=False,
            )
        return (init_settings, *plan.sources(settings_cls))
