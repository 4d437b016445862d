"""Where settings come from, and which source supplied each value.

Precedence, highest first (a higher source overrides single keys of a lower
one; tables merge key by key, lists are replaced whole):

1. environment variables `FLEET_<SECTION>__<KEY>` (e.g. `FLEET_MQTT__PORT=1884`;
   lists and tables as JSON, e.g. `FLEET_KINDS='["segway","handheld"]'`);
2. systemd credentials: a file named after the key path (`mqtt.password`,
   `influx.token`, `influx.password`) in `$CREDENTIALS_DIRECTORY`;
3. `*_file` keys (`mqtt.password_file`, ...): the named file's content,
   trailing newline stripped;
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

_LOG = logging.getLogger(__name__)

ENV_PREFIX = "FLEET_"
ENV_NESTED_DELIMITER = "__"
CONFIG_ENV = "FLEET_CONFIG"
CREDENTIALS_ENV = "CREDENTIALS_DIRECTORY"

SECRET_KEYS: tuple[tuple[str, str], ...] = (
    ("mqtt", "password"),
    ("influx", "token"),
    ("influx", "password"),
)
"""Secrets that a credential or a `<key>_file` can supply."""

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


def _walk(data: Any, loc: Loc) -> tuple[bool, Any]:
    """Whether nested dicts/lists `data` hold a value at `loc`, and that value."""
    for part in loc:
        in_dict = isinstance(data, dict) and part in data
        in_list = isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data)
        if not (in_dict or in_list):
            return False, None
        data = data[part]
    return True, data


def _read_secret(path: Path) -> str:
    """A secret file's content without its trailing newline; OSError or ValueError if unusable."""
    value = path.read_text(encoding="utf-8").rstrip("\r\n")
    if not value:
        raise ValueError("is empty")
    return value


def _secret_problem(path: Path, exc: Exception) -> str:
    if isinstance(exc, OSError):
        return f"cannot read {path}: {exc.strerror or type(exc).__name__}"
    if isinstance(exc, UnicodeDecodeError):
        return f"{path} is not UTF-8 text"
    return f"{path} {exc}"


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
        if _walk(self.env_data, loc)[0]:
            name = self._env_var_for(loc)
            if name is not None:
                return f"environment {name}"
        if loc in self.credential_files:
            return f"credential {self.credential_files[loc]}"
        if loc in self.file_keys:
            return self.source_for(self.file_keys[loc])
        return self.source_name

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
        for section, key in SECRET_KEYS:
            sources = (self.merged, self.env_data, self.credential_data, self.file_data)
            for data in (*sources, self.toml_data):
                found, value = _walk(data, (section, key))
                if found and isinstance(value, str):
                    yield value
                elif found and hasattr(value, "get_secret_value"):
                    yield str(value.get_secret_value())
            raw = self._env_value((section, key))
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
        return data


class _CredentialsSource(_DictSource):
    """Secrets from systemd credentials: `$CREDENTIALS_DIRECTORY/mqtt.password` and friends."""

    def __init__(self, settings_cls: type[BaseSettings], plan: SourcePlan) -> None:
        super().__init__(settings_cls, {})
        self._plan = plan

    def __call__(self) -> dict[str, Any]:
        directory = self._plan.environ.get(CREDENTIALS_ENV)
        if not directory:
            return {}
        data: dict[str, Any] = {}
        for section, key in SECRET_KEYS:
            path = Path(directory) / f"{section}.{key}"
            if not path.exists():
                continue
            try:
                value = _read_secret(path)
            except (OSError, ValueError) as exc:
                self._plan.problems.append(
                    f"credential {path}: {section}.{key}: {_secret_problem(path, exc)}"
                )
                self._plan.failed_locs.add((section, key))
                continue
            data.setdefault(section, {})[key] = value
            self._plan.credential_files[(section, key)] = path
            _LOG.debug("%s.%s comes from systemd credential %s", section, key, path)
        self._plan.credential_data = data
        return data


class _SecretFileSource(_DictSource):
    """Secrets from the files named by `*_file` keys (set in the environment or the TOML file)."""

    def __init__(self, settings_cls: type[BaseSettings], plan: SourcePlan) -> None:
        super().__init__(settings_cls, {})
        self._plan = plan

    def __call__(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for section, key in SECRET_KEYS:
            file_loc: Loc = (section, f"{key}_file")
            # current_state holds what the higher sources (init, environment) supplied.
            found, value = _walk(self.current_state, file_loc)
            if not found:
                found, value = _walk(self._plan.toml_data, file_loc)
            if not found or not isinstance(value, str | os.PathLike) or not str(value):
                continue  # unset, or a wrong type that validation will report
            path = Path(value)
            try:
                secret = _read_secret(path)
            except (OSError, ValueError) as exc:
                self._plan.add_problem(file_loc, _secret_problem(path, exc))
                self._plan.failed_locs.add((section, key))
                continue
            data.setdefault(section, {})[key] = secret
            self._plan.file_keys[(section, key)] = file_loc
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
