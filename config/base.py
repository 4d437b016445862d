"""Shared building blocks of the configuration models.

`StrictModel` is the base of every section: unknown keys are errors (a renamed
key's error names its new name), NaN and infinity are refused, and settings
are immutable once loaded. The id types implement the wire contract's id rule
for config values, with messages that never echo the rejected value (it could
be a mistyped secret).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, SecretStr, field_validator
from pydantic_core import PydanticCustomError

from fleet.drivers.backoff import check_backoff_pair
from fleet.drivers.contract import ID_PATTERN, RESERVED_KINDS

_ID_RE = re.compile(ID_PATTERN)

PROBLEMS_ERROR_TYPE = "fleet_problems"
"""Error type whose context carries several `(relative loc, message)` problems."""

Loc = tuple[str | int, ...]


class StrictModel(BaseModel):
    """Base of every configuration section."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    # Old key -> new key: the loader refuses an old key with a message naming the new one.
    renamed_keys: ClassVar[Mapping[str, str]] = {}

    # Every `<what>_backoff_max_s` must be at least its `<what>_backoff_initial_s`.
    _check_backoff = field_validator("*")(check_backoff_pair)


def format_loc(loc: Sequence[str | int]) -> str:
    """Render a pydantic location as a key path: `devices[2].kind`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def problems_error(
    problems: Sequence[tuple[Loc, str]], renamed: Sequence[tuple[Loc, str]] = ()
) -> PydanticCustomError:
    """An error for a cross-field validator that names the exact keys at fault.

    A model validator's error is located at the model itself; the renderer in
    `config.errors` appends each problem's relative location instead, and can
    report several problems from one validator. `renamed` holds `(relative loc
    of an old key, its new name)`: the renderer names the new key by its full path.
    """
    summary = "; ".join(
        [f"{format_loc(loc)}: {message}" for loc, message in problems]
        + [f"{format_loc(loc)}: renamed to {new}" for loc, new in renamed]
    )
    return PydanticCustomError(
        PROBLEMS_ERROR_TYPE,
        "{summary}",
        {
            "summary": summary,
            "problems": [(tuple(loc), message) for loc, message in problems],
            "renamed": [(tuple(loc), new) for loc, new in renamed],
        },
    )


def raise_problems(problems: Sequence[tuple[Loc, str]]) -> None:
    """Raise `problems_error` if there are any problems."""
    if problems:
        raise problems_error(problems)


def _check_id(value: str) -> str:
    if not _ID_RE.fullmatch(value):
        raise PydanticCustomError(
            "fleet_id",
            "must be 1-64 characters of letters, digits, '_', '.' or '-', "
            "starting with a letter or digit",
        )
    return value


def _check_kind(value: str) -> str:
    if value in RESERVED_KINDS:
        raise PydanticCustomError(
            "fleet_reserved_kind",
            "'agent' and 'alerts' are reserved topic levels and cannot be device kinds",
        )
    return value


def _check_secret(value: SecretStr) -> SecretStr:
    if not value.get_secret_value():
        raise PydanticCustomError("fleet_empty_secret", "must not be empty")
    return value


IdStr = Annotated[str, AfterValidator(_check_id)]
KindStr = Annotated[str, AfterValidator(_check_id), AfterValidator(_check_kind)]
Secret = Annotated[SecretStr, AfterValidator(_check_secret)]


def coerce_number_to_str(value: Any) -> Any:
    """Let `protocol = 5` in TOML mean the string "5" (bools are not numbers here)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value
