"""Configuration errors, rendered for humans one per line.

Every problem reads `SOURCE: key.path: message`. Messages come from each
pydantic error's `msg` (never `str(ValidationError)`, which echoes the input
value - possibly a secret) or from our own validators.
"""

from __future__ import annotations

import difflib
import re
import tomllib
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from fleet.config.base import PROBLEMS_ERROR_TYPE, Loc, format_loc

_TOML_POSITION_RE = re.compile(r"^(?P<msg>.*) \(at line (?P<line>\d+), column (?P<col>\d+)\)$")
_TOML_END_SUFFIX = " (at end of document)"


class ConfigError(Exception):
    """The configuration cannot be used; `problems` holds one rendered line per problem."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems: list[str] = list(problems)
        super().__init__("\n".join(self.problems))


def toml_syntax_problem(source: str, exc: tomllib.TOMLDecodeError, text: str) -> str:
    """Render a TOML syntax error as `file: line N, column M: message`."""
    message = str(exc)
    match = _TOML_POSITION_RE.match(message)
    if match:
        return f"{source}: line {match['line']}, column {match['col']}: {match['msg']}"
    if message.endswith(_TOML_END_SUFFIX):
        lines = text.split("\n")
        message = message.removesuffix(_TOML_END_SUFFIX)
        return f"{source}: line {len(lines)}, column {len(lines[-1]) + 1}: {message}"
    return f"{source}: {message}"


def render_validation_error(
    exc: ValidationError,
    root: type[BaseModel],
    source_for: Callable[[Loc], str],
    *,
    skip: Callable[[Loc], bool] = lambda loc: False,
) -> list[str]:
    """One `SOURCE: key.path: message` line per error in `exc`.

    `root` is the model that was validated (to suggest names for unknown keys);
    `source_for` says where the value at a location came from; locations for
    which `skip` is true are left out (their cause was already reported).
    """
    lines: list[str] = []
    for error in exc.errors(include_url=False, include_input=False):
        for loc, message in _expand(error, root):
            if skip(loc):
                continue
            line = f"{source_for(loc)}: {format_loc(loc) or '(top level)'}: {message}"
            if line not in lines:
                lines.append(line)
    return lines


def _expand(error: Any, root: type[BaseModel]) -> Iterator[tuple[Loc, str]]:
    loc: Loc = tuple(error["loc"])
    kind = error["type"]
    if kind == PROBLEMS_ERROR_TYPE:
        for sub_loc, message in error["ctx"]["problems"]:
            yield loc + tuple(sub_loc), message
        for sub_loc, new in error["ctx"].get("renamed", ()):
            old_loc = loc + tuple(sub_loc)
            yield old_loc, renamed_message(old_loc, new)
    elif kind == "extra_forbidden":
        model = _model_at(root, loc[:-1])
        new = renamed_key(model, loc[-1]) if loc else None
        yield loc, renamed_message(loc, new) if new else unknown_key_message(model, loc)
    elif kind == "missing":
        yield loc, "required key is missing"
    else:
        yield loc, str(error["msg"])


def renamed_key(model: type[BaseModel] | None, key: str | int) -> str | None:
    """The new name of `key` if `model` renamed it (its `renamed_keys`), else None."""
    renamed: Mapping[str, str] = getattr(model, "renamed_keys", {})
    return renamed.get(key) if isinstance(key, str) else None


def renamed_message(loc: Loc, new: str) -> str:
    """`renamed to <full path of the new key>`, for an old key at `loc`."""
    return f"renamed to {format_loc((*loc[:-1], new))}"


def unknown_key_message(model: type[BaseModel] | None, loc: Loc) -> str:
    """Why the key at `loc` of `model` is refused: unknown, perhaps with a did-you-mean."""
    key = loc[-1] if loc else ""
    if model is None or not isinstance(key, str):
        return "unknown key"
    close = difflib.get_close_matches(key.lower(), list(model.model_fields), n=1)
    if close:
        return f"unknown key; did you mean '{close[0]}'?"
    return "unknown key"


def _model_at(root: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    """The model class that validates the value at `loc`, if any."""
    current: Any = root
    for part in loc:
        current = _unwrap(current)
        if isinstance(part, int):
            args = get_args(current)
            current = args[0] if get_origin(current) is list and args else None
        elif isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(part)
            if field is None:
                return None
            current = field.annotation
        else:
            return None
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return current
    return None


def _unwrap(annotation: Any) -> Any:
    origin = get_origin(annotation)
    if origin is Annotated:
        return _unwrap(get_args(annotation)[0])
    if origin is Union or origin is types.UnionType:
        members = [arg for arg in get_args(annotation) if arg is not type(None)]
        if len(members) == 1:
            return _unwrap(members[0])
    return annotation
