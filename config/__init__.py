"""Configuration of the fleet processes: pydantic-settings models and their loader.

`load_settings()` reads one TOML file (`--config` / `$FLEET_CONFIG`, optional),
`FLEET_*` environment variables, systemd credentials and `*_file` secrets into
a validated, immutable `FleetSettings`, or raises `ConfigError` listing every
problem as `SOURCE: key.path: message`. Annotated examples: config/examples/.
"""

# First: pydantic-settings without asyncio (without_asyncio.py says why).
from fleet.config import without_asyncio  # noqa: F401  # isort: skip
from fleet.config.agent import AgentSettings
from fleet.config.collector import CollectorSettings, HttpSettings, SpoolSettings
from fleet.config.devices import DeviceConfig, SiteSettings
from fleet.config.errors import ConfigError
from fleet.config.influx import InfluxSettings
from fleet.config.loader import load_settings, resolve_config_path
from fleet.config.mqtt import MqttSettings, MqttTls
from fleet.config.settings import FleetSettings

__all__ = [
    "AgentSettings",
    "CollectorSettings",
    "ConfigError",
    "DeviceConfig",
    "FleetSettings",
    "HttpSettings",
    "InfluxSettings",
    "MqttSettings",
    "MqttTls",
    "SiteSettings",
    "SpoolSettings",
    "load_settings",
    "resolve_config_path",
]
