"""Logging set-up shared by every `fleet` sub-command.

Under systemd (JOURNAL_STREAM set) the journal stamps time and unit itself,
so lines carry only level, logger and message.
"""

from __future__ import annotations

import logging
import os
import sys


def setup_logging(level: str) -> None:
    if os.environ.get("JOURNAL_STREAM"):
        fmt = "%(levelname)s %(name)s: %(message)s"
    else:
        fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=level, format=fmt, stream=sys.stderr, force=True)
    # paho logs every packet at DEBUG; keep it at WARNING unless asked for.
    logging.getLogger("paho").setLevel(max(logging.getLevelName(level), logging.WARNING))
