"""`load_settings`: build `FleetSettings` from a TOML file, the environment and secret files."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import ValidationError

from fleet.config.errors import ConfigError, render_validation_error
from fleet.config.settings import FleetSettings
from fleet.config.sources import CONFIG_ENV, SourcePlan, activated


def resolve_config_path(
    path: Path | None = None, environ: Mapping[str, str] | None = None
) -> Path | None:
    """The TOML file to load: `path`, else `$FLEET_CONFIG`, else None (no file)."""
    if path is not None:
        return path
    env = os.environ if environ is None else environ
    value = env.get(CONFIG_ENV)
    return Path(value) if value else None


def load_settings(
    path: Path | None = None, *, environ: Mapping[str, str] | None = None
) -> FleetSettings:
    """Load and validate the settings; ConfigError lists every problem found.

    `path` None means `$FLEET_CONFIG`, and without that no file (defaults and
    environment only); `environ` None means `os.environ`.
    """
    env = os.environ if environ is None else environ
    return load_with(
        SourcePlan(FleetSettings, resolve_config_path(path, env), env, defer_problems=True)
    )


def load_with(plan: SourcePlan) -> FleetSettings:
    """`load_settings` through a source plan of the caller's (one that opens fewer files:
    `fleet broker-config`); ConfigError lists every problem found, secrets scrubbed."""
    try:
        with activated(plan):
            settings = FleetSettings()
    except ValidationError as exc:
        # `from None`: the ValidationError's own text shows input values.
        problems = plan.problems + render_validation_error(
            exc, FleetSettings, plan.source_for, skip=plan.failed_locs.__contains__
        )
        raise ConfigError(plan.scrub(problems)) from None
    if plan.problems:
        raise ConfigError(plan.scrub(plan.problems))
    return settings
