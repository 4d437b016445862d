"""A small YAML writer for the provisioning files, in the layout a person would write them.

PyYAML's dumper cannot keep a header comment, indents list items flush with their key and has
no per-mapping choice of flow style, so the files would read worse than the hand-written ones
they replace. This writer knows only what provisioning needs: mappings with identifier keys,
lists, strings, integers, booleans, and `Flow` mappings written on one line. Any string that a
YAML reader could take for something else is single-quoted (tests/grafana checks that every
file reads back as the data it was written from).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PLAIN_START = re.compile(r"[A-Za-z0-9_$/.(]")
# Everything a YAML 1.1 reader such as PyYAML may resolve to a non-string (YAML 1.2 readers
# resolve less): booleans, null, numbers in any base, sexagesimals, timestamps, infinities.
_NOT_A_STRING = re.compile(
    r"(?i)y|n|yes|no|true|false|on|off|null|~|[-+]?\.?[0-9][0-9a-fA-F_,.:xXoObB+-]*|[-+]?\.(inf|nan)"
)
_FLOW_INDICATORS = frozenset(",[]{}")


class Flow(dict[str, object]):
    """A mapping written on one line: `{ from: 900, to: 0 }`."""


def document(comment: str, data: Mapping[str, object]) -> str:
    """The YAML text of `data`, after `comment` as `#` lines."""
    lines = [f"# {line}".rstrip() for line in comment.splitlines()]
    lines += _mapping(data, 0)
    return "\n".join(lines) + "\n"


def _mapping(data: Mapping[str, object], indent: int) -> list[str]:
    pad = " " * indent
    lines: list[str] = []
    for key, value in data.items():
        lines += _entry(pad, key, value, indent)
    return lines


def _entry(pad: str, key: str, value: object, indent: int) -> list[str]:
    if not _KEY.fullmatch(key):
        raise ValueError(f"YAML key {key!r} is not a plain identifier")
    if isinstance(value, Mapping) and not isinstance(value, Flow):
        return [f"{pad}{key}:", *_mapping(value, indent + 2)]
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [f"{pad}{key}:", *_sequence(value, indent + 2)]
    return [f"{pad}{key}: {_inline(value)}"]


def _sequence(items: Sequence[object], indent: int) -> list[str]:
    pad = " " * indent
    lines: list[str] = []
    for item in items:
        if isinstance(item, Mapping) and not isinstance(item, Flow):
            # The first entry shares the dash's line; the rest align under it.
            body = _mapping(item, indent + 2)
            lines += [f"{pad}- {body[0].lstrip()}", *body[1:]]
        else:
            lines.append(f"{pad}- {_inline(item)}")
    return lines


def _inline(value: object, *, flow: bool = False) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return scalar(value, flow=flow)
    if isinstance(value, Flow):
        return "{ " + ", ".join(f"{k}: {_inline(v, flow=True)}" for k, v in value.items()) + " }"
    if isinstance(value, Sequence):
        return "[" + ", ".join(_inline(v, flow=True) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} {value!r} as YAML")


def scalar(text: str, *, flow: bool = False) -> str:
    """`text` plain where a YAML reader gives it back as this string, else single-quoted.
    Inside `{ }` or `[ ]` (flow) the flow indicators end a plain scalar, so they quote too."""
    if "\n" in text or any(ord(c) < 0x20 for c in text):
        raise ValueError(f"YAML scalar {text!r} has a line break or control character")
    plain = (
        _PLAIN_START.match(text) is not None
        and not _NOT_A_STRING.fullmatch(text)
        and ": " not in text
        and " #" not in text
        and not text.endswith((" ", ":"))
        # Go-template text ({{ $labels.x }}) is quoted so that nobody reads it as flow YAML.
        and "{{" not in text
        and not (flow and any(c in _FLOW_INDICATORS for c in text))
    )
    return text if plain else "'" + text.replace("'", "''") + "'"
