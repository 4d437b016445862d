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
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    # Imported here so `fleet --help` stays fast and a broken optional module
    # cannot stop the other sub-commands from loading.
    from fleet.daemon import cmd_check_config, status_command, user_command
    from fleet.daemon.agent import command as agent_command
    from fleet.daemon.broker import command as broker_command
    from fleet.daemon.collector import command as collector_command
    from fleet.daemon.collector import deadletter_command
    from fleet.daemon.simulate import command as simulate_command

    parser = argparse.ArgumentParser(
        prog="fleet", description="Fleet telemetry: collector, simulator and tools."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (
        cmd_check_config,
        collector_command,
        deadletter_command,
        simulate_command,
        agent_command,
        status_command,
        user_command,
        broker_command,
    ):
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
