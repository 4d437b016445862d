"""Settings of the collector process itself: its disk spool, HTTP endpoint and limits."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_core import PydanticCustomError

from fleet.config.base import IdStr, StrictModel

_MIB = 1024 * 1024
USER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
_MQTT_MAX_PAYLOAD = 268_435_455  # the largest payload an MQTT packet can carry


class SpoolSettings(StrictModel):
    """The on-disk queue between the broker and InfluxDB."""

    path: Path = Field(
        default=Path("/var/lib/fleet/spool.sqlite"),
        description="SQLite file of the spool; its directory must be writable.",
    )
    max_bytes: int = Field(
        default=1_073_741_824,
        ge=_MIB,
        description="Largest size of the spool in bytes (at least 1 MiB); when full, the "
        "collector stops acknowledging MQTT messages so the broker keeps them.",
    )
    fsync: bool = Field(
        default=True,
        description="fsync each commit so a power cut loses nothing; turn off only on "
        "throwaway test machines.",
    )


class HttpSettings(StrictModel):
    """The collector's HTTP endpoint (readiness board, JSON API, /metrics, /healthz)."""

    bind: str = Field(
        default="127.0.0.1:8080",
        description="host:port to listen on; an IPv6 host goes in brackets ([::1]:8080); "
        "port 0 picks a free port.",
    )

    public_read: bool = Field(
        default=True,
        description="Let anyone who reaches the port read the board and the GET API (the "
        "station LAN); false: reading needs a signed-in user too (/healthz stays open). "
        "Every change needs a user either way.",
    )
    users: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="User name -> password hash (scrypt$n$r$p$salt$hash, written by `fleet "
        "user add NAME`); never a password. Names: letters, digits, '_', '.', '@', '-'.",
    )
    allowed_hosts: list[str] | None = Field(
        default=None,
        description="Host header values accepted (DNS rebinding); a port, when given, must "
        'match too. Default: the bind host, localhost, 127.0.0.1 and [::1]. "*" accepts '
        "any host and must be written out.",
    )
    max_connections: int = Field(
        default=64,
        ge=1,
        le=10_000,
        description="Most connections served at once; one more is answered 503 and closed.",
    )
    request_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="Longest wait for one read from a client, in seconds.",
    )
    header_deadline_s: float = Field(
        default=15.0,
        gt=0,
        description="Longest time to receive a whole request (head and body), in seconds: a "
        "client trickling a byte at a time is cut off then.",
    )
    session_hours: float = Field(
        default=12.0,
        gt=0,
        le=24 * 366,
        description="A session ends this long after its last request (sliding: a kiosk that "
        "polls never logs out).",
    )
    session_key_path: Path | None = Field(
        default=None,
        description="File of the key that signs session cookies (created 0600 at first start "
        "and kept, so sessions survive a restart); default: beside the spool, "
        "<spool name>.session-key.",
    )
    tls_cert: Path | None = Field(
        default=None,
        description="PEM certificate (chain) to serve HTTPS; with tls_key, or neither.",
    )
    tls_key: Path | None = Field(
        default=None,
        description="PEM private key of tls_cert.",
    )
    login_max_failures: int = Field(
        default=5,
        ge=1,
        description="Failed logins per user name and client address in a minute; past it "
        "that pair is refused (429) until the minute is over.",
    )

    @field_validator("bind")
    @classmethod
    def _check_bind(cls, value: str) -> str:
        _split_bind(value)
        return value

    @field_validator("users")
    @classmethod
    def _check_users(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for name, secret in value.items():
            stored = secret.get_secret_value()
            if not USER_RE.fullmatch(name):
                raise PydanticCustomError(
                    "fleet_user",
                    "user names are 1-64 letters, digits, '_', '.', '@' or '-', starting "
                    "with a letter or digit",
                )
            if not stored.startswith("scrypt$") or stored.count("$") != 5:
                # The value is not echoed: it may be a password typed where the hash belongs.
                raise PydanticCustomError(
                    "fleet_user_hash",
                    "the value of user {name} is not a password hash; write it with "
                    "`fleet user add {name}`",
                    {"name": name},
                )
        return value

    @field_validator("allowed_hosts")
    @classmethod
    def _check_hosts(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and any(not h or any(c.isspace() for c in h) for h in value):
            raise PydanticCustomError("fleet_hosts", "host names must be non-empty, no spaces")
        return None if value is None else [h.lower() for h in value]

    @model_validator(mode="after")
    def _check_tls(self) -> HttpSettings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise PydanticCustomError("fleet_tls", "set both tls_cert and tls_key, or neither")
        for path in (self.tls_cert, self.tls_key):
            if path is not None and not path.is_file():
                raise PydanticCustomError(
                    "fleet_tls_file", "{path} is not a readable file", {"path": str(path)}
                )
        return self

    @property
    def hosts(self) -> list[str]:
        """The Host header values accepted: `allowed_hosts`, else the local names."""
        if self.allowed_hosts is not None:
            return list(self.allowed_hosts)
        hosts = {"localhost", "127.0.0.1", "[::1]"}
        host = self.bind_host.lower()
        if host not in ("0.0.0.0", "::"):  # noqa: S104 - "any address" is no name a browser asks for
            hosts.add(f"[{host}]" if ":" in host else host)
        return sorted(hosts)

    def session_key_file(self, spool_path: Path) -> Path:
        """The session key's file: `session_key_path`, else beside the spool."""
        if self.session_key_path is not None:
            return self.session_key_path
        return spool_path.with_name(f"{spool_path.stem}.session-key")

    @property
    def bind_host(self) -> str:
        """The host part of `bind`, without IPv6 brackets."""
        return _split_bind(self.bind)[0]

    @property
    def bind_port(self) -> int:
        """The port part of `bind`."""
        return _split_bind(self.bind)[1]


def _split_bind(value: str) -> tuple[str, int]:
    host, sep, port_text = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        host = ""  # an IPv6 address without brackets is ambiguous
    if not sep or not host or any(c.isspace() for c in host) or not port_text.isdigit():
        raise PydanticCustomError(
            "fleet_bind", "must be host:port, e.g. 127.0.0.1:8080 or [::1]:8080"
        )
    port = int(port_text)
    if port > 65535:
        raise PydanticCustomError("fleet_bind", "port must be 0..65535")
    return host, port


class CollectorSettings(StrictModel):
    """Limits of the collector's ingest path, and the sites it owns."""

    sites: list[IdStr] = Field(
        default_factory=list,
        description="Sites this collector owns (site ids): it subscribes only to their "
        "topics and stores, alerts on and shows only their devices; OwnTracks phones go by "
        "their registry site, unregistered ones by site.id. Empty: every site. Several "
        "collectors on one broker each own their own sites (each with its own broker "
        "user, mqtt.client_id equal to it, spool, alert state and HTTP bind).",
    )
    max_payload_bytes: int = Field(
        default=65536,
        ge=1,
        le=_MQTT_MAX_PAYLOAD,
        description="Largest MQTT payload accepted; larger ones go to the dead-letter topic.",
    )
    max_future_s: float = Field(
        default=300.0,
        ge=0,
        description="How far in the future a reading's ts may be, in seconds (device clock "
        "skew); later ones are rejected.",
    )
    stats_interval_s: float = Field(
        default=10.0,
        gt=0,
        description="How often the collector logs and writes its own counters, in seconds.",
    )
    ingest_batch_max: int = Field(
        default=2000,
        ge=1,
        description="Most messages committed to the spool in one transaction. Received "
        "messages wait in memory for at most two such batches: beyond that the MQTT link stops "
        "reading and the broker keeps them.",
    )
    deadletter_path: Path | None = Field(
        default=None,
        description="SQLite file keeping every dead letter (reason, topic, original payload) for "
        "`fleet deadletters`; default: next to the spool, <spool name>.deadletters.sqlite.",
    )
    deadletter_max_bytes: int = Field(
        default=64 * _MIB,
        ge=_MIB,
        description="Largest size of the kept dead letters in bytes (at least 1 MiB); past it "
        "the oldest are dropped and counted (pipeline field deadletters_dropped).",
    )

    @field_validator("sites")
    @classmethod
    def _unique_sites(cls, sites: list[str]) -> list[str]:
        twice = sorted({s for s in sites if sites.count(s) > 1})
        if twice:
            raise PydanticCustomError(
                "fleet_sites", "site {site} is listed twice", {"site": ", ".join(twice)}
            )
        return sites

    def owns(self, site: str) -> bool:
        """Whether this collector stores, alerts on and shows the site's devices."""
        return not self.sites or site in self.sites

    def deadletter_file(self, spool_path: Path) -> Path:
        """The dead-letter store's file: `deadletter_path`, else beside the spool."""
        if self.deadletter_path is not None:
            return self.deadletter_path
        return spool_path.with_name(f"{spool_path.stem}.deadletters.sqlite")
