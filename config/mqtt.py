"""Settings of the collector's link to the MQTT broker."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, model_validator

from fleet.config.base import IdStr, Loc, Secret, StrictModel, coerce_number_to_str, raise_problems


class MqttTls(StrictModel):
    """TLS towards the broker."""

    enabled: bool = Field(default=False, description="Connect with TLS (usually port 8883).")
    ca_file: Path | None = Field(
        default=None,
        description="CA bundle (PEM) that signed the broker's certificate; unset uses the "
        "system trust store.",
    )
    cert_file: Path | None = Field(
        default=None,
        description="Client certificate (PEM) for mutual TLS; needs key_file.",
    )
    key_file: Path | None = Field(
        default=None,
        description="Private key (PEM) of cert_file.",
    )
    insecure: bool = Field(
        default=False,
        description="DANGEROUS: skip the check that the broker's certificate matches `host`. "
        "Anyone on the path can then impersonate the broker. For lab use only.",
    )

    @model_validator(mode="after")
    def _check_files(self) -> MqttTls:
        problems: list[tuple[Loc, str]] = []
        if self.cert_file is not None and self.key_file is None:
            problems.append((("cert_file",), "set, but mqtt.tls.key_file is not"))
        if self.key_file is not None and self.cert_file is None:
            problems.append((("key_file",), "set, but mqtt.tls.cert_file is not"))
        if self.enabled:
            # Checked here so `fleet check-config` catches it, not the first reconnect.
            for name in ("ca_file", "cert_file", "key_file"):
                path: Path | None = getattr(self, name)
                if path is not None and not path.is_file():
                    problems.append(((name,), f"no such file: {path}"))
        raise_problems(problems)
        return self


class MqttSettings(StrictModel):
    """The broker connection (the collector is one persistent-session client)."""

    host: str = Field(
        default="localhost",
        min_length=1,
        pattern=r"^\S+$",
        description="Broker host name or address.",
    )
    port: int = Field(default=1883, ge=1, le=65535, description="Broker TCP port.")
    protocol: Annotated[Literal["5", "3.1.1"], BeforeValidator(coerce_number_to_str)] = Field(
        default="5",
        description="MQTT protocol version: '5' (session expiry, receive maximum) or '3.1.1'.",
    )
    client_id: str = Field(
        default="fleet-collector",
        min_length=1,
        max_length=256,
        description="Fixed client id: the broker keeps our persistent session (and the QoS 1 "
        "messages queued while we are away) under it, so it must not change between runs.",
    )
    topic_prefix: IdStr = Field(
        default="fleet",
        description="First topic level of the wire contract: {prefix}/v1/{site}/...",
    )
    keepalive_s: int = Field(
        default=30,
        ge=5,
        le=3600,
        description="MQTT keepalive in seconds; the broker drops us after 1.5x this silence.",
    )
    session_expiry_s: int = Field(
        default=86400,
        ge=0,
        le=2**32 - 1,
        description="MQTT 5 session expiry in seconds: how long the broker keeps our session and "
        "queues messages while we are disconnected (4294967295 = never expires).",
    )
    receive_maximum: int = Field(
        default=10000,
        ge=1,
        le=65535,
        description="MQTT 5 receive maximum: how many unacknowledged QoS 1 messages the broker "
        "may have in flight to us at once. The collector acknowledges a batch only once it is "
        "on disk, so a wide window keeps the broker sending meanwhile (measured: 10000 ingests "
        "25 % faster than 1000).",
    )
    username: str | None = Field(
        default=None, min_length=1, description="Broker user name; unset connects anonymously."
    )
    password: Secret | None = Field(
        default=None,
        description="Broker password. Prefer password_file or the systemd credential "
        "'mqtt.password' over writing it here.",
    )
    password_file: Path | None = Field(
        default=None,
        description="File whose content (trailing newline stripped) is the broker password.",
    )
    tls: MqttTls = Field(default_factory=MqttTls, description="TLS towards the broker.")

    @model_validator(mode="after")
    def _check_auth(self) -> MqttSettings:
        if self.password is not None and self.username is None:
            raise_problems([(("password",), "set, but mqtt.username is not")])
        return self
