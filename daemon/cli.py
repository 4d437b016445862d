"""The `fleet` command: one entry point, one sub-command per job.

Each sub-command lives in its own module and registers itself through
`add_parser(subparsers)`, which sets `handler` on its parser. A handler returns
the process exit code; a bad configuration is always exit code 78 (EX_CONFIG),
so systemd's `RestartPreventExitStatus=78` stops a restart loop. What the
sub-commands share (`load_config`, `EX_CONFIG`) is in `cli_support`, which they
import instead of this module: no import cycle.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Each sub-command and the module that registers it, in the order `fleet --help` lists them.
# Imported by name, and only the one asked for: a sub-command's imports are its own (the
# collector does not carry the agent's, the simulator's or tomlkit for `fleet user`: ~1.9 MB
# resident, issue 14), and a broken optional module cannot stop the others from loading.
COMMANDS: dict[str, str] = {
    "check-config": "fleet.daemon.cmd_check_config",
    "collector": "fleet.daemon.collector.command",
    "deadletters": "fleet.daemon.collector.deadletter_command",
    "simulate": "fleet.daemon.simulate.command",
    "agent": "fleet.daemon.agent.command",
    "status": "fleet.daemon.status_command",
    "user": "fleet.daemon.user_command",
    "broker-config": "fleet.daemon.broker.command",
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The `fleet` parser: with `command` one of COMMANDS, that sub-command alone (the others'
    modules stay unimported); otherwise all of them, for `--help` and an unknown name's error."""
    parser = argparse.ArgumentParser(
        prog="fleet", description="Fleet telemetry: collector, simulator and tools."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in [command] if command in COMMANDS else COMMANDS:
        importlib.import_module(COMMANDS[name]).add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv[0] if argv else None).parse_args(argv)
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
