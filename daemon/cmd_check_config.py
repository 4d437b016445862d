"""`fleet check-config`: validate the configuration without starting anything.

Prints `ok: <file>` and a one-line summary (never a secret) and exits 0, or
prints every problem to stderr, one per line, and exits 78 (EX_CONFIG). Risks of
a usable configuration (a secret others can read, a password sent in clear:
`daemon.check_warnings`) are `warning: ...` lines on stderr; the exit status stays 0.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from fleet.config import FleetSettings, resolve_config_path
from fleet.daemon.check_warnings import config_warnings
from fleet.daemon.cli_support import EX_CONFIG, load_config


def add_parser(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Register `check-config` on the `fleet` command's sub-parsers."""
    parser = subparsers.add_parser(
        "check-config",
        help="validate the configuration and exit",
        description="Load the configuration exactly as the collector does (TOML file, "
        "FLEET_* environment variables, systemd credentials, *_file secrets) and report "
        "every problem. Exit status 0 when usable, 78 when not.",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="PATH",
        help="TOML file (default: $FLEET_CONFIG; without either, defaults and environment only)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Load the configuration; print a summary (0) or the problems (EX_CONFIG)."""
    path: Path | None = args.config
    settings = load_config(path)
    if settings is None:
        return EX_CONFIG
    resolved = resolve_config_path(path)
    shown = str(resolved) if resolved is not None else "(no file: defaults and environment)"
    sys.stdout.write(f"ok: {shown}\n{summary(settings)}\n")
    if not settings.agents and settings.alerts.enabled:
        sys.stderr.write(f"warning: {UNREGISTERED_AGENTS}\n")
    for line in config_warnings(settings, resolved):  # secrets exposed or sent in clear
        sys.stderr.write(line + "\n")
    return 0


UNREGISTERED_AGENTS = (
    "agents: none registered, so the collector takes agent availability from any broker client "
    '(a retained "offline" holds that site\'s offline alerts); list the agents under [[agents]] '
    "so that only theirs counts"
)


def summary(settings: FleetSettings) -> str:
    """One line describing where the collector will connect and write; no secrets."""
    mqtt, influx = settings.mqtt, settings.influx
    tls = "tls" if mqtt.tls.enabled else "plain"
    devices = len(settings.devices)
    return (
        f"site {settings.site.id} ({settings.site.name}); "
        f"mqtt {mqtt.host}:{mqtt.port} ({tls}, MQTT {mqtt.protocol}); "
        f"influx {influx.url} api {influx.api} database {influx.database}; "
        f"spool {settings.spool.path}; "
        f"{devices} device{'' if devices == 1 else 's'}"
    )
