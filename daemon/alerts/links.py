"""Who holds back a site's offline alerts: an agent that is down, or a cut bridge link.

A sub-station's broker bridges to the central one; Mosquitto publishes the bridge's state on
its notification topic (`wire.link_topic`): "1" (retained) when it connects, and "0" as the
bridge's will, which the central broker publishes when the connection dies. While it is "0"
the site's readings wait in the sub-station broker's queue, so its devices fall silent at the
centre all at once: the engine treats the link like an agent of the site - from the first
second every offline alert of the site's telemetry devices is held, after the hold-down
(`alerts.agent_down_for_s`) one critical `site_link_down` fires for the site, and when "1"
comes back it resolves and every device of the site gets a full offline window to be heard
again (its backlog arrives first).

The link's alert is keyed by the site: device = the site id, kind "site", so its topic is
`<prefix>/v1/<site>/alerts/<site>/site_link_down` and it is acknowledged like any other.
"""

from __future__ import annotations

from fleet.config.alerts import Rule
from fleet.daemon.wire import Control

AGENT_KIND = "agent"
SITE_KIND = "site"
# Alerts that hold the offline alerts of their site while they are pending or firing.
HOLDING = frozenset({Rule.AGENT_DOWN, Rule.SITE_LINK_DOWN})
HOLDER_KINDS = frozenset({AGENT_KIND, SITE_KIND})
# Not an agent id (ids have no '#'): a site's link never shares a slot with one of its agents.
_LINK_SLOT = "#link"


def holder(site: str, who: str, rule: Rule) -> tuple[str, str]:
    """The engine's key of an agent's or a link's up/down state: (site, agent or link)."""
    return (site, _LINK_SLOT if rule is Rule.SITE_LINK_DOWN else who)


def kind_of(rule: Rule) -> str:
    return SITE_KIND if rule is Rule.SITE_LINK_DOWN else AGENT_KIND


def link_up(payload: str) -> bool | None:
    """Mosquitto's notification payload: "1" up, "0" down; None for anything else."""
    return {"1": True, "0": False}.get(payload.strip())


def as_availability(payload: str) -> str:
    """A link's "1"/"0" as the "online"/"offline" of an agent's availability; anything else
    unchanged (and refused as an availability message would be)."""
    up = link_up(payload)
    return payload if up is None else ("online" if up else "offline")


def holder_of(control: Control) -> tuple[str, Rule]:
    """(the alert's device, its rule) of an agent's availability or a site's link state."""
    if control.what == "link":
        return control.site, Rule.SITE_LINK_DOWN
    return control.id, Rule.AGENT_DOWN
