"""`fleet check-config` warns when the agent reads devices its [[agents]] entry does not list:
a generated broker refuses those publishes."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet.config import load_settings
from fleet.daemon.check_warnings import config_warnings
from tests.config.test_config import run_check_config

REGISTRY = """
[site]
id = "allingtown"

[[devices]]
id = "sw-01"
kind = "segway"

[[devices]]
id = "sw-02"
kind = "segway"

[[agents]]
id = "dock-a"
devices = ["sw-01"]
"""


def driver(device: str, n: int) -> str:
    return f"""
[[agent.drivers]]
kind = "ninebot_serial"
device = "{device}"
port = "/dev/ttyUSB{n}"
"""


def warnings_of(tmp_path: Path, agent: str, drivers: str, registry: str = REGISTRY) -> list[str]:
    path = tmp_path / "fleet.toml"
    path.write_text(f'{registry}\n[agent]\n{agent}\n{drivers}\n[spool]\npath = "{tmp_path}/s"\n')
    path.chmod(0o600)
    lines = config_warnings(load_settings(path, environ={}), path)
    return [line for line in lines if line.startswith("warning: agent.")]


def test_a_device_the_registration_does_not_list(tmp_path: Path) -> None:
    found = warnings_of(tmp_path, 'id = "dock-a"', driver("sw-01", 0) + driver("sw-02", 1))
    assert found == [
        "warning: agent.drivers[1].device: 'sw-02' is not among the devices of agents[0] "
        "('dock-a'): a generated broker refuses its readings (they are kept in the outbox's "
        "refused table, not delivered); add it to agents[0].devices and run fleet "
        "broker-config again"
    ]


@pytest.mark.parametrize(
    ("agent", "drivers", "registry"),
    [
        pytest.param('id = "dock-a"', driver("sw-01", 0), REGISTRY, id="all-listed"),
        pytest.param('id = "dock-a"', "", REGISTRY, id="no-drivers: not an agent's file"),
        pytest.param(
            'id = "dock-a"',
            driver("sw-02", 0),
            REGISTRY.split("[[agents]]")[0],
            id="no-agents-registered",
        ),
    ],
)
def test_no_warning(tmp_path: Path, agent: str, drivers: str, registry: str) -> None:
    assert warnings_of(tmp_path, agent, drivers, registry) == []


def test_an_agent_not_registered(tmp_path: Path) -> None:
    (line,) = warnings_of(tmp_path, 'id = "dock-z"', driver("sw-01", 0))
    assert line.startswith("warning: agent.id: 'dock-z' is not registered in [[agents]]")


def test_an_agent_registered_under_another_site(tmp_path: Path) -> None:
    (line,) = warnings_of(tmp_path, 'id = "dock-a"\nsite = "westhaven"', driver("sw-01", 0))
    assert line.startswith(
        "warning: agent.site: the agent publishes its availability under site 'westhaven', "
        "but agents[0] registers it under 'allingtown'"
    )


def test_the_command_prints_it_and_exits_0(tmp_path: Path) -> None:
    path = tmp_path / "fleet.toml"
    path.write_text(f'{REGISTRY}\n[agent]\nid = "dock-a"\n{driver("sw-02", 0)}')
    path.chmod(0o600)
    result = run_check_config("--config", str(path))
    assert result.returncode == 0, result.stderr
    assert "warning: agent.drivers[0].device: 'sw-02' is not among" in result.stderr
