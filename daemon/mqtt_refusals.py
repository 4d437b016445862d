"""Publishes the broker refused: kept per message id, counted per topic class, logged sparingly.

An MQTT 5 broker answers a QoS 1 publish it will not take (its ACL: "not
authorized", 0x87; a quota; a bad topic) with a PUBACK whose reason code is
0x80 or more, and keeps the connection. paho counts that message as
acknowledged like any other: without this record it would pass as delivered.
Under MQTT 3.1.1 there is no reason code: Mosquitto acknowledges the publish
and drops it, and nothing here can see that.

`MqttLink` feeds every acknowledgement in (on paho's thread, under paho's own
lock: nothing here calls paho); a caller that waits for delivery takes the
refusals of its own message ids once they are acknowledged. A message id is
reused only after 65,535 more publishes, and every acknowledgement of an id
replaces what was kept for it, so a refusal left untaken (an availability
message nobody waits for) never stands for a later message of the same id.

The log line names the topic and the broker's reason, never the payload: the
first refusal of a topic class at once, then at most one line per class and
interval with the count in between.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

_LOG = logging.getLogger("fleet.daemon.mqtt")

LOG_INTERVAL_S = 60.0

# Topic classes of the wire contract, for the counts and the log (cheap: the levels only).
TELEMETRY = "telemetry"
AVAILABILITY = "availability"
AGENT_AVAILABILITY = "agent availability"
ALERT = "alert"
ACK = "acknowledgement"
DEADLETTER = "dead letter"
OWNTRACKS = "owntracks"
OTHER = "other"


def topic_class(topic: str) -> str:
    """Which part of the contract a topic belongs to (`{prefix}/v1/{site}/...`, OwnTracks)."""
    levels = topic.split("/")
    if levels[0] == "owntracks":
        return OWNTRACKS
    if len(levels) < 4:
        return OTHER
    if levels[3] == "alerts":
        return ACK if levels[-1] == "ack" else ALERT
    if len(levels) == 4 and levels[3] == "deadletter":
        return DEADLETTER
    if len(levels) == 6 and levels[5] == "telemetry":
        return TELEMETRY
    if len(levels) == 6 and levels[5] == "availability":
        return AGENT_AVAILABILITY if levels[3] == "agent" else AVAILABILITY
    return OTHER


@dataclass(frozen=True, slots=True)
class Refusal:
    """One publish the broker would not take."""

    mid: int
    topic: str
    code: int  # the MQTT 5 reason code, 0x80 or more (0x87: not authorized)
    reason: str  # its name, e.g. "Not authorized"

    def describe(self) -> str:
        return f"{self.reason} (0x{self.code:02X})"


class _Sparse:
    """One topic class's log lines: the first at once, then one per interval with a count."""

    def __init__(self) -> None:
        self.logged_at: float | None = None
        self.unlogged = 0
        self.latest: Refusal | None = None


class PublishRefusals:
    """Thread-safe; `record` runs on paho's thread, the rest on any."""

    def __init__(
        self, *, interval_s: float = LOG_INTERVAL_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._interval = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._by_mid: dict[int, Refusal] = {}
        self._counts: dict[str, int] = {}
        self._log: dict[str, _Sparse] = {}

    def acknowledged(self, mid: int, topic: str | None, code: int, reason: str) -> None:
        """The broker acknowledged message `mid`; a code of 0x80 or more refused it."""
        with self._lock:
            if code < 0x80:
                self._by_mid.pop(mid, None)
                return
            refusal = Refusal(mid, topic if topic is not None else "?", code, reason)
            self._by_mid[mid] = refusal
            kind = topic_class(refusal.topic)
            self._counts[kind] = self._counts.get(kind, 0) + 1
            line = self._due(kind, refusal)
        if line is not None:
            _LOG.warning(*line)

    def _due(self, kind: str, refusal: Refusal) -> tuple[object, ...] | None:
        sparse = self._log.setdefault(kind, _Sparse())
        now = self._clock()
        if sparse.logged_at is not None and now - sparse.logged_at < self._interval:
            sparse.unlogged += 1
            sparse.latest = refusal
            return None
        before, sparse.unlogged, sparse.logged_at = sparse.unlogged, 0, now
        if before:
            return (
                "MQTT broker refused %d more %s publish(es) in the last %.0f s; now %.200r: %s",
                before,
                kind,
                self._interval,
                refusal.topic,
                refusal.describe(),
            )
        return (
            "MQTT broker refused a %s publish to %.200r: %s (the message is not delivered; "
            "further %s refusals are logged at most once every %.0f s)",
            kind,
            refusal.topic,
            refusal.describe(),
            kind,
            self._interval,
        )

    def take(self, mids: Iterable[int]) -> dict[int, Refusal]:
        """The refusals among `mids` (acknowledged ones), forgotten once taken."""
        with self._lock:
            return {mid: r for mid in mids if (r := self._by_mid.pop(mid, None)) is not None}

    def counts(self) -> dict[str, int]:
        """Refused publishes since start, per topic class."""
        with self._lock:
            return dict(self._counts)

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values())

    def log_unlogged(self) -> None:
        """The counts not yet logged (at a stop): nothing refused goes unmentioned."""
        with self._lock:
            pending = [(k, s.unlogged, s.latest) for k, s in self._log.items() if s.unlogged]
            for sparse in self._log.values():
                sparse.unlogged = 0
        for kind, count, latest in pending:
            assert latest is not None
            _LOG.warning(
                "MQTT broker refused %d more %s publish(es) not logged yet; the latest to "
                "%.200r: %s",
                count,
                kind,
                latest.topic,
                latest.describe(),
            )
