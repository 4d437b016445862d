"""Where alert notifications go: routes of apprise URLs by severity, and delivery limits.

The URLs carry passwords and tokens, so they are secrets (`SecretStr`, never
printed). Each route can also come from a file of URLs, one per line
(`warning_file`), or from the systemd credential named after its key path
(`alerts.notify.warning`); see `config.secrets`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

from pydantic import Field, SecretStr

from fleet.config.base import StrictModel

_DAY_S = 86_400.0


class NotifySettings(StrictModel):
    """Where people are told, through apprise URLs (mailto://, json://, ntfy://, ...)."""

    renamed_keys: ClassVar[Mapping[str, str]] = {
        "retry_initial_s": "delivery_backoff_initial_s",
        "retry_max_s": "delivery_backoff_max_s",
    }

    warning: list[SecretStr] = Field(
        default_factory=list,
        description="apprise URLs notified of warning alerts (fire, resolve, repeat). URLs "
        "carry passwords and tokens: they are secrets and are never printed.",
    )
    critical: list[SecretStr] = Field(
        default_factory=list, description="apprise URLs notified of critical alerts."
    )
    escalation: list[SecretStr] = Field(
        default_factory=list,
        description="apprise URLs told when an unacknowledged critical alert escalates "
        "before the next shift (e.g. the shift supervisor).",
    )
    warning_file: Path | None = Field(
        default=None,
        description="File of the warning URLs, one per line ('#' comments and blank lines "
        "ignored); replaces `warning`. Or the systemd credential 'alerts.notify.warning'.",
    )
    critical_file: Path | None = Field(
        default=None,
        description="File of the critical URLs, as warning_file; or the credential "
        "'alerts.notify.critical'.",
    )
    escalation_file: Path | None = Field(
        default=None,
        description="File of the escalation URLs, as warning_file; or the credential "
        "'alerts.notify.escalation'.",
    )
    attempts: int = Field(
        default=8, ge=1, le=50, description="Tries per URL before a delivery counts as failed."
    )
    delivery_backoff_initial_s: float = Field(
        default=20.0, gt=0, le=3600, description="First retry delay (s); doubles per retry."
    )
    delivery_backoff_max_s: float = Field(
        default=900.0, gt=0, le=_DAY_S, description="Longest retry delay (s)."
    )
    min_interval_s: float | None = Field(
        default=None,
        ge=0,
        le=3600,
        description="Least time (s) between two sends through one URL; unset keeps apprise's "
        "own per-service pause (5.5 s for e-mail).",
    )
    max_pending: int = Field(
        default=1000,
        ge=1,
        le=100_000,
        description="Deliveries waiting at most (kept with the alert state across restarts); "
        "beyond it a warning is dropped before a critical, the oldest first, and counted.",
    )

    def routes(self) -> dict[str, list[str]]:
        return {
            "warning": [u.get_secret_value() for u in self.warning],
            "critical": [u.get_secret_value() for u in self.critical],
            "escalation": [u.get_secret_value() for u in self.escalation],
        }
