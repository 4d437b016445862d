"""The Mosquitto broker that `fleet broker-config` generates, and the agents it lets in.

The broker's users and rights are derived from the registry, never written by hand: the
collector (`mqtt.username`), each agent in `[[agents]]` (its own devices only), each OwnTracks
user named by a device's `owntracks = "user/device"`, and the `ack_users`.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from fleet.config.base import IdStr, Loc, StrictModel, raise_problems
from fleet.config.collector import USER_RE


class AgentRegistration(StrictModel):
    """One agent the collector and the broker trust: its id, its site and the devices it reads."""

    id: IdStr = Field(
        description="The agent's id (`agent.id` in its own configuration): its availability "
        "topic and, on a generated broker, its user name."
    )
    site: IdStr | None = Field(
        default=None, description="The site it publishes for; unset means `site.id`."
    )
    devices: list[IdStr] = Field(
        default_factory=list,
        description="Ids of the registered devices ([[devices]]) whose telemetry and "
        "availability it may publish; on a generated broker, nothing else.",
    )


class BrokerCollector(StrictModel):
    """One of several collectors sharing the generated broker: its own broker user (and so
    its own persistent session) with the rights of its own sites only."""

    user: str = Field(
        description="Its broker user: its mqtt.username, and its mqtt.client_id too (the "
        "generated broker names every session by its user name)."
    )
    sites: list[IdStr] = Field(
        min_length=1,
        description="The sites it owns (its collector.sites): it reads their telemetry, "
        "availability, acknowledgements and bridge links and is the only writer of their "
        "alerts and dead letters. No site may belong to two collectors.",
    )

    @field_validator("user")
    @classmethod
    def _check_user(cls, value: str) -> str:
        if not USER_RE.fullmatch(value):
            # Not echoed: config messages never repeat a rejected value.
            raise PydanticCustomError(
                "fleet_broker_user",
                "broker user names are 1-64 letters, digits, '_', '.', '@' or '-', starting "
                "with a letter or digit",
            )
        return value


class BridgeSettings(StrictModel):
    """A sub-station broker's bridge up to the central broker (`fleet broker-config --role
    substation`)."""

    address: str | None = Field(
        default=None,
        min_length=1,
        pattern=r"^\S+$",
        description="Host name or address of the central broker (its certificate's name "
        "with tls); needed for --role substation.",
    )
    port: int = Field(default=8883, ge=1, le=65535, description="The central broker's port.")
    tls: bool = Field(
        default=True,
        description="Bridge over TLS 1.2 or newer (needs cafile). Off sends the bridge's "
        "password and every reading in clear.",
    )
    cafile: Path | None = Field(
        default=None, description="CA certificate (PEM) the central broker's certificate is "
        "checked against.",
    )  # fmt: skip
    remote_username: IdStr | None = Field(
        default=None,
        description="The bridge's user on the central broker; unset means bridge-<site.id>, "
        "the user `--role central` makes for each of its bridge_sites.",
    )
    password_file: Path | None = Field(
        default=None,
        description="File holding the bridge's password on the central broker (the central "
        "broker's credentials/bridge-<site>, copied here); written into mosquitto.conf, which "
        "is 0640 root:mosquitto.",
    )


class BrokerSettings(StrictModel):
    """The Mosquitto configuration `fleet broker-config` writes (mosquitto.conf, acl, passwords)."""

    bind: str = Field(
        default="127.0.0.1",
        min_length=1,
        pattern=r"^\S+$",
        description="Address the listener binds: 127.0.0.1 for agents on this machine only, "
        "the station LAN's address (or 0.0.0.0) when agents or phones connect from elsewhere.",
    )
    port: int = Field(
        default=1883,
        ge=1,
        le=65535,
        description="Listener port (8883 is the usual one with TLS).",
    )
    tls: bool = Field(
        default=False,
        description="Serve TLS only on the listener (needs certfile and keyfile). Off means "
        "passwords cross the network in clear: keep bind on 127.0.0.1 then.",
    )
    cafile: Path | None = Field(
        default=None,
        description="CA certificate (PEM) clients are told to trust; written to the "
        "configuration for clients that present certificates.",
    )
    certfile: Path | None = Field(default=None, description="The broker's certificate (PEM).")
    keyfile: Path | None = Field(
        default=None, description="The broker's private key (PEM), readable by mosquitto only."
    )
    persistence_location: Path = Field(
        default=Path("/var/lib/mosquitto/"),
        description="Where Mosquitto keeps its database: the sessions and the messages queued "
        "for a client that is away (the collector while it restarts).",
    )
    autosave_interval_s: int = Field(
        default=30,
        ge=1,
        le=86400,
        description="How often Mosquitto saves its database. A broker that crashes (not a "
        "clean stop) loses what was queued since the last save: shorter is safer, longer is "
        "less disk work.",
    )
    max_queued_messages: int = Field(
        default=1_000_000,
        ge=0,
        description="QoS 1 messages queued for one client that is away, 0 = no limit. "
        "Mosquitto's own default (1000) would drop a few minutes of a fleet's readings "
        "while the collector restarts; 1,000,000 is ~17 min of 1,000 devices at 1 Hz. "
        "Past it Mosquitto acknowledges and drops: size it for the longest time the "
        "collector may be away.",
    )
    max_queued_bytes: int = Field(
        default=0,
        ge=0,
        description="Bytes queued for one client that is away, 0 = no limit (the message count "
        "bounds it).",
    )
    persistent_client_expiration: str = Field(
        default="7d",
        pattern=r"^[1-9][0-9]*[hdwmy]$",
        description="How long Mosquitto keeps the session of an MQTT 3.1.1 client that is away "
        "(MQTT 5 clients choose their own expiry: the collector's `mqtt.session_expiry_s`).",
    )
    ack_users: list[IdStr] = Field(
        default_factory=list,
        description="Broker users that may acknowledge alerts over MQTT (any site). Nobody "
        "else may publish an acknowledgement; the board's API needs no broker user.",
    )

    collectors: list[BrokerCollector] = Field(
        default_factory=list,
        description="Several collectors on this broker, each owning its own sites: a broker "
        "user, password and ACL each. Empty: one collector user (mqtt.username, else "
        "fleet-collector) for every site.",
    )
    bridge: BridgeSettings = Field(
        default_factory=BridgeSettings,
        description="A sub-station's bridge to the central broker (--role substation).",
    )
    bridge_sites: list[IdStr] = Field(
        default_factory=list,
        description="On the central broker (--role central): the sub-station sites whose "
        "brokers bridge in; each gets the broker user bridge-<site> with that site's rights.",
    )

    @model_validator(mode="after")
    def _check(self) -> BrokerSettings:
        missing = [name for name in ("certfile", "keyfile") if getattr(self, name) is None]
        problems: list[tuple[Loc, str]] = [
            ((name,), "needed when broker.tls is true") for name in missing if self.tls
        ]
        problems += _collector_problems(self.collectors)
        raise_problems(problems)
        return self


def _collector_problems(collectors: list[BrokerCollector]) -> list[tuple[Loc, str]]:
    """Two collectors with one user would take each other's session; two owning one site
    would store its readings twice and alert twice."""
    problems: list[tuple[Loc, str]] = []
    users: dict[str, int] = {}
    owner: dict[str, int] = {}
    for index, entry in enumerate(collectors):
        if entry.user in users:
            problems.append(
                (("collectors", index, "user"), f"also the user of broker.collectors[{users[entry.user]}]: "
                 "each collector needs a broker user of its own (sessions are named by it)")
            )  # fmt: skip
        users.setdefault(entry.user, index)
        for site in dict.fromkeys(entry.sites):
            if entry.sites.count(site) > 1:
                problems.append((("collectors", index, "sites"), f"site {site} is listed twice"))
            if site in owner:
                problems.append(
                    (("collectors", index, "sites"), f"site {site} is also owned by "
                     f"broker.collectors[{owner[site]}] ('{collectors[owner[site]].user}'): a "
                     "site belongs to one collector")
                )  # fmt: skip
            else:
                owner[site] = index
    return problems
