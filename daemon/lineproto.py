"""InfluxDB line protocol (precision ms), byte-identical to influxdb_client's Point.

Generic: knows nothing of telemetry. The output is byte-identical to
``Point(m).tag(..).field(..).time(ts_ms, WritePrecision.MS).to_line_protocol()`` except where
Point would silently drop data or emit a line InfluxDB cannot read as meant; there it raises
ValueError instead:

- a float that is NaN or infinite (Point drops the field; InfluxDB 1.x has no such values);
- an int outside the signed 64-bit range (InfluxDB rejects it; unsigned is never produced);
- a point whose fields are all None (Point returns "");
- an empty measurement or field key, a measurement starting with ``#`` (a comment to InfluxDB);
- a backslash run that would escape the separator or escape Point writes after it: an odd run
  ending a measurement/key or standing before a character Point escapes. In a tag value Point
  appends a space after a trailing backslash, so there an odd trailing run is fine (kept byte for
  byte) and an even one is refused;
- a timestamp outside what InfluxDB can store in ms (its time is int64 nanoseconds).

Hot path: the escaped "measurement,tag=..,tag=.." prefix repeats for every reading of a device,
so ``series_key`` caches it; ``format_line`` only formats the fields and the timestamp.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence

FieldValue = float | int | bool | str

_ESCAPE_MEASUREMENT = str.maketrans({",": r"\,", " ": r"\ ", "\n": r"\n", "\t": r"\t", "\r": r"\r"})
_ESCAPE_KEY = str.maketrans(
    {",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\n", "\t": r"\t", "\r": r"\r"}
)
_ESCAPE_STRING = str.maketrans({'"': r"\"", "\\": r"\\"})

_INT_MIN = -(2**63)
_INT_MAX = 2**63 - 1
# InfluxDB stores int64 nanoseconds; a ms timestamp beyond this overflows on the server.
_TS_MS_LIMIT = _INT_MAX // 1_000_000

_SERIES_CACHE_SIZE = 8192
_FIELD_KEY_CACHE_SIZE = 1024


def _check_backslashes(text: str, table: dict[int, str], what: str, *, tag_value: bool) -> None:
    """Reject backslashes that would escape a separator once Point has escaped the text.

    InfluxDB reads a backslash as "take the next byte literally". A run of backslashes before a
    character Point escapes (which adds one more backslash) must therefore be even, and so must a
    trailing run before the separator - except in a tag value, where Point appends a space to a
    trailing backslash: there an odd run escapes that space and an even run leaves it a separator.
    """
    start = text.find("\\")
    while start != -1:
        end = start
        while end < len(text) and text[end] == "\\":
            end += 1
        odd = (end - start) % 2 == 1
        if end == len(text):
            if odd != tag_value:
                raise ValueError(
                    f"{what} {text[:40]!r} ends in a backslash run that escapes the separator"
                )
        elif odd and ord(text[end]) in table:
            raise ValueError(f"{what} {text[:40]!r} has a backslash before {text[end]!r}")
        start = text.find("\\", end)


def _measurement(name: str) -> str:
    if not name:
        raise ValueError("measurement is empty")
    if name.startswith("#"):
        raise ValueError(f"measurement {name[:40]!r} starts with '#' (a comment line)")
    _check_backslashes(name, _ESCAPE_MEASUREMENT, "measurement", tag_value=False)
    return name.translate(_ESCAPE_MEASUREMENT)


def _tag(key: str, value: str) -> str | None:
    """Escaped ``key=value``, or None when Point would drop the tag (empty key or value)."""
    if not key or not value:
        return None
    _check_backslashes(key, _ESCAPE_KEY, "tag key", tag_value=False)
    _check_backslashes(value, _ESCAPE_KEY, "tag value", tag_value=True)
    escaped = value.translate(_ESCAPE_KEY)
    if escaped.endswith("\\"):
        escaped += " "
    return f"{key.translate(_ESCAPE_KEY)}={escaped}"


@functools.lru_cache(maxsize=_SERIES_CACHE_SIZE)
def _series_key(measurement: str, tags: tuple[tuple[str, str | None], ...]) -> str:
    parts = [_measurement(measurement)]
    for key, value in tags:
        if value is not None:
            tag = _tag(key, value)
            if tag is not None:
                parts.append(tag)
    return ",".join(parts)


def series_key(measurement: str, tags: Mapping[str, str | None]) -> str:
    """Escaped ``measurement,k=v,...`` with tags sorted by key, empty/None tags dropped. Cached."""
    return _series_key(measurement, tuple(sorted(tags.items())))


@functools.lru_cache(maxsize=_FIELD_KEY_CACHE_SIZE)
def _field_key(key: str) -> str:
    if not key:
        raise ValueError("field key is empty")
    _check_backslashes(key, _ESCAPE_KEY, "field key", tag_value=False)
    return key.translate(_ESCAPE_KEY)


def _float(key: str, value: float) -> str:
    if not math.isfinite(value):
        raise ValueError(f"field {key!r}: {value} is not a finite number")
    text = str(value)
    # Point trims the ".0" of whole numbers; InfluxDB still reads "5" as a float (no "i").
    return text[:-2] if text.endswith(".0") else text


def _int(key: str, value: int) -> str:
    if not _INT_MIN <= value <= _INT_MAX:
        raise ValueError(f"field {key!r}: {value} does not fit a signed 64-bit integer")
    return f"{value}i"


def _value(key: str, value: FieldValue) -> str:
    kind = type(value)
    if kind is float:
        return _float(key, value)  # type: ignore[arg-type]
    if kind is int:
        return _int(key, value)  # type: ignore[arg-type]
    if kind is str:
        return f'"{value.translate(_ESCAPE_STRING)}"'  # type: ignore[union-attr]
    if kind is bool:
        return "true" if value else "false"
    # Subclasses (IntEnum, StrEnum...): Point's isinstance order and str() formatting.
    if isinstance(value, float):
        return _float(key, value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if not _INT_MIN <= value <= _INT_MAX:
            raise ValueError(f"field {key!r}: {value} does not fit a signed 64-bit integer")
        return f"{value!s}i"
    if isinstance(value, str):
        return f'"{str(value).translate(_ESCAPE_STRING)}"'
    raise TypeError(f"field {key!r}: type {type(value).__name__} is not supported")


def format_line(prefix: str, fields: Sequence[tuple[str, FieldValue | None]], ts_ms: int) -> str:
    """One line from a ``series_key`` prefix, fields already sorted by key, and a ms timestamp.

    Fields whose value is None are skipped, as Point does. The caller owns the order: Point sorts
    fields by key, so pass them sorted (and unique) to stay byte-identical with it.
    """
    parts = [
        f"{_field_key(key)}={_value(key, value)}" for key, value in fields if value is not None
    ]
    if not parts:
        raise ValueError(f"point {prefix[:40]!r} has no field")
    if type(ts_ms) is not int or not -_TS_MS_LIMIT <= ts_ms <= _TS_MS_LIMIT:
        raise ValueError(f"timestamp {ts_ms!r} is not an int within InfluxDB's range in ms")
    return f"{prefix} {','.join(parts)} {ts_ms}"


def line(
    measurement: str,
    tags: Mapping[str, str | None],
    fields: Mapping[str, FieldValue | None],
    ts_ms: int,
) -> str:
    """General form: any tags and fields, sorted here. For the hot path use ``format_line``."""
    return format_line(series_key(measurement, tags), sorted(fields.items()), ts_ms)
