"""Capped exponential backoff: the one rule for every pause between retries.

The pause after the n-th failure in a row is `min(max_s, initial_s * factor ** (n - 1))`,
shortened by a random share of at most `jitter` so that many clients failing
together (collectors after an InfluxDB outage, notifications after a mail
server hiccup) do not retry in lockstep. `jitter=0` is the plain doubling the
drivers and supervisors use, 0.5 "equal jitter", 1.0 "full jitter".

It lives at the bottom layer, in drivers/, because both the drivers and the
daemon (collector writer, supervisors, notifications) use it and drivers may
not import the daemon. Config keys for it are spelled
`<what>_backoff_initial_s` / `<what>_backoff_max_s`; `check_backoff_pair` is the
one validator that keeps such a pair in order.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Final

from pydantic import ValidationInfo
from pydantic_core import PydanticCustomError

INITIAL_SUFFIX: Final = "_backoff_initial_s"
MAX_SUFFIX: Final = "_backoff_max_s"


@dataclass(frozen=True, slots=True)
class Backoff:
    """The pause before the next try, from how many tries in a row have failed."""

    initial_s: float
    max_s: float
    factor: float = 2.0
    jitter: float = 0.0

    def __post_init__(self) -> None:
        if not 0 < self.initial_s <= self.max_s:
            raise ValueError("backoff needs 0 < initial_s <= max_s")
        if self.factor < 1:
            raise ValueError("backoff factor must be >= 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("backoff jitter must be within [0, 1]")

    def nominal(self, failures: int) -> float:
        """The pause after `failures` (>= 1) failures in a row, before jitter."""
        try:
            step = self.initial_s * self.factor ** max(0, failures - 1)
        except OverflowError:  # a very long outage: the cap was reached long ago
            return self.max_s
        return min(self.max_s, step)

    def delay(
        self,
        failures: int,
        *,
        rng: random.Random | None = None,
        retry_after: float | None = None,
    ) -> float:
        """The jittered pause after `failures` failures in a row.

        A server's `Retry-After` (seconds) wins over a shorter pause, plus up to
        `initial_s` at random so clients it told the same do not return together;
        it may exceed `max_s` - the server knows when it will be back.
        """
        draw = (rng or random).random
        delay = self.nominal(failures)
        if self.jitter:
            delay *= 1.0 - self.jitter * draw()
        if retry_after is not None:
            delay = max(delay, retry_after + self.initial_s * draw())
        return delay

    def counter(self, rng: random.Random | None = None) -> BackoffCounter:
        """A counter of failures in a row that yields this backoff's pauses."""
        return BackoffCounter(self, rng)


class BackoffCounter:
    """`next()` counts a failure and gives the pause after it; `reset()` after a success."""

    def __init__(self, backoff: Backoff, rng: random.Random | None = None) -> None:
        self.backoff = backoff
        self._rng = rng
        self._failures = 0

    def next(self) -> float:
        self._failures += 1
        return self.backoff.delay(self._failures, rng=self._rng)

    def reset(self) -> None:
        self._failures = 0

    @property
    def failures(self) -> int:
        return self._failures


def check_backoff_pair(value: Any, info: ValidationInfo) -> Any:
    """Field validator for config models: `<what>_backoff_max_s` >= `<what>_backoff_initial_s`.

    Fields validate in declaration order, so the initial value (declared first)
    is in `info.data` when the maximum is checked; if it was itself invalid it
    is absent and only its own error is reported.
    """
    name = info.field_name or ""
    if not name.endswith(MAX_SUFFIX):
        return value
    initial_name = name.removesuffix(MAX_SUFFIX) + INITIAL_SUFFIX
    initial = info.data.get(initial_name)
    if isinstance(value, int | float) and isinstance(initial, int | float) and value < initial:
        raise PydanticCustomError(
            "fleet_backoff", "must be at least {initial_name}", {"initial_name": initial_name}
        )
    return value
