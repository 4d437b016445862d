"""`fleet deadletters replay` towards the broker: as which user, and what the broker took.

Replay never logs in as the collector, nor as any other user the registry
names: a broker that names sessions by user name (the generated one,
`use_username_as_clientid`) would hand replay's clean session that user's
persistent session, wiping what is queued for the collector. It logs in as
the collector's replay user (`<mqtt.username>-replay`, which `fleet
broker-config` makes, allowed to publish telemetry and OwnTracks topics
only) with that user's own password, or anonymously when the collector does
too (a broker without users).

A chunk of entries is marked replayed once the broker acknowledged all of
it, except the entries it refused (MQTT 5: a PUBACK reason code of 0x80 or
more, e.g. "not authorized"): those stay unreplayed, each with the broker's
reason printed. Under MQTT 3.1.1 a refused publish is acknowledged like any
other and cannot be told apart: the command says so.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import time
from pathlib import Path

from pydantic import SecretStr

from fleet.config import FleetSettings
from fleet.config.mqtt import MqttSettings
from fleet.config.secrets import read_secret, secret_problem
from fleet.config.sources import CREDENTIALS_ENV
from fleet.daemon.broker.users import Role, collector_user, derive_users, replay_user
from fleet.daemon.collector import deadletters as store
from fleet.daemon.collector.deadletters import Kept

_CHUNK = 200  # publishes acknowledged (and marked) together
_ACK_TIMEOUT_S = 30.0
_CONNECT_TIMEOUT_S = 10.0
_SHOW_REFUSED = 20  # refused entries named one by one; the rest are counted
REPLAY_CREDENTIAL = "mqtt.replay_password"  # the systemd credential of the replay user


def printable(text: str, limit: int) -> str:
    """Hostile text made safe for a terminal: control characters escaped, length clipped."""
    safe = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return safe if len(safe) <= limit else safe[: limit - 3] + "..."


def replay_mqtt_settings(
    settings: FleetSettings, user: str | None, password_file: Path | None
) -> MqttSettings | str:
    """The collector's MQTT settings as the replay user, or why replay must not connect."""
    mqtt = settings.mqtt
    if user is None:
        if mqtt.username is None:
            return mqtt  # anonymous, as the collector: no user's session to take
        user = replay_user(collector_user(settings))
    taken = {u.name: u for u in derive_users(settings).users if u.role is not Role.REPLAY}
    if user in taken or user == mqtt.username:
        owner = taken.get(user)
        whose = f"{owner.key} ({owner.role})" if owner else "mqtt.username (the collector)"
        return (
            f"--mqtt-user: {printable(user, 64)} is the broker user of {whose}; replay never "
            "connects as another client's user: a broker that names sessions by user name "
            "(the generated one) would give replay's clean session that client's persistent "
            "session and wipe what is queued for it. Use the replay user "
            f"{replay_user(collector_user(settings))} (`fleet broker-config` makes it)"
        )
    where = password_file
    if where is None and os.environ.get(CREDENTIALS_ENV):
        where = Path(os.environ[CREDENTIALS_ENV]) / REPLAY_CREDENTIAL
    if where is None or not where.exists():
        return (
            f"--mqtt-password-file: the password of {printable(user, 64)} is needed: give "
            "--mqtt-password-file FILE (`fleet broker-config` wrote it to "
            f"DIR/credentials/{printable(user, 64)}), or the systemd credential "
            f"{REPLAY_CREDENTIAL}" + (f"; {where} does not exist" if where else "")
        )
    try:
        password = read_secret(where, lines=False)
    except (OSError, ValueError) as exc:
        return f"--mqtt-password-file: {secret_problem(where, exc)}"
    assert isinstance(password, str)
    update = {"username": user, "password": SecretStr(password), "password_file": None}
    return mqtt.model_copy(update=update)


def replay_mqtt(mqtt: MqttSettings, conn: sqlite3.Connection, entries: list[Kept]) -> int:
    """Publish in chunks; once the broker acknowledged a chunk, mark what it did not refuse."""
    from fleet.daemon.mqtt import MqttLink

    where = f"{mqtt.host}:{mqtt.port}"
    link = MqttLink(mqtt, client_id=f"{mqtt.client_id}-replay-{os.getpid()}", persistent=False)
    stop = link.start()
    try:
        deadline = time.monotonic() + _CONNECT_TIMEOUT_S
        while not link.wait_connected(0.1) and link.connect_refused is None:
            if time.monotonic() >= deadline:
                _fail(
                    f"could not connect to the MQTT broker at {where} within 10 s; nothing replayed"
                )
                return 0
        if link.connect_refused is not None:
            _fail(
                f"the MQTT broker at {where} refused {mqtt.username or 'an anonymous client'}: "
                f"{link.connect_refused}; nothing replayed"
            )
            return 0
        if mqtt.protocol == "3.1.1":
            sys.stdout.write(
                "note: under MQTT 3.1.1 a broker acknowledges a publish it refuses (its ACL) "
                "like any other: such an entry is marked replayed all the same\n"
            )
        done = refused_total = 0
        for start in range(0, len(entries), _CHUNK):
            chunk = entries[start : start + _CHUNK]
            mids = {k.id: link.publish_tracked(k.topic, k.payload, qos=1) for k in chunk}
            if not link.flush(_ACK_TIMEOUT_S):
                _fail(
                    f"the broker at {where} did not acknowledge within {_ACK_TIMEOUT_S:.0f} s; "
                    f"{len(entries) - done} entries stay unreplayed (a second replay may "
                    "repeat some; InfluxDB keeps one point per reading)"
                )
                return done
            refused = link.take_refusals(mids.values())
            accepted = [k.id for k in chunk if mids[k.id] not in refused]
            for k in chunk:
                refusal = refused.get(mids[k.id])
                if refusal is not None and refused_total < _SHOW_REFUSED:
                    _fail(
                        f"the broker refused entry {k.id} ({printable(k.topic, 100)}): "
                        f"{refusal.describe()}; it stays unreplayed"
                    )
                refused_total += refusal is not None
            store.mark_replayed(conn, accepted, int(time.time() * 1000))
            done += len(accepted)
        if refused_total:
            _fail(
                f"the broker refused {refused_total} entr{'y' if refused_total == 1 else 'ies'} "
                f"to {mqtt.username or 'an anonymous client'} (its ACL); they stay unreplayed"
            )
        return done
    finally:
        stop()


def _fail(message: str) -> None:
    sys.stderr.write(f"fleet deadletters: {message}\n")
