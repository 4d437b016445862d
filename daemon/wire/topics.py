"""The v1 MQTT topics: building them (ids checked) and taking control topics apart."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from fleet.drivers.contract import RESERVED_KINDS, check_id, id_problem

VERSION = "v1"
# An alert rule with these names would make its topic look like a device's.
RESERVED_RULES = frozenset({"telemetry", "availability"})


def check_prefix(prefix: str) -> str:
    for level in prefix.split("/"):
        check_id("topic prefix level", level)
    return prefix


def check_kind(kind: str) -> str:
    if check_id("kind", kind) in RESERVED_KINDS:
        raise ValueError(f"kind {kind!r} is reserved for {kind} topics")
    return kind


def _site(prefix: str, site: str) -> str:
    return f"{check_prefix(prefix)}/{VERSION}/{check_id('site', site)}"


def telemetry_topic(prefix: str, site: str, kind: str, device: str) -> str:
    return f"{_site(prefix, site)}/{check_kind(kind)}/{check_id('device', device)}/telemetry"


def availability_topic(prefix: str, site: str, kind: str, device: str) -> str:
    return f"{_site(prefix, site)}/{check_kind(kind)}/{check_id('device', device)}/availability"


def agent_availability_topic(prefix: str, site: str, agent: str) -> str:
    return f"{_site(prefix, site)}/agent/{check_id('agent', agent)}/availability"


def alert_topic(prefix: str, site: str, device: str, rule: str) -> str:
    if check_id("rule", rule) in RESERVED_RULES:
        raise ValueError(f"rule {rule!r} is reserved: its topic would look like a device's")
    return f"{_site(prefix, site)}/alerts/{check_id('device', device)}/{rule}"


def link_topic(prefix: str, site: str, bridge: str) -> str:
    """The site's broker bridge's state: "1" (retained) while it is connected to the central
    broker, "0" (its will there) once it is not - Mosquitto's bridge notification topic."""
    return f"{_site(prefix, site)}/bridge/{check_id('bridge', bridge)}/link"


def deadletter_topic(prefix: str, site: str) -> str:
    return f"{_site(prefix, site)}/deadletter"


def alert_ack_topic(prefix: str, site: str, device: str, rule: str) -> str:
    """Publish a name here (or JSON {"by": name}) to acknowledge a firing alert."""
    return alert_topic(prefix, site, device, rule) + "/ack"


def owntracks_topic(user: str, device: str) -> str:
    return f"owntracks/{user}/{device}"


def _site_levels(sites: Sequence[str]) -> list[str]:
    """The {site} level of a collector's filters: each site it owns, or `+` for every site."""
    return [check_id("site", s) for s in sites] or ["+"]


def subscriptions(prefix: str, sites: Sequence[str] = ()) -> list[str]:
    """What the collector subscribes to: device telemetry of its sites (`sites`; empty:
    every site) and OwnTracks phones (their topics carry no site: the collector keeps the
    phones of its own sites, see `Decoder.ours`)."""
    head = f"{check_prefix(prefix)}/{VERSION}"
    return [*(f"{head}/{s}/+/+/telemetry" for s in _site_levels(sites)), "owntracks/+/+"]


def control_subscriptions(prefix: str, sites: Sequence[str] = ()) -> list[str]:
    """What the collector hears besides readings: availability (devices and agents),
    acknowledgements and the sub-stations' bridge links, of its sites (`sites`; empty:
    every site)."""
    head = f"{check_prefix(prefix)}/{VERSION}"
    levels = _site_levels(sites)
    return [
        *(f"{head}/{s}/+/+/availability" for s in levels),
        *(f"{head}/{s}/alerts/+/+/ack" for s in levels),
        *(f"{head}/{s}/bridge/+/link" for s in levels),
    ]


@dataclass(frozen=True, slots=True)
class Control:
    """A control message's topic: a device's or agent's availability, an alert ack, or a
    sub-station bridge's link state."""

    what: Literal["availability", "agent", "ack", "link"]
    site: str
    kind: str  # the device kind, "agent", "alerts" or "bridge"
    id: str  # device, agent or bridge id
    rule: str = ""

    def topic(self, prefix: str) -> str:
        """The topic it came on (as parsed: the builders would refuse a reserved kind)."""
        if self.what == "ack":
            tail = f"alerts/{self.id}/{self.rule}/ack"
        elif self.what == "link":
            tail = f"bridge/{self.id}/link"
        else:
            tail = f"{self.kind}/{self.id}/availability"  # kind is "agent" for an agent's
        return f"{prefix}/{VERSION}/{self.site}/{tail}"


def parse_control(prefix: str, topic: str) -> Control | None:
    """The control topic's parts, or None when `topic` is not a valid control topic."""
    head = f"{prefix}/{VERSION}/"
    # Cheapest test first: this runs for every message the collector receives.
    if not topic.endswith(("/availability", "/ack", "/link")) or not topic.startswith(head):
        return None
    parts = topic[len(head) :].split("/")
    if any(id_problem(p) is not None for p in parts):
        return None
    if len(parts) == 4 and parts[3] == "availability":
        site, kind, ident = parts[:3]
        return Control("agent" if kind == "agent" else "availability", site, kind, ident)
    if len(parts) == 5 and parts[1] == "alerts" and parts[4] == "ack":
        return Control("ack", parts[0], "alerts", parts[2], parts[3])
    if len(parts) == 4 and parts[1] == "bridge" and parts[3] == "link":
        return Control("link", parts[0], "bridge", parts[2])
    return None
