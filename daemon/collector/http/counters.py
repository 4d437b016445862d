"""The HTTP listener's counts, read by /metrics (`HttpApi.counters()`)."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class HttpCounters:
    """The listener's counts since start, for /metrics."""

    open: int  # connections being served now
    refused: int  # over max_connections: answered 503 (closed over TLS)
    timeouts: int  # requests cut off: a read took too long or the deadline passed
    tls_failures: int  # handshakes that failed (a plain-HTTP client, a silent one)
    by_status: Mapping[int, int]  # answers per status code
    login_failures: int
    logins_throttled: int
    refused_host: int  # 421: a Host not in http.allowed_hosts


@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    open: int = 0
    refused: int = 0
    timeouts: int = 0
    tls_failures: int = 0
    by_status: dict[int, int] = field(default_factory=dict)

    def add(self, name: str, n: int = 1) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + n)

    def answered(self, status: int) -> None:
        with self.lock:
            self.by_status[status] = self.by_status.get(status, 0) + 1

    def try_open(self, cap: int) -> bool:
        with self.lock:
            if self.open >= cap:
                self.refused += 1
                return False
            self.open += 1
            return True


def event_counts(c: HttpCounters) -> dict[str, int]:
    """The counters as /metrics' `fleet_http_events_total` events (connections open now is a
    level, not an event, and is left out)."""
    events = {
        "refused_over_cap": c.refused,
        "timeouts": c.timeouts,
        "tls_failures": c.tls_failures,
        "login_failures": c.login_failures,
        "logins_throttled": c.logins_throttled,
        "refused_host": c.refused_host,
    }
    events.update({f"status_{code}": n for code, n in c.by_status.items()})
    return events
