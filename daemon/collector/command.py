"""`fleet collector`: run the collector until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import logging
import signal
import sqlite3
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from fleet.daemon.cli_support import EX_CONFIG, load_config
from fleet.daemon.logs import setup_logging

_LOG = logging.getLogger(__name__)


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "collector",
        help="carry telemetry from MQTT into InfluxDB (validate, spool, write)",
        description="Subscribe to the fleet's telemetry, validate it, spool it to disk and "
        "write it to InfluxDB. Stops cleanly on SIGTERM.",
    )
    parser.add_argument("--config", type=Path, help="TOML configuration file (or FLEET_CONFIG)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    settings = load_config(args.config)
    if settings is None:
        return EX_CONFIG
    setup_logging(settings.log_level)

    from fleet.daemon.collector.app import Collector

    try:
        collector = Collector(settings)
    except (OSError, sqlite3.Error) as exc:
        # The usual cause: http.bind's port is taken (another collector?) or a state
        # file's directory is not writable. Exit 1: systemd retries, unlike a bad config (78).
        _LOG.error("cannot start the collector: %s", exc)
        return 1
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        _LOG.info("received %s", signal.Signals(signum).name)
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    undo = collector.start()
    try:
        while not stopping.wait(0.5):
            if collector.stopped.is_set():
                break
    finally:
        undo()
    return 1 if collector.stopped.is_set() and not stopping.is_set() else 0
