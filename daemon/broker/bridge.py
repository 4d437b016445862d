"""Sub-stations bridged to a central broker: `fleet broker-config --role substation|central`.

A sub-station's Mosquitto carries its own agents; a bridge (a client of the central broker
that Mosquitto itself runs) forwards the site's readings up and the centre's alerts down.
Directions, per topic, so nothing loops and each message has one author:

- up (`out`): the site's telemetry and availability (devices and agents). Never the site's
  own alerts or dead letters: the central collector is their author.
- down (`in`): the alerts the central collector publishes for the site (retained), so the
  sub-station's own board and ack users see them.
- both: acknowledgements - one made at the sub-station goes up to the collector that owns
  the alert, one made at the centre comes down. Mosquitto sends neither back where it came
  from: its bridges subscribe locally with no-local, and with `try_private` the central
  broker knows the bridge and does the same.
- the bridge's own notification topic (`wire.link_topic`) is in no direction: Mosquitto
  publishes it on both brokers itself, and a local "0" queued for the bridge while the link
  is down would otherwise reach the centre after the "1" of the reconnect.

The central broker gets a user `bridge-<site>` per sub-station with that site's rights only.
"""

from __future__ import annotations

from pathlib import Path

from fleet.config import FleetSettings
from fleet.daemon import wire
from fleet.daemon.broker.mosquitto_conf import Directive, Section
from fleet.daemon.broker.users import BrokerUser, Right, Role

BRIDGE_PREFIX = "bridge-"


def bridge_user(site: str) -> str:
    """The bridge's broker user (and session) on the central broker."""
    return BRIDGE_PREFIX + site


def _site_filters(prefix: str, site: str) -> tuple[str, str, str, str]:
    head = f"{wire.check_id('topic prefix', prefix)}/{wire.VERSION}/{wire.check_id('site', site)}"
    return (
        f"{head}/+/+/telemetry",
        f"{head}/+/+/availability",
        f"{head}/alerts/+/+",
        f"{head}/alerts/+/+/ack",
    )


def bridge_rights(prefix: str, site: str) -> tuple[Right, ...]:
    """A sub-station's bridge on the central broker: its own site's topics, nothing else."""
    telemetry, availability, alerts, acks = _site_filters(prefix, site)
    return (
        Right("write", telemetry, f"site {site}'s readings, forwarded"),
        Right("write", availability, f"site {site}'s devices' and agents' availability"),
        Right(
            "write",
            wire.link_topic(prefix, site, bridge_user(site)),
            "its own link state: '1' on connect, '0' as its will (site_link_down)",
        ),
        Right("readwrite", acks, "acknowledgements made at the sub-station up, the centre's down"),
        Right("read", alerts, f"the alerts of site {site}, for the sub-station's own board"),
    )


def central_users(settings: FleetSettings) -> tuple[list[BrokerUser], list[tuple[str, str]]]:
    """The bridge users `--role central` adds, and the problems that stop it."""
    users: list[BrokerUser] = []
    problems: list[tuple[str, str]] = []
    prefix = settings.mqtt.topic_prefix
    for index, site in enumerate(settings.broker.bridge_sites):
        if site in settings.broker.bridge_sites[:index]:
            problems.append((f"broker.bridge_sites[{index}]", "listed twice"))
            continue
        users.append(
            BrokerUser(
                bridge_user(site),
                Role.BRIDGE,
                f"broker.bridge_sites[{index}]",
                bridge_rights(prefix, site),
                f"the bridge of sub-station {site}: writes its telemetry, availability and "
                "link state; its acknowledgements both ways; reads its alerts",
            )
        )
    if not users:
        problems.append(("broker.bridge_sites", "name the sub-station sites that bridge in"))
    return users, problems


def substation_problems(settings: FleetSettings) -> list[tuple[str, str]]:
    bridge = settings.broker.bridge
    problems: list[tuple[str, str]] = []
    if bridge.address is None:
        problems.append(("broker.bridge.address", "needed with --role substation"))
    if bridge.password_file is None:
        problems.append(
            ("broker.bridge.password_file", "needed with --role substation (the central "
             "broker's credentials/bridge-<site>, copied here)")
        )  # fmt: skip
    if bridge.tls and bridge.cafile is None:
        problems.append(("broker.bridge.cafile", "needed when broker.bridge.tls is true"))
    for key, path in (("broker.bridge.cafile", bridge.cafile),):
        if path is not None and (not path.is_absolute() or any(c.isspace() for c in str(path))):
            problems.append((key, "must be an absolute path without white space"))
    return problems


def read_password(path: Path) -> str:
    """The bridge's password: the file's first line. OSError and ValueError name the file,
    never its content."""
    text = path.read_text(encoding="utf-8").splitlines()
    password = text[0].strip() if text else ""
    if not password or any(c.isspace() for c in password):
        raise ValueError(f"{path}: holds no password on its first line (or one with spaces)")
    return password


def substation_section(settings: FleetSettings, password: str) -> Section:
    """The bridge up to the central broker; goes last in mosquitto.conf (every line after
    `connection` is the bridge's)."""
    bridge = settings.broker.bridge
    site = settings.site.id
    prefix = settings.mqtt.topic_prefix
    user = bridge.remote_username or bridge_user(site)
    telemetry, availability, alerts, acks = _site_filters(prefix, site)
    d = [
        Directive("connection", user, "The bridge to the central broker, named by its user."),
        Directive("address", f"{bridge.address}:{bridge.port}", "The central broker."),
        Directive(
            "bridge_protocol_version",
            "mqttv311",
            "With try_private the central Mosquitto knows this is a bridge and never sends "
            "its own messages back to it.",
        ),
        Directive("try_private", "true", ""),
        Directive(
            "remote_clientid",
            user,
            "Fixed: the central broker keeps this bridge's session, and what it subscribed "
            "to, by this name (use_username_as_clientid makes it the user name there anyway).",
        ),
        Directive("remote_username", user, "The central broker's bridge-<site> user."),
        Directive("remote_password", password, "From broker.bridge.password_file."),
        Directive(
            "local_clientid",
            f"{user}.local",
            "Fixed too: the local session holds the readings queued for the centre while "
            "the link is down; a new name would start an empty one.",
        ),
        Directive(
            "cleansession",
            "false",
            "Persistent sessions at both ends: readings published here while the link is "
            "down are queued for the bridge (max_queued_messages, persistence above, kept "
            "across a restart of this broker) and sent at QoS 1 when it is back; alerts "
            "for the site queued at the centre come down the same way.",
        ),
        Directive("local_cleansession", "false", ""),
        Directive(
            "notifications",
            "true",
            "Mosquitto publishes '1' (retained) here and at the centre when the bridge is "
            "connected, and leaves '0' as its will at the centre: the central collector "
            "raises one site_link_down instead of one offline alert per device.",
        ),
        Directive("notifications_local_only", "false", ""),
        Directive("notification_topic", wire.link_topic(prefix, site, user), ""),
        Directive("keepalive_interval", "30", "A cut link is noticed within 45 s at the centre."),
        Directive(
            "restart_timeout",
            "5 15",
            "Reconnect after 5 s, backing off to at most 15 s: once the centre is back (a "
            "cut line mended, its broker restarted) the backlog starts within 15 s, and its "
            "collector reads the stale '0' kept there for no longer than that.",
        ),
        Directive("start_type", "automatic", ""),
        Directive(
            "topic",
            f"{telemetry} out 1",
            "Up at QoS 1: readings and availability. Never this site's own alerts or dead "
            "letters: the central collector writes those.",
        ),
        Directive("topic", f"{availability} out 1", ""),
        Directive("topic", f"{alerts} in 1", "Down: the centre's alerts for this site."),
        Directive(
            "topic",
            f"{acks} both 1",
            "Acknowledgements both ways; no loop: no-local here, try_private there.",
        ),
    ]
    if bridge.tls:
        d += [
            Directive("bridge_cafile", str(bridge.cafile), "The CA of the central broker."),
            Directive("bridge_tls_version", "tlsv1.2", "TLS 1.2 or newer."),
            Directive("bridge_insecure", "false", "The centre's certificate name is checked."),
        ]
    return Section(f"The bridge up to the central broker (site {site})", tuple(d))


ROLES = ("single", "substation", "central")


def users_for(
    role: str, settings: FleetSettings, users: tuple[BrokerUser, ...]
) -> tuple[tuple[BrokerUser, ...], list[tuple[str, str]]]:
    """The broker's users for `role` (central: the bridge users added), and its problems."""
    if role == "substation":
        return users, substation_problems(settings)
    if role != "central":
        return users, []
    extra, problems = central_users(settings)
    taken = {u.name: u for u in users}
    for user in extra:
        other = taken.get(user.name)
        if other is not None:
            problems.append(
                (user.key, f"'{user.name}' is already the broker user of {other.key} "
                 f"({other.role}): each broker user has one role")
            )  # fmt: skip
    return (*users, *extra), problems


def sections_for(role: str, settings: FleetSettings) -> list[Section]:
    """mosquitto.conf's sections after the standard ones. Reads the bridge's password file:
    OSError or ValueError (naming the file, never the password) when it cannot."""
    if role != "substation":
        return []
    path = settings.broker.bridge.password_file
    assert path is not None  # substation_problems refuses the role without it
    return [substation_section(settings, read_password(path))]
