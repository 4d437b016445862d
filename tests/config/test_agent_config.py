"""`[agent]` settings: defaults, driver tables picked by kind, error lines, the registry."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import get_args

import pytest

from fleet.config import ConfigError, load_settings
from fleet.config.agent import DriverSettings
from fleet.daemon.agent.registry import KINDS, build_specs
from fleet.drivers.base import DriverConfig
from tests.harness.paths import REPO

EXAMPLE = REPO / "config" / "examples" / "agent.toml"


def load(tmp_path: Path, text: str):
    path = tmp_path / "fleet.toml"
    path.write_text(text)
    return load_settings(path, environ={})


def test_defaults(tmp_path: Path) -> None:
    agent = load(tmp_path, "").agent
    assert (agent.id, agent.site, agent.mqtt_client_id) == ("agent-1", None, "fleet-agent-agent-1")
    assert agent.site_or("allingtown") == "allingtown"
    assert agent.ble_watchdog_s == 120
    assert agent.drivers == []


def test_the_registry_and_the_config_union_list_the_same_drivers() -> None:
    union = set(get_args(get_args(DriverSettings)[0]))
    assert {entry.config for entry in KINDS.values()} == union
    for name, entry in KINDS.items():
        assert entry.config.model_fields["kind"].default == name
        assert getattr(entry.driver, "kind") == name  # noqa: B009 - a Callable to mypy
        segway = name.startswith(("ninebot_", "segway_pt_"))
        assert entry.device_kind == ("segway" if segway else "handheld")


def test_driver_tables_are_picked_by_kind(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        """
[[agent.drivers]]
kind = "ninebot_serial"
device = "sw-01"
port = "/dev/ttyUSB0"

[[agent.drivers]]
kind = "nmea_gps"
device = "hh-01"
port = "/dev/ttyACM0"
""",
    )
    specs = build_specs(settings)
    assert [(s.name, s.device_kind, s.ble) for s in specs] == [
        ("ninebot_serial:sw-01", "segway", False),
        ("nmea_gps:hh-01", "handheld", False),
    ]


def test_driver_errors_name_the_table_and_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load(
            tmp_path,
            """
[[agent.drivers]]
kind = "ninebot_serial"
device = "sw-01"
port = "/dev/ttyUSB0"

[[agent.drivers]]
kind = "segway"

[[agent.drivers]]
kind = "nmea_gps"
device = "hh 1"
port = "/dev/ttyACM0"
baudrat = 9600

[[agent.drivers]]
device = "x"
""",
        )
    src = tmp_path / "fleet.toml"
    kinds = ", ".join(KINDS)
    assert caught.value.problems == [
        f"{src}: agent.drivers[1].kind: is not a driver kind; expected one of: {kinds}",
        f"{src}: agent.drivers[2].device: String should match pattern "
        "'^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'",
        f"{src}: agent.drivers[2].baudrat: unknown key; did you mean 'baudrate'?",
        f"{src}: agent.drivers[3].kind: required key is missing (one of: {kinds})",
    ]


def test_backoff_max_below_initial_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, "[agent]\nrestart_backoff_initial_s = 10\nrestart_backoff_max_s = 5\n")
    assert caught.value.problems == [
        f"{tmp_path / 'fleet.toml'}: agent.restart_backoff_max_s: "
        "must be at least restart_backoff_initial_s"
    ]


def test_driver_backoff_max_below_initial_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load(
            tmp_path,
            """
[[agent.drivers]]
kind = "ninebot_ble"
device = "sw-01"
address = "D4:3D:7E:12:34:56"
encrypted_backoff_initial_s = 60
encrypted_backoff_max_s = 30
""",
        )
    assert caught.value.problems == [
        f"{tmp_path / 'fleet.toml'}: agent.drivers[0].encrypted_backoff_max_s: "
        "must be at least encrypted_backoff_initial_s"
    ]


def test_renamed_driver_keys_are_refused_naming_the_new_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load(
            tmp_path,
            """
[[agent.drivers]]
kind = "ninebot_serial"
device = "sw-01"
port = "/dev/ttyUSB0"
reopen_backoff_s = 1.0

[[agent.drivers]]
kind = "ninebot_ble"
device = "sw-02"
address = "D4:3D:7E:12:34:56"
reconnect_backoff_s = 2.0
encrypted_backoff_s = 60.0

[[agent.drivers]]
kind = "ble_battery"
device = "hh-01"
address = "C8:2B:96:A1:B2:C3"
backoff_initial_s = 2.0
backoff_max_s = 120.0
backof_max_s = 120.0
""",
        )
    src = tmp_path / "fleet.toml"
    drivers = "agent.drivers"
    assert sorted(caught.value.problems) == sorted(
        [
            f"{src}: {drivers}[0].reopen_backoff_s: "
            f"renamed to {drivers}[0].reopen_backoff_initial_s",
            f"{src}: {drivers}[1].reconnect_backoff_s: "
            f"renamed to {drivers}[1].reconnect_backoff_initial_s",
            f"{src}: {drivers}[1].encrypted_backoff_s: "
            f"renamed to {drivers}[1].encrypted_backoff_initial_s",
            f"{src}: {drivers}[2].backoff_initial_s: "
            f"renamed to {drivers}[2].reconnect_backoff_initial_s",
            f"{src}: {drivers}[2].backoff_max_s: renamed to {drivers}[2].reconnect_backoff_max_s",
            # A typo is still an unknown key, with the new name as the suggestion.
            f"{src}: {drivers}[2].backof_max_s: unknown key; did you mean 'reconnect_backoff_max_s'?",
        ]
    )


def test_every_driver_config_declares_device_once_in_the_base() -> None:
    for kind, entry in KINDS.items():
        model = entry.config
        assert issubclass(model, DriverConfig), kind
        assert "device" in model.model_fields, kind
        assert "device" not in vars(model).get("__annotations__", {}), kind


def test_the_example_loads_with_every_driver_kind() -> None:
    settings = load_settings(EXAMPLE, environ={})
    assert {d.kind for d in settings.agent.drivers} == set(KINDS)
    data = tomllib.loads(EXAMPLE.read_text())
    assert len(data["agent"]["drivers"]) == len(settings.agent.drivers)
