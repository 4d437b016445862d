"""What every `fleet` sub-command shares: loading the settings and the exit code for bad ones.

A leaf module: `daemon/cli.py` imports the sub-command modules, and they import
this, never `cli` - so there is no import cycle between the entry point and
its commands.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Final

from fleet.config import ConfigError, FleetSettings, load_settings

EX_CONFIG: Final = 78
"""Exit code of a bad configuration (sysexits' EX_CONFIG); systemd's
`RestartPreventExitStatus=78` stops a restart loop on it."""


def load_config(path: Path | None) -> FleetSettings | None:
    """The settings, or None after printing every problem to stderr (exit with EX_CONFIG)."""
    try:
        return load_settings(path)
    except ConfigError as exc:
        for problem in exc.problems:
            sys.stderr.write(problem + "\n")
        return None
