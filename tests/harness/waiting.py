"""Poll for a condition instead of sleeping: the one way tests wait for something."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

_MAX_REPR = 500


def wait_until(
    predicate: Callable[[], T],
    timeout: float = 10,
    interval: float = 0.05,
    message: str = "",
) -> T:
    """Call `predicate` until it returns a truthy value and return that value.

    Exceptions from the predicate propagate at once (a broken check should not
    look like a slow one). After `timeout` seconds, raise AssertionError naming
    `message` and the last value seen, so a failing test says what it saw.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            seen = repr(value)
            if len(seen) > _MAX_REPR:
                seen = seen[:_MAX_REPR] + "..."
            what = message or "condition not met"
            raise AssertionError(f"{what} (waited {timeout:g} s; last value: {seen})")
        time.sleep(min(interval, remaining))
