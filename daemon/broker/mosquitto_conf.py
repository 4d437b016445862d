"""mosquitto.conf, as sections of directives, each with the reason it is there.

`standard_sections` is what every broker of the fleet needs; a caller may add sections
after them (a bridge to a central broker: Mosquitto reads every line after `connection`
as the bridge's, so bridges go last). Comments stand on lines of their own: Mosquitto
takes `#` as a comment only at the start of a line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fleet.config.broker import BrokerSettings
from fleet.daemon.broker.acl import comment

# The queue and persistence directives the no-loss guarantee rests on (tests check them).
NO_LOSS_DIRECTIVES = (
    "persistence",
    "persistence_location",
    "autosave_interval",
    "max_queued_messages",
    "max_queued_bytes",
    "persistent_client_expiration",
)


@dataclass(frozen=True, slots=True)
class Directive:
    name: str
    value: str
    why: str = ""


@dataclass(frozen=True, slots=True)
class Section:
    title: str
    directives: tuple[Directive, ...]


@dataclass(frozen=True, slots=True)
class BrokerFiles:
    """Where the generated files live (absolute paths)."""

    out: Path

    @property
    def conf(self) -> Path:
        return self.out / "mosquitto.conf"

    @property
    def passwords(self) -> Path:
        return self.out / "passwords"

    @property
    def acl(self) -> Path:
        return self.out / "acl"

    @property
    def credentials(self) -> Path:
        return self.out / "credentials"


def path_problems(broker: BrokerSettings, files: BrokerFiles) -> list[tuple[str, str]]:
    """Paths mosquitto.conf cannot hold as they are: relative, or with white space."""
    named: list[tuple[str, Path | None]] = [
        ("--out", files.out),
        ("broker.persistence_location", broker.persistence_location),
        ("broker.certfile", broker.certfile),
        ("broker.keyfile", broker.keyfile),
        ("broker.cafile", broker.cafile),
    ]
    problems: list[tuple[str, str]] = []
    for key, path in named:
        if path is None:
            continue
        if not path.is_absolute():
            problems.append(
                (key, "must be an absolute path (mosquitto would resolve it from its own "
                 "working directory)")
            )  # fmt: skip
        elif any(c.isspace() for c in str(path)):
            problems.append((key, "must not contain white space (mosquitto.conf splits on it)"))
    return problems


def standard_sections(broker: BrokerSettings, files: BrokerFiles, run_as: str) -> list[Section]:
    return [
        _access(files),
        Section(
            "The user mosquitto runs as",
            (
                Directive(
                    "user",
                    run_as,
                    "Started as root, mosquitto switches to this user before it reads the "
                    "password file, the ACL and the TLS key, and to write its database: they "
                    "must be readable (persistence_location writable) by it.",
                ),
            ),
        ),
        _no_loss(broker),
        _logging(),
        _listener(broker),
    ]


def _access(files: BrokerFiles) -> Section:
    return Section(
        "Who may connect, and what each user may do",
        (
            Directive(
                "per_listener_settings",
                "false",
                "One user database and one ACL for every listener, those added later too.",
            ),
            Directive(
                "allow_anonymous",
                "false",
                "Every client logs in: an anonymous one could publish readings, availability "
                "or acknowledgements.",
            ),
            Directive(
                "password_file",
                str(files.passwords),
                "User names and PBKDF2-SHA512 hashes; the passwords are in credentials/.",
            ),
            Directive(
                "acl_file",
                str(files.acl),
                "Each user's topics, derived from the registry: an agent writes only its own "
                "devices' topics, a phone only its own OwnTracks tree.",
            ),
        ),
    )


def _no_loss(broker: BrokerSettings) -> Section:
    location = str(broker.persistence_location).rstrip("/") + "/"
    return Section(
        "No reading lost: what is queued for a client that is away survives",
        (
            Directive(
                "persistence",
                "true",
                "Sessions, subscriptions and queued QoS 1 messages are kept on disk: the "
                "collector's persistent session, and the readings queued for it while it "
                "restarts, survive a broker restart.",
            ),
            Directive(
                "persistence_location",
                location,
                "Where the database (mosquitto.db) lives; with a trailing slash, as some "
                "Mosquitto versions join the folder and the file name as they are.",
            ),
            Directive(
                "autosave_interval",
                str(broker.autosave_interval_s),
                "Seconds between saves: a broker that crashes loses what was queued since the "
                "last one (a clean stop saves everything).",
            ),
            Directive(
                "max_queued_messages",
                str(broker.max_queued_messages),
                "QoS 1 messages queued for one client that is away (0 = no limit). Mosquitto's "
                "default, 1000, would drop a few minutes of a fleet's readings while the "
                "collector restarts.",
            ),
            Directive(
                "max_queued_bytes",
                str(broker.max_queued_bytes),
                "Bytes queued for one client that is away (0 = no limit: the message count "
                "bounds the queue).",
            ),
            Directive(
                "persistent_client_expiration",
                broker.persistent_client_expiration,
                "An MQTT 3.1.1 persistent session not seen for this long is dropped with its "
                "queue; longer than any collector outage to ride out. MQTT 5 clients choose "
                "their own expiry (the collector's mqtt.session_expiry_s).",
            ),
            Directive(
                "queue_qos0_messages",
                "false",
                "The fleet's messages are QoS 1; QoS 0 ones are not queued for a client "
                "that is away (Mosquitto's default, stated).",
            ),
            Directive(
                "max_inflight_messages",
                "1000",
                "QoS 1 messages in flight to one MQTT 3.1.1 client at once: the default, 20, "
                "throttles a collector that acknowledges a batch only once it is on disk. "
                "MQTT 5 clients set their own (receive maximum).",
            ),
        ),
    )


def _logging() -> Section:
    levels = ("error", "warning", "notice", "information")
    return Section(
        "Logging, for systemd's journal (journalctl -u mosquitto)",
        (
            Directive("log_dest", "stderr", "The journal takes stderr."),
            Directive("log_timestamp", "false", "The journal stamps every line itself."),
            *(
                Directive(
                    "log_type",
                    level,
                    "Errors, warnings, refused logins and connections; not every "
                    "subscription or message."
                    if level == levels[0]
                    else "",
                )
                for level in levels
            ),
            Directive(
                "connection_messages",
                "true",
                "Who connects and disconnects, and why: a refused login shows here.",
            ),
        ),
    )


def _listener(broker: BrokerSettings) -> Section:
    directives = [
        Directive(
            "set_tcp_nodelay",
            "true",
            "Small packets (acknowledgements, alerts) leave at once instead of waiting out "
            "the peer's delayed ACK (about 40 ms a hop).",
        ),
        Directive(
            "listener",
            f"{broker.port} {broker.bind}",
            "The one listener (broker.port, broker.bind)"
            + (", TLS only." if broker.tls else ": plain TCP, keep it on the loopback address."),
        ),
        Directive(
            "use_username_as_clientid",
            "true",
            "Each session is named by its user name, whatever client id the client sends: "
            "without it any user could connect with the collector's client id and be handed "
            "its persistent session (and the readings queued in it). A second connection of "
            "a user replaces the first. An option of this listener on Mosquitto 2.0 (before "
            "the listener line it does nothing); changing it needs a restart, not a reload.",
        ),
    ]
    if broker.tls:
        directives += [
            Directive("certfile", str(broker.certfile), "The broker's certificate (PEM)."),
            Directive("keyfile", str(broker.keyfile), "Its private key, readable by mosquitto."),
        ]
        if broker.cafile is not None:
            directives.append(
                Directive(
                    "cafile",
                    str(broker.cafile),
                    "The CA that signed it, trusted for client certificates.",
                )
            )
        directives.append(
            Directive("tls_version", "tlsv1.2", "The oldest TLS version accepted: 1.2.")
        )
    return Section(
        "The listener" + (", TLS" if broker.tls else ""),
        tuple(directives),
    )


def render(sections: Sequence[Section], header: Sequence[str]) -> str:
    """The file's text: `header` (comment lines), then each section with its reasons."""
    lines = list(header)
    for section in sections:
        lines += ["", f"# --- {section.title} ---"]
        for directive in section.directives:
            if directive.why:
                lines += comment(directive.why)
            lines.append(f"{directive.name} {directive.value}")
    return "\n".join(lines) + "\n"
