"""Configuration of the fleet processes: pydantic-settings models and their loader.

`load_settings()` reads one TOML file (`--config` / `$FLEET_CONFIG`, optional),
`FLEET_*` environment variables, systemd credentials and `*_file` secrets into
a validated, immutable `FleetSettings`, or raises `ConfigError` listing every
problem as `SOURCE: key.path: message`. Annotated examples: config/examples/.
"""

from config.agent import AgentSettings
from config.collector import CollectorSettings, HttpSettings, SpoolSettings
from config.devices import DeviceConfig, SiteSettings
from config.errors import ConfigError
from config.influx import InfluxSettings
from config.loader import load_settings, resolve_config_path
from config.mqtt import MqttSettings, MqttTls
from config.settings import FleetSettings

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
