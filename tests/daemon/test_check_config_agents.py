"""`fleet check-config` says when agent availability is taken from anyone (no [[agents]])."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet.daemon.cmd_check_config import UNREGISTERED_AGENTS
from tests.config.test_config import run_check_config

REGISTERED = """
[[devices]]
id = "sw-01"
kind = "segway"

[[agents]]
id = "agent-1"
devices = ["sw-01"]
"""
WARNING = f"warning: {UNREGISTERED_AGENTS}"


@pytest.mark.parametrize(
    ("config", "warned"),
    [
        pytest.param('[site]\nid = "allingtown"\n', True, id="no-agents"),
        pytest.param(f'[site]\nid = "allingtown"\n{REGISTERED}', False, id="agents"),
        pytest.param("[alerts]\nenabled = false\n", False, id="no-alert-engine"),
    ],
)
def test_the_warning_when_no_agent_is_registered(tmp_path: Path, config: str, warned: bool):
    path = tmp_path / "fleet.toml"
    path.write_text(config)
    path.chmod(0o600)  # no warning about who can read it
    result = run_check_config("--config", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"ok: {path}\n")
    assert (WARNING in result.stderr.splitlines()) is warned, result.stderr
    assert WARNING.startswith("warning: agents: none registered, so the collector takes agent")
