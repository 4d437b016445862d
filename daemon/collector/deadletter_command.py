"""`fleet deadletters`: list the kept dead letters, and replay the ones a fix made valid.

Listing opens the store read-only, so it is safe while the collector runs.
`replay` publishes each kept original back to its own topic at QoS 1, with
the configured broker, so the running collector validates it again from
scratch: a message that is valid now is stored, one that still is not
becomes a new dead letter with its reason of now. An entry is marked
replayed only once the broker acknowledged its publish and did not refuse
it (MQTT 5: a refused one stays unreplayed, with the broker's reason; MQTT
3.1.1 cannot tell). Lines InfluxDB refused are kept as line protocol, not as
MQTT messages: replay writes them to InfluxDB again. Payloads kept truncated
(`too_large`) are never replayed. Replay never logs in as the collector:
see deadletter_replay.py for the user it publishes as, and why.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fleet.config import ConfigError, FleetSettings, load_settings
from fleet.config.influx import duration_seconds
from fleet.daemon.cli_support import EX_CONFIG, load_config
from fleet.daemon.collector import deadletters as store
from fleet.daemon.collector.deadletter_replay import (
    REPLAY_CREDENTIAL,
    printable,
    replay_mqtt,
    replay_mqtt_settings,
)
from fleet.daemon.collector.deadletters import FORMAT_LINE, FORMAT_MQTT, Kept, Query

_CHUNK = 200  # publishes acknowledged (and marked) together


def _since(text: str) -> int:
    """`--since`: an ISO-8601 time (UTC unless it says otherwise) or a duration ago (`2h`)."""
    try:
        ago = duration_seconds(text)
    except ValueError:
        pass
    else:
        if ago is not None:
            return int((time.time() - ago) * 1000)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither a time (2026-11-29T21:00Z) nor a duration ago (30m, 2h, 7d)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return int(text)


def _common(parser: argparse.ArgumentParser, default: Any) -> None:
    # The sub-parser's defaults are SUPPRESS so options given before `replay` survive.
    parser.add_argument(
        "--config", type=Path, default=default, metavar="PATH", help="TOML configuration file"
    )
    parser.add_argument(
        "--reason",
        action="append",
        default=default,
        metavar="R",
        help="only this reason (e.g. future_ts); repeat for several",
    )
    parser.add_argument(
        "--since",
        type=_since,
        default=default,
        metavar="T",
        help="only those received since T: a time (2026-11-29T21:00Z, UTC if no zone) "
        "or a duration ago (30m, 2h, 7d)",
    )


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "deadletters",
        help="list the kept dead letters (refused messages); `replay` re-ingests them",
        description="List the dead letters the collector kept: when, why, from which topic. "
        "Safe while the collector runs. `fleet deadletters replay` publishes them again so "
        "the collector validates them anew (after a fix, e.g. a clock set right).",
    )
    _common(parser, None)
    parser.add_argument(
        "--limit", type=_positive, default=100, metavar="N", help="newest N (default 100)"
    )
    parser.add_argument("--json", action="store_true", help="JSON, one object per entry")
    parser.set_defaults(handler=run_list)
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    replay = actions.add_parser(
        "replay",
        help="publish kept originals again, for the running collector to validate anew",
        description="Publish each matching dead letter not yet replayed back to its topic "
        "(QoS 1, the configured MQTT settings); the running collector validates it again. "
        "An entry is marked replayed once the broker acknowledged it; one that is still "
        "invalid becomes a new dead letter. Lines InfluxDB refused are written to InfluxDB "
        "again. Truncated (too_large) payloads are skipped.",
    )
    _common(replay, argparse.SUPPRESS)
    replay.add_argument(
        "--id",
        dest="ids",
        type=_positive,
        nargs="+",
        default=[],
        metavar="ID",
        help="only these entries (the ID column of the listing)",
    )
    replay.add_argument("--dry-run", action="store_true", help="show what would be replayed")
    replay.add_argument(
        "--mqtt-user",
        metavar="USER",
        help="broker user to publish as (default: <mqtt.username>-replay, the replay user "
        "`fleet broker-config` makes; anonymous when mqtt.username is unset). Never the "
        "collector's or another client's user: that would take over its session",
    )
    replay.add_argument(
        "--mqtt-password-file",
        type=Path,
        metavar="FILE",
        help="file holding that user's password, e.g. DIR/credentials/<user> of `fleet "
        f"broker-config` (default: the systemd credential {REPLAY_CREDENTIAL})",
    )
    replay.set_defaults(handler=run_replay)


# --- listing -----------------------------------------------------------------------------------


def _iso(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _as_json(k: Kept) -> dict[str, object]:
    return {
        "id": k.id,
        "received_at": _iso(k.received_ms),
        "site": k.site,
        "topic": k.topic,
        "reason": k.reason,
        "detail": k.detail,
        "format": k.format,
        "payload": k.payload.decode("utf-8", errors="backslashreplace"),
        "payload_bytes": k.payload_bytes,
        "truncated": k.truncated,
        "replayed_at": None if k.replayed_ms is None else _iso(k.replayed_ms),
    }


def table(entries: Sequence[Kept]) -> str:
    head = ("ID", "RECEIVED", "REASON", "TOPIC", "BYTES", "REPLAYED", "DETAIL")
    rows = [
        (
            str(k.id),
            _iso(k.received_ms),
            printable(k.reason, 20),
            printable(k.topic, 60),
            f"{k.payload_bytes}{'+' if k.truncated else ''}",
            _iso(k.replayed_ms),
            printable(k.detail, 100),
        )
        for k in entries
    ]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
        for row in [head, *rows]
    )


def _settings(args: argparse.Namespace) -> FleetSettings | None:
    return load_config(getattr(args, "config", None))


def _query(args: argparse.Namespace, *, pending: bool) -> Query:
    return Query(
        reasons=tuple(getattr(args, "reason", None) or ()),
        since_ms=getattr(args, "since", None),
        ids=tuple(getattr(args, "ids", ())),
        pending=pending,
    )


def _fail(message: str) -> int:
    sys.stderr.write(f"fleet deadletters: {message}\n")
    return 1


def run_list(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if settings is None:
        return EX_CONFIG
    path = settings.collector.deadletter_file(settings.spool.path)
    if not path.exists():
        if args.json:
            sys.stdout.write("[]\n")
        else:
            sys.stdout.write(f"no dead letters kept: {path} does not exist yet\n")
        return 0
    query = _query(args, pending=False)
    try:
        conn = store.open_read_only(path)
        try:
            entries = store.select(conn, query, limit=args.limit)
            matching = store.count(conn, query)
            dropped = store.dropped_total(conn)
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return _fail(f"cannot read {path}: {exc}")
    if args.json:
        sys.stdout.write(json.dumps([_as_json(k) for k in entries], indent=1) + "\n")
        return 0
    if entries:
        sys.stdout.write(table(entries) + "\n")
    shown = f"{len(entries)} of {matching}" if matching > len(entries) else f"{matching}"
    sys.stdout.write(
        f"{shown} dead letter{'' if matching == 1 else 's'} in {path}"
        f"; {dropped} dropped so far to stay within "
        f"{settings.collector.deadletter_max_bytes} bytes (BYTES + = kept truncated)\n"
    )
    return 0


# --- replay ------------------------------------------------------------------------------------


def _replay_settings(args: argparse.Namespace) -> FleetSettings | None:
    # Replay publishes as its own user: the collector's password is never read
    # (its file may be root's alone, or a credential only the collector's unit has).
    environ = {**os.environ, "FLEET_MQTT__PASSWORD_FILE": ""}
    try:
        return load_settings(getattr(args, "config", None), environ=environ)
    except ConfigError as exc:
        for problem in exc.problems:
            sys.stderr.write(problem + "\n")
        return None


def run_replay(args: argparse.Namespace) -> int:
    settings = _replay_settings(args)
    if settings is None:
        return EX_CONFIG
    path = settings.collector.deadletter_file(settings.spool.path)
    if not path.exists():
        sys.stdout.write(f"nothing to replay: {path} does not exist yet\n")
        return 0
    try:
        conn = store.connect(path, fsync=settings.spool.fsync)
    except sqlite3.Error as exc:
        return _fail(f"cannot open {path}: {exc}")
    try:
        entries = store.select(conn, _query(args, pending=True))
        skipped = [k for k in entries if not k.replayable]
        mqtt = [k for k in entries if k.replayable and k.format == FORMAT_MQTT]
        lines = [k for k in entries if k.replayable and k.format == FORMAT_LINE]
        if skipped:
            sys.stdout.write(
                f"skipping {len(skipped)} kept truncated (too large to replay): ids "
                + ", ".join(str(k.id) for k in skipped[:20])
                + (" ..." if len(skipped) > 20 else "")
                + "\n"
            )
        if args.dry_run:
            if mqtt or lines:
                sys.stdout.write(table(mqtt + lines) + "\n")
            sys.stdout.write(
                f"would replay {len(mqtt)} to the broker and {len(lines)} to InfluxDB\n"
            )
            return 0
        done = 0
        if mqtt:
            link_settings = replay_mqtt_settings(settings, args.mqtt_user, args.mqtt_password_file)
            if isinstance(link_settings, str):
                sys.stderr.write(f"fleet deadletters replay: {link_settings}\n")
                return EX_CONFIG
            done += replay_mqtt(link_settings, conn, mqtt)
        if lines:
            done += _replay_lines(settings, conn, lines)
        sys.stdout.write(f"replayed {done} of {len(mqtt) + len(lines)}\n")
        return 0 if done == len(mqtt) + len(lines) else 1
    except sqlite3.Error as exc:
        return _fail(f"cannot update {path}: {exc}")
    finally:
        conn.close()


def _replay_lines(settings: FleetSettings, conn: sqlite3.Connection, entries: list[Kept]) -> int:
    """Write refused lines to InfluxDB again; marked replayed only if it takes them (2xx)."""
    from fleet.daemon.collector.rejections import error_text
    from fleet.daemon.collector.sinks import make_sink

    sink = make_sink(settings.influx)
    try:
        done = 0
        for start in range(0, len(entries), _CHUNK):
            chunk = entries[start : start + _CHUNK]
            result = sink.write(b"\n".join(k.payload for k in chunk))
            if not result.ok:
                why = error_text(result.body)[:300] if result.status else "unreachable"
                _fail(f"InfluxDB refused the lines again (status {result.status}): {why}")
                return done
            store.mark_replayed(conn, [k.id for k in chunk], int(time.time() * 1000))
            done += len(chunk)
        return done
    finally:
        sink.close()
