"""Several collectors on one generated broker (`[[broker.collectors]]`): who owns which site.

The users and rights themselves are made in `users` (one user each, with its own sites'
rights, and its own replay user). Here: what is worth saying about a declaration that the
configuration's own checks accept - a site nobody owns, a collector that logs in as a user
the broker does not have, or asks for sites its user may not read. Pure: settings in,
sentences out (`fleet broker-config` prints them as notes, `fleet check-config` as warnings).
"""

from __future__ import annotations

from fleet.config import FleetSettings
from fleet.daemon.broker.users import DEFAULT_COLLECTOR_USER


def known_sites(settings: FleetSettings) -> list[str]:
    """Every site the configuration names: site.id, the registry's, the bridges'. Sorted."""
    sites = {settings.site.id, *settings.broker.bridge_sites}
    sites |= {d.site for d in settings.devices if d.site is not None}
    sites |= {a.site for a in settings.agents if a.site is not None}
    return sorted(sites)


def unowned_sites(settings: FleetSettings) -> list[str]:
    """Sites of the registry that no declared collector owns (none declared: none)."""
    declared = settings.broker.collectors
    if not declared:
        return []
    owned = {site for entry in declared for site in entry.sites}
    return [site for site in known_sites(settings) if site not in owned]


def broker_notes(settings: FleetSettings) -> list[str]:
    """`fleet broker-config`'s notes on the declared collectors."""
    unowned = unowned_sites(settings)
    if not unowned:
        return []
    return [
        f"no [[broker.collectors]] entry owns site {', '.join(unowned)}: no collector may "
        "read its readings (published, acknowledged by the broker, and dropped); add the "
        "site to a collector's sites"
    ]


def collector_warning(settings: FleetSettings) -> str | None:
    """Whether this file's collector is one the generated broker knows, with the sites that
    user may read: `KEY: what is wrong; what to do`, or None."""
    declared = settings.broker.collectors
    if not declared:
        return None
    user = settings.mqtt.username or DEFAULT_COLLECTOR_USER
    users = ", ".join(e.user for e in declared)
    index = next((i for i, e in enumerate(declared) if e.user == user), None)
    if index is None:
        return (
            f"mqtt.username: '{user}' is not a user of [[broker.collectors]] ({users}): a "
            "broker generated from this file refuses it; set mqtt.username (and "
            "mqtt.client_id) to the entry of this collector's sites"
        )
    entry = declared[index]
    mine = settings.collector.sites
    if sorted(mine) != sorted(entry.sites):
        asked = ", ".join(mine) if mine else "every site"
        return (
            f"collector.sites: this collector asks for {asked}, but its broker user "
            f"'{user}' (broker.collectors[{index}]) may read only {', '.join(entry.sites)}: "
            "the broker would withhold the rest without a word, or it would miss its own; "
            f"set collector.sites = {_toml_list(entry.sites)}"
        )
    if settings.mqtt.client_id != user:
        return (
            f"mqtt.client_id: differs from the broker user '{user}': the generated broker "
            "names the session by the user name, the collector keeps its session "
            f'bookkeeping under mqtt.client_id; set mqtt.client_id = "{user}"'
        )
    return None


def _toml_list(items: list[str]) -> str:
    return "[" + ", ".join(f'"{item}"' for item in items) + "]"
