"""Capped exponential backoff for reopening a port or reconnecting to a scooter."""

from __future__ import annotations


class Backoff:
    """`next()` gives initial, 2x, 4x ... up to `cap` seconds; `reset()` after a success."""

    def __init__(self, initial_s: float, cap_s: float) -> None:
        if initial_s <= 0 or cap_s < initial_s:
            raise ValueError("backoff needs 0 < initial <= cap")
        self._initial = initial_s
        self._cap = cap_s
        self._failures = 0

    def next(self) -> float:
        # The exponent is bounded so a long outage cannot overflow the float.
        delay = min(self._cap, self._initial * float(2 ** min(self._failures, 60)))
        self._failures += 1
        return delay

    def reset(self) -> None:
        self._failures = 0

    @property
    def failures(self) -> int:
        return self._failures
