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
_TYPE_CONFLICT = re.compile(r'input field "([^"]+)" on measurement "([^"]+)" is type')
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
        hits = [
            i
            for i, line in enumerate(lines)
            for field, measurement in conflicts
            if _measurement(line) == measurement and (f" {field}=" in line or f",{field}=" in line)
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
