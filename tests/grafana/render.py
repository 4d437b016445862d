"""Grafana's macro and template-variable substitution for InfluxQL queries, done the way the
InfluxDB datasource does it, so the dashboard queries can be run against a real InfluxDB.

- `$timeFilter` -> `time >= <from>ms and time <= <to>ms`
- `$__interval` / `$interval` -> Grafana's rounded auto interval: (to - from) / maxDataPoints,
  rounded to a "nice" step, never below the panel's (or datasource's) minimum interval;
  `$__interval_ms` the same in milliseconds; `$__from` / `$__to` the range in epoch ms.
- template variables `$var`, `${var}`, `[[var]]`: a single value of a single-value variable
  as is; a multi-value or include-All variable as a regex group `(a|b)` with regex
  metacharacters escaped; All as the variable's `allValue`, else the group of every option.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# Grafana's rangeutil.roundInterval: (upper bound ms, interval ms).
_ROUND = (
    (15, 10), (35, 20), (75, 50), (150, 100), (350, 200), (750, 500), (1_500, 1_000),
    (3_500, 2_000), (7_500, 5_000), (12_500, 10_000), (17_500, 15_000), (25_000, 20_000),
    (45_000, 30_000), (90_000, 60_000), (210_000, 120_000), (450_000, 300_000),
    (750_000, 600_000), (1_050_000, 900_000), (1_500_000, 1_200_000), (2_700_000, 1_800_000),
    (5_400_000, 3_600_000), (9_000_000, 7_200_000), (16_200_000, 10_800_000),
    (24_300_000, 21_600_000), (64_800_000, 43_200_000), (604_800_000, 86_400_000),
    (1_814_400_000, 604_800_000), (3_628_800_000, 2_592_000_000),
)  # fmt: skip
_YEAR_MS = 31_536_000_000
_UNITS_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_REGEX_SPECIAL = re.compile(r"[\\^$*+?.()|{}\[\]/]")


def round_interval(ms: float) -> int:
    for bound, step in _ROUND:
        if ms < bound:
            return step
    return _YEAR_MS


def parse_interval(text: str) -> int:
    m = re.fullmatch(r"(\d+)(ms|s|m|h|d|w)", text.strip().lstrip(">"))
    if not m:
        raise ValueError(f"not a Grafana interval: {text!r}")
    return int(m.group(1)) * _UNITS_MS[m.group(2)]


def format_interval(ms: int) -> str:
    for unit, size in (("w", 604_800_000), ("d", 86_400_000), ("h", 3_600_000),
                       ("m", 60_000), ("s", 1_000)):  # fmt: skip
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def auto_interval_ms(from_ms: int, to_ms: int, max_data_points: int, min_interval: str) -> int:
    """Grafana's $__interval: the range over the data points, rounded, at least the minimum."""
    rounded = round_interval((to_ms - from_ms) / max_data_points)
    return max(rounded, parse_interval(min_interval)) if min_interval else rounded


@dataclass(frozen=True)
class Variable:
    name: str
    values: Sequence[str]  # the selection; ["$__all"] for All
    options: Sequence[str] = ()  # every value the variable offers (for All without allValue)
    multi: bool = False
    include_all: bool = False
    all_value: str | None = None


def _escape(value: str) -> str:
    return _REGEX_SPECIAL.sub(lambda m: "\\" + m.group(0), value)


def variable_text(var: Variable) -> str:
    """What Grafana's InfluxDB datasource puts in place of the variable."""
    values = list(var.values)
    if values == ["$__all"]:
        if var.all_value is not None:
            return var.all_value
        values = list(var.options)
    if not var.multi and not var.include_all:
        return values[0]
    if len(values) == 1:
        return _escape(values[0])
    return "(" + "|".join(_escape(v) for v in values) + ")"


def render(
    query: str,
    *,
    from_ms: int,
    to_ms: int,
    variables: Mapping[str, Variable] = {},
    max_data_points: int = 1000,
    min_interval: str = "10s",
) -> str:
    """The query as Grafana sends it to InfluxDB."""
    interval_ms = auto_interval_ms(from_ms, to_ms, max_data_points, min_interval)
    builtins = {
        "timeFilter": f"time >= {from_ms}ms and time <= {to_ms}ms",
        "__timeFilter": f"time >= {from_ms}ms and time <= {to_ms}ms",
        "__interval_ms": str(interval_ms),
        "__interval": format_interval(interval_ms),
        "interval": format_interval(interval_ms),
        "__from": str(from_ms),
        "__to": str(to_ms),
    }
    texts = {name: variable_text(var) for name, var in variables.items()} | builtins

    def sub(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        if name not in texts:
            raise KeyError(f"undefined variable ${name} in {query!r}")
        return texts[name]

    # Longest names first inside one alternation: `$__interval_ms` is not `$__interval` + "_ms".
    pattern = (
        r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$("
        + "|".join(sorted((re.escape(n) for n in texts), key=len, reverse=True))
        + r")(?!\w)"
    )
    rendered = re.sub(pattern, sub, query)
    leftover = re.search(r"\$\w+|\[\[\w+\]\]", rendered)
    if leftover and not leftover.group(0).startswith("$tag_"):
        raise KeyError(f"undefined variable {leftover.group(0)} in {query!r}")
    return rendered
