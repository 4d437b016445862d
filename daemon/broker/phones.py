"""The OwnTracks topics a collector's replay user may write: its own sites' phones only.

`fleet deadletters replay` republishes a collector's kept originals to their own topics, and
a collector keeps the dead letters of its own sites only. OwnTracks topics carry no site: the
collector files a message under its phone's registry site (`owntracks = "user/device"`), and a
pair the registry does not name under the default site, `site.id` (`Decoder.site_of`). So the
replay user needs exactly:

- the topic of each registered phone of its sites, `owntracks/<user>/<device>`;
- when it owns the default site, the phones the registry does not name too. On the generated
  broker those can only be under a registered OwnTracks user (no other OwnTracks user logs
  in), so `owntracks/<user>/+` - but only for a user all of whose registered phones are this
  collector's: the `+` would cover another site's phone of that user otherwise.

A dead letter of an unregistered phone whose user also has phones at other sites cannot be
replayed then: the broker refuses it, and replay says so and keeps it (register the phone and
run `fleet broker-config` again). Pure: settings in, topics out.
"""

from __future__ import annotations

from collections.abc import Sequence

from fleet.config import FleetSettings
from fleet.daemon import wire


def replay_owntracks(settings: FleetSettings, sites: Sequence[str] = ()) -> list[tuple[str, str]]:
    """(topic, why) for each OwnTracks topic the replay user of the collector owning `sites`
    (empty: every site) may write, in registry order."""
    mine = set(sites)
    default = settings.site.id
    owns_default = not mine or default in mine
    phones: dict[str, list[tuple[str, str, str]]] = {}  # user -> (device part, device, site)
    for device in settings.devices:
        if device.owntracks is not None:
            user, part = device.owntracks.split("/", 1)
            site = settings.device_site(device.id)
            phones.setdefault(user, []).append((part, device.id, site))
    granted: list[tuple[str, str]] = []
    for user, owned in phones.items():
        ours = [phone for phone in owned if not mine or phone[2] in mine]
        if owns_default and len(ours) == len(owned):
            why = (
                f"every phone of OwnTracks user {user}, republished from dead letters: those "
                f"the registry names are at {_sites(ours)}, one it does not name is filed "
                f"under {default}"
            )
            granted.append((wire.owntracks_topic(user, "+"), why))
            continue
        for part, device_id, site in ours:
            why = f"{device_id}'s phone (site {site}), republished from dead letters"
            granted.append((wire.owntracks_topic(user, part), why))
    return granted


def _sites(phones: list[tuple[str, str, str]]) -> str:
    names = sorted({site for _, _, site in phones})
    return ("site " if len(names) == 1 else "sites ") + ", ".join(names)
