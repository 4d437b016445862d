"""Which lines of a batch InfluxDB refused, from the text of its HTTP 400.

InfluxDB writes the good lines of a batch and answers 400 ("partial write")
for the rest, so the batch must never be retried; its bad lines go to the
dead-letter topic. The server names the culprits only in prose, so this module
reads that prose; when it cannot tell, every line of the batch is reported,
which over-reports rather than hides a rejection.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

_UNPARSABLE = re.compile(r"unable to parse '(.*?)': ", re.DOTALL)
_TYPE_CONFLICT = re.compile(r'input field "([^"]+)" on measurement "([^"]+)" is type (\w+)')
_BOOLEANS = frozenset({"t", "T", "true", "True", "TRUE", "f", "F", "false", "False", "FALSE"})
_BEYOND_RETENTION = "points beyond retention policy"


def _measurement(line: str) -> str:
    end = len(line)
    i = 0
    while i < len(line):
        ch = line[i]
        if ch == "\\":
            i += 2
            continue
        if ch in ", ":
            end = i
            break
        i += 1
    return line[:end]


def _value_type(value: str) -> str:
    """InfluxDB's name for the type of a line protocol field value."""
    if value.startswith('"'):
        return "string"
    if value in _BOOLEANS:
        return "boolean"
    if value.endswith("i"):
        return "integer"
    if value.endswith("u"):
        return "unsigned"
    return "float"


def _field_types(line: str) -> dict[str, str]:
    """Field key -> InfluxDB type name, read from a line's field set (quotes and escapes
    respected, so a string value holding `x=1` is not taken for a field)."""
    i, n = 0, len(line)
    while i < n and line[i] != " ":  # the series key
        i += 2 if line[i] == "\\" else 1
    types: dict[str, str] = {}
    while i < n and line[i] in " ,":
        i += 1
        start = i
        while i < n and line[i] != "=":
            i += 2 if line[i] == "\\" else 1
        key = line[start:i]
        i += 1
        start = i
        if i < n and line[i] == '"':
            i += 1
            while i < n and line[i] != '"':
                i += 2 if line[i] == "\\" else 1
            i += 1
        else:
            while i < n and line[i] not in ", ":
                i += 1
        types[key] = _value_type(line[start:i])
        if i >= n or line[i] == " ":
            break
    return types


def _timestamp_ms(line: str) -> int | None:
    tail = line.rsplit(" ", 1)[-1]
    return int(tail) if tail.lstrip("-").isdigit() else None


def error_text(body: str) -> str:
    """The message inside InfluxDB's JSON error body (1.x "error", 2.x "message")."""
    try:
        decoded = json.loads(body)
    except ValueError:
        return body
    if isinstance(decoded, dict):
        text = decoded.get("error") or decoded.get("message")
        if isinstance(text, str):
            return text
    return body


def rejected_lines(body: str, lines: Sequence[str], *, oldest_allowed_ms: int | None) -> list[int]:
    """Indexes of the lines the server refused, per its error message."""
    body = error_text(body)
    unparsable = set(_UNPARSABLE.findall(body))
    if unparsable:
        hits = [i for i, line in enumerate(lines) if line in unparsable]
        if hits:
            return hits
    conflicts = _TYPE_CONFLICT.findall(body)
    if conflicts:
        # The lines whose field has the refused type; a line with the same field of the
        # type the server already has was written, and is not reported.
        hits = [
            i
            for i, line in enumerate(lines)
            for field, measurement, kind in conflicts
            if _measurement(line) == measurement and _field_types(line).get(field) == kind
        ]
        if not hits:  # the type named in words we do not know: every line with the field
            hits = [
                i
                for i, line in enumerate(lines)
                for field, measurement, _ in conflicts
                if _measurement(line) == measurement and field in _field_types(line)
            ]
        if hits:
            return sorted(set(hits))
    if _BEYOND_RETENTION in body and oldest_allowed_ms is not None:
        hits = [
            i
            for i, line in enumerate(lines)
            if (ts := _timestamp_ms(line)) is not None and ts < oldest_allowed_ms
        ]
        if hits:
            return hits
    return list(range(len(lines)))
