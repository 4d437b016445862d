"""Settings of the collector process itself: its disk spool, HTTP endpoint and limits."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_core import PydanticCustomError

from fleet.config.base import StrictModel

_MIB = 1024 * 1024
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

    @field_validator("bind")
    @classmethod
    def _check_bind(cls, value: str) -> str:
        _split_bind(value)
        return value

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
    """Limits of the collector's ingest path."""

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
        description="Most messages committed to the spool in one transaction.",
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

    def deadletter_file(self, spool_path: Path) -> Path:
        """The dead-letter store's file: `deadletter_path`, else beside the spool."""
        if self.deadletter_path is not None:
            return self.deadletter_path
        return spool_path.with_name(f"{spool_path.stem}.deadletters.sqlite")
