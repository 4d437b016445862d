"""`fleet agent`: run the agent until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from pathlib import Path
from typing import Any

from fleet.daemon.cli_support import EX_CONFIG, load_config
from fleet.daemon.logs import setup_logging

_LOG = logging.getLogger(__name__)


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "agent",
        help="read the fleet's devices through their drivers and publish their telemetry",
        description="Run the configured drivers (Ninebot serial/BLE, BLE battery, BTHome, NMEA "
        "GPS), keep their readings in a disk outbox and publish them to MQTT as the v1 "
        "contract. Stops cleanly on SIGTERM.",
    )
    parser.add_argument("--config", type=Path, help="TOML configuration file (or FLEET_CONFIG)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    settings = load_config(args.config)
    if settings is None:
        return EX_CONFIG
    setup_logging(settings.log_level)

    from fleet.daemon.agent.app import Agent

    agent = Agent(settings)

    def on_signal(signum: int) -> None:
        _LOG.info("received %s", signal.Signals(signum).name)
        agent.stop()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, on_signal, signum)
        await agent.run()

    asyncio.run(main())
    return 0
