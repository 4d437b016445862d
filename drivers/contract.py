"""The v1 contract's shared rules, at the bottom layer so that every layer uses the same ones.

The id rule (site, kind, device, agent, rule and topic-prefix levels) lives here: the wire's
topics, the config's id types and the driver configs all take it from this module. The
reading's groups (field names, types, units, ranges) are declared once, in `readings.py`,
with the range markers defined here; the collector validates against those very classes.
"""

from __future__ import annotations

import json
import re

from annotated_types import Interval

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
"""Device, site, kind, agent, rule and topic-prefix ids: one MQTT topic level, one InfluxDB tag."""
ID_RULE = 'ids are letters, digits, "_", "." and "-", at most 64, starting with a letter or digit'
_ID_RE = re.compile(ID_PATTERN[1:-1])  # for fullmatch: Python's "$" accepts a trailing "\n"

# Kinds share the topic level with these fixed words: a device kind named so would collide.
RESERVED_KINDS = frozenset({"agent", "alerts"})

# fmt: off
_CHAR_NAMES = {" ": "a space", ",": "a comma", '"': "a double quote", "'": "a quote",
               "=": "an equals sign", "\n": "a newline", "\t": "a tab", "\r": "a carriage return",
               "/": "a slash", "+": "a '+' wildcard", "#": "a '#' wildcard", "\\": "a backslash"}
# fmt: on


def clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def show(value: object) -> str:
    """A value as JSON (quoted, control characters escaped), clipped for a detail sentence."""
    return clip(json.dumps(value, default=str))


def id_problem(value: str) -> str | None:
    """None for a valid id, else what is wrong with it ("contains a space")."""
    if _ID_RE.fullmatch(value):
        return None
    if not value:
        return "is empty"
    if len(value) > 64:
        return f"is {len(value)} characters long (max 64)"
    bad = next((c for c in value if not (c.isascii() and (c.isalnum() or c in "_.-"))), None)
    if bad is not None:
        return f"contains {_CHAR_NAMES.get(bad, repr(bad))}"
    return f"starts with {value[0]!r}"


def check_id(what: str, value: str) -> str:
    """``value`` if it is a valid id, else ValueError saying which rule it breaks."""
    problem = id_problem(value)
    if problem is not None:
        raise ValueError(f"{what} {show(value)} {problem}; {ID_RULE}")
    return value


def between(low: float, high: float) -> Interval:
    """A field's inclusive range in the contract (``Annotated[float | None, between(0, 100)]``).

    An `annotated_types` marker: pydantic enforces it where the collector and the agent validate,
    and `readings.LIMITS` reads it back for the drivers and the error sentences.
    """
    return Interval(ge=low, le=high)
