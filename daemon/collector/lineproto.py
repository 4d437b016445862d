"""InfluxDB line protocol (precision ms), byte-identical to influxdb_client's Point.

Generic: knows nothing of telemetry. The output is byte-identical to
``Point(m).tag(..).field(..).time(ts_ms, WritePrecision.MS).to_line_protocol()`` except where
Point would silently drop data or emit a line InfluxDB cannot read as meant; there it raises
ValueError instead:

- a float that is NaN or infinite (Point drops the field; InfluxDB 1.x has no such values);
- an int outside the signed 64-bit range (InfluxDB rejects it; unsigned is never produced);
- a point whose fields are all None (Point returns "");
- an empty measurement or field key, a measurement starting with ``#`` (a comment to InfluxDB);
- a backslash in a measurement, tag key or field key. Point leaves it unescaped and InfluxDB
  1.6 misreads it: measured, ``a\\,b`` is stored as ``a,b``; a name ending in a backslash, or a
  field key with one before an escaped character, makes the line unparsable;
- a timestamp outside what InfluxDB can store in ms (its time is int64 nanoseconds).

Kept as Point does although lossy: a newline, tab or carriage return in a name or tag value is
written as ``\\n``, ``\\t``, ``\\r`` and InfluxDB stores those two characters. Callers that need
exact names use plain ids (the wire contract's ids never contain such characters).

Hot path: the escaped "measurement,tag=..,tag=.." prefix repeats for every reading of a device,
so ``series_key`` caches it; ``format_line`` only formats the fields and the timestamp. A caller
that keeps prefixes of its own (schema.py, per device) builds them with ``build_series_key``,
which caches nothing: the same string held twice costs ~0.5 kB a series (issue 14, memory).
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
ESCAPE_STRING = str.maketrans({'"': r"\"", "\\": r"\\"})

_INT_MIN = -(2**63)
_INT_MAX = 2**63 - 1
# InfluxDB stores int64 nanoseconds; a ms timestamp beyond this overflows on the server.
TS_MS_LIMIT = _INT_MAX // 1_000_000

# Alert, audit and assignment series: few, and repeated. Telemetry prefixes are schema.py's.
_SERIES_CACHE_SIZE = 1024
_FIELD_KEY_CACHE_SIZE = 1024


def _no_backslash(text: str, what: str) -> None:
    # Point does not escape a backslash in a name, and InfluxDB 1.6 reads one in front of an
    # escaped character or a separator as an escape of its own: the line then fails to parse or
    # names another series. In a tag value a backslash survives; a trailing one comes back as a
    # space (Point appends one so it cannot escape the separator; kept, byte for byte).
    if "\\" in text:
        raise ValueError(f"{what} {text[:40]!r} contains a backslash")


def _measurement(name: str) -> str:
    if not name:
        raise ValueError("measurement is empty")
    if name.startswith("#"):
        raise ValueError(f"measurement {name[:40]!r} starts with '#' (a comment line)")
    _no_backslash(name, "measurement")
    return name.translate(_ESCAPE_MEASUREMENT)


def _tag(key: str, value: str) -> str | None:
    """Escaped ``key=value``, or None when Point would drop the tag (empty key or value)."""
    if not key or not value:
        return None
    _no_backslash(key, "tag key")
    escaped = value.translate(_ESCAPE_KEY)
    if escaped.endswith("\\"):
        escaped += " "
    return f"{key.translate(_ESCAPE_KEY)}={escaped}"


def _build(measurement: str, tags: tuple[tuple[str, str | None], ...]) -> str:
    parts = [_measurement(measurement)]
    for key, value in tags:
        if value is not None:
            tag = _tag(key, value)
            if tag is not None:
                parts.append(tag)
    return ",".join(parts)


_series_key = functools.lru_cache(maxsize=_SERIES_CACHE_SIZE)(_build)


def series_key(measurement: str, tags: Mapping[str, str | None]) -> str:
    """Escaped ``measurement,k=v,...`` with tags sorted by key, empty/None tags dropped. Cached."""
    return _series_key(measurement, tuple(sorted(tags.items())))


def build_series_key(measurement: str, tags: Mapping[str, str | None]) -> str:
    """`series_key` without its cache, for callers that keep the result themselves or use it
    rarely (a per-device line every 10 s is not worth ~0.5 kB a device held for good)."""
    return _build(measurement, tuple(sorted(tags.items())))


@functools.lru_cache(maxsize=_FIELD_KEY_CACHE_SIZE)
def _field_key(key: str) -> str:
    """The escaped key with its "=", ready to take the value."""
    if not key:
        raise ValueError("field key is empty")
    _no_backslash(key, "field key")
    return key.translate(_ESCAPE_KEY) + "="


def _not_finite(key: str, value: float) -> ValueError:
    return ValueError(f"field {key!r}: {value} is not a finite number")


def _not_int64(key: str, value: int) -> ValueError:
    return ValueError(f"field {key!r}: {value} does not fit a signed 64-bit integer")


def _subclass_value(key: str, value: object) -> str:
    """IntEnum, StrEnum and the like: Point's isinstance order and its str() formatting."""
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _not_finite(key, value)
        text = str(value)
        return text[:-2] if text.endswith(".0") else text
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if not _INT_MIN <= value <= _INT_MAX:
            raise _not_int64(key, value)
        return f"{value!s}i"
    if isinstance(value, str):
        return f'"{str(value).translate(ESCAPE_STRING)}"'
    raise TypeError(f"field {key!r}: type {type(value).__name__} is not supported")


def format_field(key: str, value: FieldValue) -> str:
    """One ``key=value`` exactly as `format_line` writes it (its checks included)."""
    return _field_key(key) + _subclass_value(key, value)


def timestamp(ts_ms: int) -> str:
    """The line's timestamp as `format_line` writes it, or ValueError as it raises."""
    if type(ts_ms) is not int or not -TS_MS_LIMIT <= ts_ms <= TS_MS_LIMIT:
        raise ValueError(f"timestamp {ts_ms!r} is not an int within InfluxDB's range in ms")
    return str(ts_ms)


def format_line(prefix: str, fields: Sequence[tuple[str, FieldValue | None]], ts_ms: int) -> str:
    """One line from a ``series_key`` prefix, fields already sorted by key, and a ms timestamp.

    Fields whose value is None are skipped, as Point does. The caller owns the order: Point sorts
    fields by key, so pass them sorted (and unique) to stay byte-identical with it.
    """
    # The per-reading hot path: exact-type checks inline, no call per value.
    parts = []
    for key, value in fields:
        if value is None:
            continue
        if type(value) is float:
            text = repr(value)
            if text[-1] in "nf":  # "nan", "inf", "-inf": every finite repr ends in a digit
                raise _not_finite(key, value)
            if text.endswith(".0"):  # Point trims it; InfluxDB still reads "5" as a float
                text = text[:-2]
        elif type(value) is int:
            if not _INT_MIN <= value <= _INT_MAX:
                raise _not_int64(key, value)
            text = f"{value}i"
        elif type(value) is bool:
            text = "true" if value else "false"
        elif type(value) is str:
            text = f'"{value.translate(ESCAPE_STRING)}"'
        else:
            text = _subclass_value(key, value)
        parts.append(_field_key(key) + text)
    if not parts:
        raise ValueError(f"point {prefix[:40]!r} has no field")
    return f"{prefix} {','.join(parts)} {timestamp(ts_ms)}"


def line(
    measurement: str,
    tags: Mapping[str, str | None],
    fields: Mapping[str, FieldValue | None],
    ts_ms: int,
) -> str:
    """General form: any tags and fields, sorted here. For the hot path use ``format_line``.

    The prefix is built, not cached: this form writes the per-device pipeline lines (1,000
    devices every 10 s: ~3 ms to build, ~0.5 MB to keep)."""
    return format_line(build_series_key(measurement, tags), sorted(fields.items()), ts_ms)
