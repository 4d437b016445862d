"""One MQTT message in, a validated `DecodedReading` out (or `None`, or `Rejected` with why)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

import pydantic_core
from pydantic import ValidationError

from fleet.daemon.wire import fast
from fleet.daemon.wire.envelope import DecodedReading, Telemetry, iso, to_ms
from fleet.daemon.wire.owntracks import OwnTracksLocation
from fleet.daemon.wire.reasons import Reason, Rejected, json_problem, rejected
from fleet.daemon.wire.topics import VERSION, check_kind, check_prefix
from fleet.drivers.contract import ID_RULE, check_id, id_problem, show

_TOPIC_CACHE_SIZE = 4096
# Unregistered phones remembered with the OwnTracks user that first reported as them.
_CLAIMS_SIZE = 4096
# DecodedReading without its dataclass __init__ (~2 µs a message less; fast.builder says why).
_READING = fast.builder(DecodedReading)


@dataclass(frozen=True, slots=True)
class DeviceRef:
    """A device registry entry as the contract sees it: where the device belongs."""

    site: str
    kind: str


class Decoder:
    """Turns one MQTT message into a `DecodedReading`, ``None`` (not a reading) or `Rejected`."""

    def __init__(
        self,
        *,
        prefix: str,
        default_site: str,
        kinds: Collection[str],
        registry: Mapping[str, DeviceRef],
        owntracks_map: Mapping[str, str],
        max_payload_bytes: int,
        max_future_s: float,
        max_age_s: float | None,
        now_ms: Callable[[], int],
        sites: Collection[str] = (),
        fast_path: bool = True,
    ) -> None:
        self._head = f"{check_prefix(prefix)}/{VERSION}/"
        self._sites = frozenset(sites)  # the sites this collector owns; empty: every site
        self._shape = f"{prefix}/{VERSION}/{{site}}/{{kind}}/{{device}}/telemetry"
        self._default_site = check_id("default_site", default_site)
        self._kinds = frozenset(check_kind(k) for k in kinds)
        self._registry = registry
        self._owntracks_map = owntracks_map
        self._owntracks_of = {device: pair for pair, device in owntracks_map.items()}
        # Unregistered device id -> the OwnTracks user that first reported as it (since start).
        self._claims: dict[str, str] = {}
        self._max_bytes = max_payload_bytes
        self._max_future_s = max_future_s
        self._max_age_s = max_age_s
        self._now_ms = now_ms
        self._topics: dict[str, tuple[str, str, str]] = {}
        # msgspec first (valid messages, in one pass), pydantic for the rest; False: pydantic
        # only (the reference the differential tests and the benchmark hold the fast path to).
        self._fast = fast_path

    def ours(self, topic: str) -> bool:
        """Whether a message on `topic` belongs to a site this collector owns, by the topic
        alone: a telemetry topic's site level; an OwnTracks pair's registry site, or the
        default site for a pair the registry does not name (also when it is refused then).
        Another collector's message is neither stored nor dead-lettered here: it is its
        owner's, and stored once there."""
        if not self._sites:
            return True
        if topic.startswith(self._head):
            return topic[len(self._head) :].split("/", 1)[0] in self._sites
        return self._owntracks_site(topic) in self._sites

    def site_of(self, topic: str) -> str:
        """The site a message on `topic` is filed under (its dead letter's topic and store):
        a telemetry topic's own site when it is a valid id, an OwnTracks pair's registry
        site, else the default site."""
        if topic.startswith(self._head):
            candidate = topic[len(self._head) :].split("/", 1)[0]
            try:
                return check_id("site", candidate)
            except ValueError:
                return self._default_site
        return self._owntracks_site(topic)

    def _owntracks_site(self, topic: str) -> str:
        device = self._owntracks_map.get(topic.partition("/")[2])
        ref = self._registry.get(device) if device is not None else None
        return ref.site if ref is not None else self._default_site

    def decode(self, topic: str, payload: bytes) -> DecodedReading | None:
        if len(payload) > self._max_bytes:
            detail = f"payload is {len(payload)} bytes; the limit is {self._max_bytes} bytes"
            raise Rejected(Reason.TOO_LARGE, detail)
        reading: DecodedReading | None
        if topic.startswith(self._head):
            reading = self._telemetry(topic, payload)
        elif topic.startswith("owntracks/"):
            reading = self._owntracks(topic, payload)
        else:
            shapes = f"{self._shape} nor owntracks/{{user}}/{{device}}"
            raise Rejected(Reason.BAD_TOPIC, f"topic {show(topic)} is neither {shapes}")
        if reading is not None:
            try:
                self._check_ts(reading.ts_ms)
            except Rejected as refused:
                if refused.reason is Reason.FUTURE_TS:
                    refused.reading = reading
                raise
        return reading

    def _topic(self, topic: str) -> tuple[str, str, str]:
        cached = self._topics.get(topic)
        if cached is not None:
            return cached
        parts = topic[len(self._head) :].split("/")
        if len(parts) != 4 or parts[3] != "telemetry":
            raise Rejected(Reason.BAD_TOPIC, f"topic {show(topic)} is not {self._shape}")
        for name, value in zip(("site", "kind", "device"), parts, strict=False):
            problem = id_problem(value)
            if problem is not None:
                detail = f"topic's {name} {show(value)} {problem}; {ID_RULE}"
                raise Rejected(Reason.BAD_TOPIC, detail)
        site, kind, device = parts[:3]
        if kind not in self._kinds:
            known = ", ".join(sorted(self._kinds))
            raise Rejected(Reason.UNKNOWN_KIND, f"kind {show(kind)} is not one of {known}")
        if len(self._topics) >= _TOPIC_CACHE_SIZE:
            self._topics.clear()  # so that a publisher inventing topics cannot grow it forever
        self._topics[topic] = (site, kind, device)
        return site, kind, device

    def _telemetry(self, topic: str, payload: bytes) -> DecodedReading:
        site, kind, device = self._topic(topic)
        t = fast.telemetry(payload) if self._fast else None
        if t is None:  # refused, or a corner the fast path leaves to pydantic: its words
            t = self._validated(payload)
        sent, seq, ts_ms, battery, location, status = t
        if sent != device:
            detail = f'device "{sent}" does not match the topic\'s device "{device}"'
            raise Rejected(Reason.DEVICE_MISMATCH, detail)
        ref = self._registry.get(device)
        if ref is not None and (ref.site, ref.kind) != (site, kind):
            detail = (
                f'device "{device}" is registered as {ref.kind} at site "{ref.site}", '
                f'not {kind} at site "{site}"'
            )
            raise Rejected(Reason.REGISTRY_MISMATCH, detail)
        return _READING(site, kind, device, seq, ts_ms, battery, location, status, "telemetry")

    @staticmethod
    def _validated(payload: bytes) -> fast.Fast:
        """The pydantic path: the reading, or the refusal in the contract's words."""
        try:
            t = Telemetry.model_validate_json(payload)
        except ValidationError as exc:
            raise rejected(exc) from None
        return t.device, t.seq, to_ms(t.ts), t.battery, t.location, t.status

    def _owntracks(self, topic: str, payload: bytes) -> DecodedReading | None:
        parts = topic.split("/")
        if len(parts) != 3 or not parts[1] or not parts[2]:
            detail = f"topic {show(topic)} is not owntracks/{{user}}/{{device}}"
            raise Rejected(Reason.BAD_TOPIC, detail)
        device = self._owntracks_map.get(f"{parts[1]}/{parts[2]}")
        unregistered = device is None
        if device is None:
            device = self._unregistered_phone(topic, parts[1], parts[2])
        o = fast.owntracks(payload) if self._fast else None
        if o is None:
            o = self._validated_owntracks(payload)
        if o == fast.NOT_A_LOCATION:
            return None
        battery, location, ts_ms = o
        if unregistered:
            self._claim(device, parts[1])
        ref = self._registry.get(device)
        site, kind = (ref.site, ref.kind) if ref is not None else (self._default_site, "handheld")
        return _READING(site, kind, device, None, ts_ms, battery, location, None, "owntracks")

    @staticmethod
    def _validated_owntracks(payload: bytes) -> fast.OwnTracksFix:
        try:
            data = pydantic_core.from_json(payload)
        except ValueError as exc:
            raise Rejected(Reason.BAD_JSON, json_problem(exc)) from None
        message_type = data.get("_type") if isinstance(data, dict) else None
        if not isinstance(message_type, str):
            raise Rejected(Reason.SCHEMA, 'payload: expected an object with a string "_type"')
        if message_type != "location":
            return fast.NOT_A_LOCATION
        try:
            o = OwnTracksLocation.model_validate(data)
        except ValidationError as exc:
            raise rejected(exc) from None
        return (*o.groups(), to_ms(o.tst))

    def _unregistered_phone(self, topic: str, user: str, device: str) -> str:
        """The device id of an OwnTracks pair the registry does not name: its device part,
        unless that is a registered device (only its registered pair may report as it) or
        another unregistered user's phone (two people's positions must not become one track)."""
        problem = id_problem(device)
        if problem is not None:
            detail = f"OwnTracks device {show(device)} {problem}; {ID_RULE} (or map it)"
            raise Rejected(Reason.BAD_TOPIC, detail)
        if device in self._registry:
            pair = self._owntracks_of.get(device)
            whose = f"{pair} is" if pair is not None else f"{device} has none"
            detail = (
                f"{show(topic)} is not the registered OwnTracks identity of device "
                f'"{device}" ({whose}); not stored as {device}'
            )
            raise Rejected(Reason.REGISTRY_MISMATCH, detail)
        first = self._claims.get(device, user)
        if first != user:
            detail = (
                f'{show(topic)}: unregistered device "{device}" already reports as OwnTracks '
                f"user {show(first)} (since the collector started); register each phone "
                '(owntracks = "user/device")'
            )
            raise Rejected(Reason.REGISTRY_MISMATCH, detail)
        return device

    def _claim(self, device: str, user: str) -> None:
        """`user` reports as the unregistered `device` from now on (a reading of it was valid)."""
        self._claims.setdefault(device, user)
        if len(self._claims) > _CLAIMS_SIZE:
            del self._claims[next(iter(self._claims))]  # the oldest: bounded against invented ids

    def _check_ts(self, ts_ms: int) -> None:
        ahead_s = (ts_ms - self._now_ms()) / 1000
        if ahead_s > self._max_future_s:
            limit = f"limit {self._max_future_s:.12g} s"
            detail = f"ts {iso(ts_ms, always_ms=False)} is {ahead_s:.0f} s in the future ({limit})"
            raise Rejected(Reason.FUTURE_TS, detail)
        if self._max_age_s is not None and -ahead_s > self._max_age_s:
            limit = f"limit {self._max_age_s:.12g} s"
            detail = f"ts {iso(ts_ms, always_ms=False)} is {-ahead_s:.0f} s old ({limit})"
            raise Rejected(Reason.STALE_TS, detail)
