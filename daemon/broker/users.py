"""The broker's users and their rights, derived from the settings. Pure: no files, no I/O.

Five roles, each user exactly one:

- the **collector** (`mqtt.username`, else `fleet-collector`): reads every site's telemetry,
  availability, acknowledgements and OwnTracks, and is the only writer of alerts and dead
  letters;
- its **replay** user (`<collector>-replay`): writes its collector's telemetry and its sites'
  phones (broker/phones.py) only, for `fleet deadletters replay`. A user of its own: the
  broker names sessions by user name (`use_username_as_clientid`), so a replay logged in as
  the collector would take over its persistent session and wipe what is queued for it;
- each **agent** of `[[agents]]`: writes its own devices' telemetry and availability topics
  (exact topics: site and kind from the registry) and its own availability, nothing else;
- each **OwnTracks user** (the user part of a device's `owntracks = "user/device"`): reads
  and writes `owntracks/<user>/#` only, so one officer's phone can neither report as another
  nor read another's positions;
- each of `broker.ack_users`: acknowledges alerts of any site and reads the alerts.

Every right is a per-user `topic` line: a Mosquitto `pattern` line applies to every user
(`owntracks/%u/#` would let an agent publish OwnTracks positions under its own name).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from fleet.config import FleetSettings
from fleet.config.collector import USER_RE
from fleet.daemon import wire
from fleet.daemon.broker.phones import replay_owntracks

DEFAULT_COLLECTOR_USER = "fleet-collector"
REPLAY_SUFFIX = "-replay"
NAME_RULE = (
    "broker user names are 1-64 letters, digits, '_', '.', '@' or '-', starting with a "
    "letter or digit (the ACL and password files cannot hold others safely)"
)

Access = Literal["read", "write", "readwrite"]


class Role(StrEnum):
    COLLECTOR = "collector"
    REPLAY = "replay"
    AGENT = "agent"
    OWNTRACKS = "owntracks"
    ACK = "ack"
    BRIDGE = "bridge"  # a sub-station broker on the central one (broker/bridge.py)


@dataclass(frozen=True, slots=True)
class Right:
    """One ACL line: `topic <access> <topic>`, with the reason written above it."""

    access: Access
    topic: str
    why: str


@dataclass(frozen=True, slots=True)
class BrokerUser:
    name: str
    role: Role
    key: str  # the configuration key that names this user, for messages
    rights: tuple[Right, ...]
    summary: str  # one line for the command's report and the README's table


@dataclass(frozen=True, slots=True)
class Plan:
    """What the settings ask of the broker: its users, or the problems that stop it."""

    users: tuple[BrokerUser, ...]
    problems: tuple[tuple[str, str], ...]  # (configuration key, message)
    notes: tuple[str, ...]  # worth saying, not wrong


def _any_site(prefix: str, site: str = "+") -> str:
    return f"{wire.check_id('topic prefix', prefix)}/{wire.VERSION}/{site}"


def alerts_filter(prefix: str, site: str = "+") -> str:
    """Every alert topic and its acknowledgement topic, of every site (or of `site`)."""
    return f"{_any_site(prefix, site)}/alerts/#"


def ack_filter(prefix: str) -> str:
    return next(t for t in wire.control_subscriptions(prefix) if t.endswith("/ack"))


def deadletter_filter(prefix: str, site: str = "+") -> str:
    return f"{_any_site(prefix, site)}/deadletter"


def owntracks_tree(user: str) -> str:
    return wire.owntracks_topic(user, "#")


def collector_user(settings: FleetSettings) -> str:
    """The collector's broker user: `mqtt.username`, else fleet-collector."""
    return settings.mqtt.username or DEFAULT_COLLECTOR_USER


def replay_user(collector: str) -> str:
    """The broker user of `fleet deadletters replay`, named after the collector's."""
    return collector + REPLAY_SUFFIX


def collector_rights(prefix: str, sites: Sequence[str] = ()) -> tuple[Right, ...]:
    """A collector's rights over its `sites` (empty: every site, as one `+` level). OwnTracks
    topics carry no site: every collector reads them and keeps its own sites' phones."""
    *telemetry, owntracks = wire.subscriptions(prefix, sites)
    levels = [wire.check_id("site", s) for s in sites] or ["+"]
    names = [f"site {s}" for s in sites] or ["every site"]
    of = [f" of {name}" for name in names] if sites else [""]  # one collector: as it was
    control = wire.control_subscriptions(prefix, sites)
    n = len(levels)
    availability, links = control[:n], control[2 * n :]
    return (
        *(
            Right("read", t, f"{name}'s telemetry")
            for t, name in zip(telemetry, names, strict=True)
        ),
        Right("read", owntracks, "OwnTracks phones' locations"),
        *(
            Right("read", t, f"devices' and agents' availability{w} (retained)")
            for t, w in zip(availability, of, strict=True)
        ),
        *(
            Right("read", t, f"the sub-stations' bridge links{w} (retained; site_link_down)")
            for t, w in zip(links, of, strict=True)
        ),
        *(
            Right(
                "readwrite",
                alerts_filter(prefix, level),
                f"the only writer of alerts{w} (retained); reads the acknowledgements beneath them",
            )
            for level, w in zip(levels, of, strict=True)
        ),
        *(
            Right(
                "readwrite", deadletter_filter(prefix, level), f"the only writer of dead letters{w}"
            )
            for level, w in zip(levels, of, strict=True)
        ),
    )


def replay_rights(settings: FleetSettings, sites: Sequence[str] = ()) -> tuple[Right, ...]:
    """Its collector's sites' telemetry and phones (OwnTracks topics carry no site)."""
    *telemetry, _ = wire.subscriptions(settings.mqtt.topic_prefix, sites)
    why = "republishes kept originals (dead letters) to their own topics, for the collector"
    phones = [Right("write", t, w) for t, w in replay_owntracks(settings, sites)]
    return (*(Right("write", t, why) for t in telemetry), *phones)


def ack_rights(prefix: str) -> tuple[Right, ...]:
    return (
        Right("write", ack_filter(prefix), "acknowledges an alert of any site"),
        Right("read", alerts_filter(prefix), "sees the alerts it may acknowledge"),
    )


def owntracks_rights(user: str) -> tuple[Right, ...]:
    return (
        Right(
            "readwrite",
            owntracks_tree(user),
            "its own phones' locations and the app's own topics (commands, events); nobody else's",
        ),
    )


def derive_users(settings: FleetSettings) -> Plan:
    """The broker's users in a fixed order: collector, replay, agents, OwnTracks, ack users."""
    builder = _Builder(settings)
    builder.add_collector()
    builder.add_replay()
    builder.add_agents()
    builder.add_owntracks()
    builder.add_ack_users()
    builder.add_notes()
    return Plan(tuple(builder.users), tuple(builder.problems), tuple(builder.notes))


class _Builder:
    def __init__(self, settings: FleetSettings) -> None:
        self.settings = settings
        self.prefix = settings.mqtt.topic_prefix
        self.users: list[BrokerUser] = []
        self.problems: list[tuple[str, str]] = []
        self.notes: list[str] = []
        self._taken: dict[str, BrokerUser] = {}

    def _add(self, user: BrokerUser, *, derived: str = "") -> None:
        if not USER_RE.fullmatch(user.name):
            # The value is not echoed: config messages never repeat a rejected value.
            self.problems.append((user.key, f"{derived}cannot be a broker user name: {NAME_RULE}"))
            return
        other = self._taken.get(user.name)
        if other is not None:
            self.problems.append(
                (
                    user.key,
                    f"'{user.name}' is already the broker user of {other.key} "
                    f"({other.role}): each broker user has one role, give it another name",
                )
            )
            return
        self._taken[user.name] = user
        self.users.append(user)

    def add_collector(self) -> None:
        if self.settings.broker.collectors:
            self._add_declared_collectors()
            return
        name = collector_user(self.settings)
        if self.settings.mqtt.username is None:
            self.notes.append(
                f"mqtt.username is unset: the collector's broker user is "
                f"'{DEFAULT_COLLECTOR_USER}'; set mqtt.username = \"{DEFAULT_COLLECTOR_USER}\" "
                "in the collector's configuration"
            )
        self._add(
            BrokerUser(
                name,
                Role.COLLECTOR,
                "mqtt.username",
                collector_rights(self.prefix),
                "reads telemetry, availability, acknowledgements and OwnTracks; the only "
                "writer of alerts and dead letters",
            )
        )
        if USER_RE.fullmatch(name) and self.settings.mqtt.client_id != name:
            # The client id is not echoed: it may be any text (config messages never repeat
            # a rejected value); the user name passed the name rule above, or is reported.
            self.problems.append(
                (
                    "mqtt.client_id",
                    f"differs from the collector's broker user '{name}': the generated broker "
                    "names every session by its user name (use_username_as_clientid), and the "
                    "collector keeps its session bookkeeping in the spool under mqtt.client_id; "
                    f'set mqtt.client_id = "{name}" (a client id no longer tells two clients '
                    "apart: two collectors cannot share one broker user)",
                )
            )

    def _add_declared_collectors(self) -> None:
        """`[[broker.collectors]]`: a user each (its own session), its sites' rights only."""
        for index, entry in enumerate(self.settings.broker.collectors):
            key = f"broker.collectors[{index}].user"
            sites = ("site " if len(entry.sites) == 1 else "sites ") + ", ".join(entry.sites)
            self._add(
                BrokerUser(
                    entry.user,
                    Role.COLLECTOR,
                    key,
                    collector_rights(self.prefix, entry.sites),
                    f"{sites}: reads their telemetry, availability, acknowledgements and "
                    "OwnTracks; the only writer of their alerts and dead letters",
                )
            )
            self.add_replay(entry.user, key, entry.sites)

    def add_replay(
        self, collector: str | None = None, key: str = "mqtt.username", sites: Sequence[str] = ()
    ) -> None:
        if self.settings.broker.collectors and collector is None:
            return  # added with each declared collector
        collector = collector or collector_user(self.settings)
        if not USER_RE.fullmatch(collector):
            return  # the collector's name is reported already
        self._add(
            BrokerUser(
                replay_user(collector),
                Role.REPLAY,
                key,
                replay_rights(self.settings, sites),
                "writes its collector's telemetry and phones only: `fleet deadletters "
                "replay`, never as the collector (that would take over its session)",
            ),
            derived=f"with '{REPLAY_SUFFIX}' added (its replay user) it ",
        )

    def add_agents(self) -> None:
        kinds = {d.id: d.kind for d in self.settings.devices}
        for index, agent in enumerate(self.settings.agents):
            site = agent.site or self.settings.site.id
            rights = [
                Right(
                    "write",
                    wire.agent_availability_topic(self.prefix, site, agent.id),
                    "its own availability (retained, and its last will)",
                )
            ]
            for device in agent.devices:
                device_site = self.settings.device_site(device)
                kind = kinds[device]  # the settings refuse an agent device not in the registry
                rights += [
                    Right(
                        "write",
                        wire.telemetry_topic(self.prefix, device_site, kind, device),
                        f"{device}'s readings",
                    ),
                    Right(
                        "write",
                        wire.availability_topic(self.prefix, device_site, kind, device),
                        f"{device}'s availability (retained)",
                    ),
                ]
            devices = ", ".join(agent.devices) or "no devices"
            self._add(
                BrokerUser(
                    agent.id,
                    Role.AGENT,
                    f"agents[{index}].id",
                    tuple(rights),
                    f"site {site}: writes its own availability and the telemetry and "
                    f"availability of {devices}",
                )
            )

    def add_owntracks(self) -> None:
        seen: set[str] = set()
        for index, device in enumerate(self.settings.devices):
            if device.owntracks is None:
                continue
            user = device.owntracks.split("/", 1)[0]
            if user in seen:
                continue  # one officer, several phones: one broker user
            seen.add(user)
            self._add(
                BrokerUser(
                    user,
                    Role.OWNTRACKS,
                    f"devices[{index}].owntracks",
                    owntracks_rights(user),
                    f"reads and writes {owntracks_tree(user)} only",
                )
            )

    def add_ack_users(self) -> None:
        first: dict[str, int] = {}
        for index, name in enumerate(self.settings.broker.ack_users):
            key = f"broker.ack_users[{index}]"
            if name in first:
                self.problems.append((key, f"duplicate (also broker.ack_users[{first[name]}])"))
                continue
            first[name] = index
            self._add(
                BrokerUser(
                    name,
                    Role.ACK,
                    key,
                    ack_rights(self.prefix),
                    "acknowledges alerts of any site; reads the alerts",
                )
            )

    def add_notes(self) -> None:
        if not self.settings.agents:
            self.notes.append(
                "no [[agents]] are registered: no agent may publish telemetry on this broker"
            )
        read = {d for a in self.settings.agents for d in a.devices}
        unheard = [d.id for d in self.settings.devices if d.id not in read and not d.owntracks]
        if unheard:
            self.notes.append(
                "nobody may publish the telemetry of "
                + ", ".join(unheard)
                + " (no registered agent reads it, and it has no OwnTracks identity)"
            )
        agent = self.settings.agent
        if self.settings.agent_site(agent.id) is not None and agent.mqtt_client_id != agent.id:
            # Only a note: the broker renames the session whatever the agent sends, and the
            # agent keeps no state under its client id. Its logs should name what the broker's do.
            self.notes.append(
                f"agent.client_id: this file's agent '{agent.id}' connects with another client "
                f"id, but the generated broker names its session '{agent.id}' (its user name); "
                f'set agent.client_id = "{agent.id}" so that its log and the broker\'s agree'
            )
        broker = self.settings.broker
        if not broker.tls and not _loopback(broker.bind):
            self.notes.append(
                f"broker.tls is off and broker.bind ({broker.bind}) is not a loopback "
                "address: passwords cross the network in clear"
            )


def _loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
