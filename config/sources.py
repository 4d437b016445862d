"""Where settings come from, and which source supplied each value.

Precedence, highest first (a higher source overrides single keys of a lower
one; tables merge key by key, lists are replaced whole):

1. environment variables `FLEET_<SECTION>__<KEY>` (e.g. `FLEET_MQTT__PORT=1884`;
   lists and tables as JSON, e.g. `FLEET_KINDS='["segway","handheld"]'`);
2. systemd credentials: a file named after the key path (`mqtt.password`,
   `influx.token`, `alerts.notify.warning`, `agent.drivers.<device>.bind_key`)
   in `$CREDENTIALS_DIRECTORY`;
3. `*_file` keys (`mqtt.password_file`, `alerts.notify.warning_file`, a BTHome
   driver's `bind_key_file`, ...): the named file's content, trailing newline
   stripped (a list of URLs: one per line);
4. the TOML file (`--config PATH`, else `$FLEET_CONFIG`, else none);
5. the defaults in the models.

A `SourcePlan` holds one load's inputs (TOML path, environment) and records
what each source supplied, so errors can name the file or variable at fault.
`FleetSettings` picks up the plan that `load_settings` activated, or builds one
from the process environment when constructed directly.
"""

from __future__ import annotations

import difflib
import logging
import os
import tomllib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource

from fleet.config.base import Loc, format_loc
from fleet.config.errors import ConfigError, toml_syntax_problem
from fleet.config.secrets import (
    DRIVERS_LOC,
    SECRET_KEYS,
    fill_drivers,
    read_secret,
    secret_locs,
    secret_problem,
    secret_strings,
    walk,
)

_LOG = logging.getLogger(__name__)

ENV_PREFIX = "FLEET_"
ENV_NESTED_DELIMITER = "__"
CONFIG_ENV = "FLEET_CONFIG"
CREDENTIALS_ENV = "CREDENTIALS_DIRECTORY"

_MIN_SCRUB_LEN = 4  # shorter "secrets" would garble messages more than they protect
_REDACTED = "**********"

_active_plan: ContextVar[SourcePlan | None] = ContextVar("fleet_config_plan", default=None)


@contextmanager
def activated(plan: SourcePlan) -> Iterator[SourcePlan]:
    """Make `plan` the one `FleetSettings()` uses while the block runs (per thread/task)."""
    token = _active_plan.set(plan)
    try:
        yield plan
    finally:
        _active_plan.reset(token)


def active_plan() -> SourcePlan | None:
    """The plan activated by `load_settings`, if a load is in progress."""
    return _active_plan.get()


def _read_toml(path: Path) -> dict[str, Any]:
    """The parsed TOML file; ConfigError if it cannot be read or parsed."""
    source = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            [f"{source}: cannot read: {exc.strerror or type(exc).__name__}"]
        ) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError([f"{source}: not UTF-8 text"]) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([toml_syntax_problem(source, exc, text)]) from None


class SourcePlan:
    """The inputs of one settings load and a record of what each source supplied."""

    def __init__(
        self,
        settings_cls: type[BaseSettings],
        path: Path | None,
        environ: Mapping[str, str],
        *,
        defer_problems: bool,
    ) -> None:
        """Read the TOML file now (ConfigError if it cannot be read or parsed).

        With `defer_problems`, problems found by the sources (a missing secret
        file, bad JSON in a variable) are only collected in `problems` for the
        caller to report together with validation errors; otherwise the
        settings construction raises ConfigError for them.
        """
        self.settings_cls = settings_cls
        self.path = path
        self.environ = environ
        self.defer_problems = defer_problems
        self.problems: list[str] = []
        self.failed_locs: set[Loc] = set()
        self.env_data: dict[str, Any] = {}
        self.credential_data: dict[str, Any] = {}
        self.credential_files: dict[Loc, Path] = {}
        self.file_data: dict[str, Any] = {}
        self.file_keys: dict[Loc, Loc] = {}
        self.merged: dict[str, Any] = {}
        self.read_values: list[str | list[str]] = []  # every secret read, for `scrub`
        self.env_vars: list[tuple[str, tuple[str, ...]]] = self._fleet_env_vars()
        self.toml_data: dict[str, Any] = _read_toml(path) if path is not None else {}

    def sources(self, settings_cls: type[BaseSettings]) -> tuple[PydanticBaseSettingsSource, ...]:
        """The plan's sources, highest precedence first."""
        return (
            _EnvSource(settings_cls, self),
            _CredentialsSource(settings_cls, self),
            _SecretFileSource(settings_cls, self),
            _DictSource(settings_cls, self.toml_data),
            _FinalSource(settings_cls, self),
        )

    @property
    def source_name(self) -> str:
        """How problems from the TOML file (or, without one, the environment) are labelled."""
        return str(self.path) if self.path is not None else "environment"

    def source_for(self, loc: Loc) -> str:
        """Name the source that supplied the value at `loc`: a variable, file or the TOML file."""
        if walk(self.env_data, loc)[0]:
            name = self._env_var_for(loc)
            if name is not None:
                return f"environment {name}"
        for size in range(len(loc), 0, -1):  # an item of a list read from one file
            if loc[:size] in self.credential_files:
                return f"credential {self.credential_files[loc[:size]]}"
            if loc[:size] in self.file_keys:
                return self.source_for(self.file_keys[loc[:size]])
        return self.source_name

    def credential(self, name: str, loc: Loc, *, lines: bool = False) -> str | list[str] | None:
        """The systemd credential `name` for the secret at `loc`; None if there is none.

        An unusable credential is a problem (recorded) and gives None too.
        """
        directory = self.environ.get(CREDENTIALS_ENV)
        if not directory:
            return None
        path = Path(directory) / name
        if not path.exists():
            return None
        try:
            value = read_secret(path, lines=lines)
        except (OSError, ValueError) as exc:
            where = format_loc(loc)
            self.problems.append(f"credential {path}: {where}: {secret_problem(path, exc)}")
            self.failed_locs.add(loc)
            return None
        self.credential_files[loc] = path
        self.read_values.append(value)
        _LOG.debug("%s comes from systemd credential %s", format_loc(loc), path)
        return value

    def secret_file(
        self, file_loc: Loc, named: Any, loc: Loc, *, lines: bool = False
    ) -> str | list[str] | None:
        """The secret at `loc` from the file `named` by the `*_file` key at `file_loc`.

        None when the key is unset or of a wrong type (validation reports that),
        or when the file is unusable: a problem naming the `*_file` key.
        """
        if not isinstance(named, str | os.PathLike) or not str(named):
            return None
        path = Path(named)
        try:
            value = read_secret(path, lines=lines)
        except (OSError, ValueError) as exc:
            self.add_problem(file_loc, secret_problem(path, exc))
            self.failed_locs.add(loc)
            return None
        self.file_keys[loc] = file_loc
        self.read_values.append(value)
        return value

    def fill_driver_secrets(self, drivers: Any, *, inline_wins: bool) -> list[Any] | None:
        """`drivers` with each secret from its credential or file (see `secrets.fill_drivers`)."""
        return fill_drivers(drivers, inline_wins, self.credential, self.secret_file)

    def scrub(self, lines: list[str]) -> list[str]:
        """`lines` with every known secret value replaced, as a last line of defence."""
        secrets = sorted(
            {s for s in self._secret_values() if len(s) >= _MIN_SCRUB_LEN}, key=len, reverse=True
        )
        out = []
        for line in lines:
            for secret in secrets:
                line = line.replace(secret, _REDACTED)
            out.append(line)
        return out

    def add_problem(self, loc: Loc, message: str) -> None:
        """Record a problem with the value at `loc`, attributed to its source."""
        self.problems.append(f"{self.source_for(loc)}: {format_loc(loc)}: {message}")

    def _secret_values(self) -> Iterator[str]:
        for value in self.read_values:
            yield from secret_strings(value)
        for data in (self.merged, self.env_data, self.toml_data):
            for loc in secret_locs(data):
                yield from secret_strings(walk(data, loc)[1])
        for key in SECRET_KEYS:
            raw = self._env_value(key.loc)
            if raw:
                yield raw

    def _env_value(self, path: tuple[str, ...]) -> str | None:
        for name, env_path in self.env_vars:
            if env_path == path:
                return self.environ[name]
        return None

    def _env_var_for(self, loc: Loc) -> str | None:
        """The most specific FLEET_ variable whose key path is a prefix of `loc`."""
        matches = [
            (len(path), name)
            for name, path in self.env_vars
            if len(path) <= len(loc)
            and all(str(part).lower() == segment for part, segment in zip(loc, path, strict=False))
        ]
        return max(matches)[1] if matches else None

    def _fleet_env_vars(self) -> list[tuple[str, tuple[str, ...]]]:
        fields = set(self.settings_cls.model_fields)
        found = []
        for name in self.environ:
            upper = name.upper()
            if not upper.startswith(ENV_PREFIX) or upper == CONFIG_ENV:
                continue
            path = tuple(name[len(ENV_PREFIX) :].lower().split(ENV_NESTED_DELIMITER))
            if path[0] in fields:
                found.append((name, path))
                continue
            _LOG.warning(
                "ignoring environment variable %s: no such setting%s",
                name,
                _env_hint(upper, fields),
            )
        return found


def _env_hint(name: str, fields: set[str]) -> str:
    """A did-you-mean for a FLEET_ variable that names no setting (`name` upper case)."""
    rest = name[len(ENV_PREFIX) :]
    for field in sorted(fields, key=len, reverse=True):
        section = field.upper() + "_"
        if rest.startswith(section) and len(rest) > len(section):
            # The usual slip: one underscore where the nesting needs two.
            return f"; did you mean {ENV_PREFIX}{section}_{rest[len(section) :]}?"
    close = difflib.get_close_matches(rest.lower(), fields, n=1)
    return f"; did you mean {ENV_PREFIX}{close[0].upper()}?" if close else ""


class _DictSource(PydanticBaseSettingsSource):
    """Supplies a ready nested dict (the parsed TOML file, or what a source computed)."""

    def __init__(self, settings_cls: type[BaseSettings], data: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self._data = data

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


class _EnvSource(EnvSettingsSource):
    """pydantic-settings' environment source, reading the plan's environment mapping."""

    def __init__(self, settings_cls: type[BaseSettings], plan: SourcePlan) -> None:
        self._plan = plan  # before super().__init__, which loads the variables
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        if self.case_sensitive:
            return dict(self._plan.environ)
        return {name.lower(): value for name, value in self._plan.environ.items()}

    def prepare_field_value(
        self, field_name: str, field: FieldInfo, value: Any, value_is_complex: bool
    ) -> Any:
        try:
            return super().prepare_field_value(field_name, field, value, value_is_complex)
        except ValueError as exc:
            # Only JSON decoding fails here; its message has a position, not the text.
            names = [
                name
                for name, path in self._plan.env_vars
                if path[0] == field_name and self._plan.environ[name].lstrip()[:1] in "[{"
            ] or [name for name, path in self._plan.env_vars if path[0] == field_name]
            label = ", ".join(sorted(names)) or f"{ENV_PREFIX}{field_name.upper()}"
            self._plan.problems.append(f"environment {label}: {field_name}: not valid JSON: {exc}")
            self._plan.failed_locs.add((field_name,))
            return None

    def __call__(self) -> dict[str, Any]:
        data = super().__call__()
        self._plan.env_data = data
        drivers = self._plan.fill_driver_secrets(walk(data, DRIVERS_LOC)[1], inline_wins=True)
        if drivers is None:
            return data
        return {**data, "agent": {**data["agent"], "drivers": drivers}}


def _put(data: dict[str, Any], loc: tuple[str, ...], value: Any) -> None:
    for part in loc[:-1]:
        data = data.setdefault(part, {})
    data[loc[-1]] = value


class _CredentialsSource(_DictSource):
    """Secrets from systemd credentials: `$CREDENTIALS_DIRECTORY/mqtt.password` and friends."""

    def __init__(self, settings_cls: type[BaseSettings], plan: SourcePlan) -> None:
        super().__init__(settings_cls, {})
        self._plan = plan

    def __call__(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for key in SECRET_KEYS:
            value = self._plan.credential(key.name, key.loc, lines=key.lines)
            if value is not None:
                _put(data, key.loc, value)
        # The TOML file's drivers; the environment's were filled by _EnvSource.
        # current_state holds what the higher sources (init, environment) supplied.
        if not walk(self.current_state, DRIVERS_LOC)[0]:
            toml_drivers = walk(self._plan.toml_data, DRIVERS_LOC)[1]
            drivers = self._plan.fill_driver_secrets(toml_drivers, inline_wins=False)
            if drivers is not None:
                _put(data, DRIVERS_LOC, drivers)
        self._plan.credential_data = data
        return data


class _SecretFileSource(_DictSource):
    """Secrets from the files named by `*_file` keys (set in the environment or the TOML file)."""

    def __init__(self, settings_cls: type[BaseSettings], plan: SourcePlan) -> None:
        super().__init__(settings_cls, {})
        self._plan = plan

    def __call__(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for key in SECRET_KEYS:
            # current_state holds what the higher sources (init, environment) supplied.
            found, named = walk(self.current_state, key.file_loc)
            if not found:
                named = walk(self._plan.toml_data, key.file_loc)[1]
            value = self._plan.secret_file(key.file_loc, named, key.loc, lines=key.lines)
            if value is not None:
                _put(data, key.loc, value)
        self._plan.file_data = data
        return data


class _FinalSource(_DictSource):
    """Runs after every other source: keeps the merged input and fails on source problems."""

    def __init__(self, settings_cls: type[BaseSettings], plan: SourcePlan) -> None:
        super().__init__(settings_cls, {})
        self._plan = plan

    def __call__(self) -> dict[str, Any]:
        self._plan.merged = dict(self.current_state)
        if self._plan.problems and not self._plan.defer_problems:
            raise ConfigError(self._plan.scrub(self._plan.problems))
        return {}
