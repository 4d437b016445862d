"""Private Mosquitto and InfluxDB servers for the tests and the demo.

Each server lives in its own work directory (generated config, data, logs) and
listens on 127.0.0.1 on a free port (or a fixed one, for the demo), so a test
run never touches a system broker or database and two runs never collide.
`restart()` comes back on the same port with the same data, which is what the
outage tests need. Anything still running when the interpreter exits is
stopped (atexit); `process.spawn` covers a run that is killed outright.

This module is the harness's public face: MosquittoServer lives here, the
InfluxDB server (tests/harness/influx.py) and the shared life cycle
(tests/harness/base.py) are re-exported.
"""

from __future__ import annotations

import os
import pwd
from pathlib import Path

from tests.harness.base import ManagedServer, ServerError, find_binary
from tests.harness.influx import InfluxError, InfluxServer
from tests.harness.process import free_port, port_open, tail
from tests.harness.waiting import wait_until

__all__ = [
    "InfluxError",
    "InfluxServer",
    "MosquittoServer",
    "ServerError",
    "find_binary",
    "free_port",
]


class MosquittoServer(ManagedServer):
    """Mosquitto 2.0 with persistence and no per-client queue limit.

    The collector relies on the broker to queue QoS 1 messages for its
    persistent session while it is down, so the queue must not drop them at
    the default 1000. `extra_config` lines are appended (later lines win).
    """

    name = "mosquitto"

    def __init__(self, workdir: Path, port: int | None = None, *, extra_config: str = "") -> None:
        super().__init__(workdir, port)
        self.extra_config = extra_config

    @property
    def config_path(self) -> Path:
        return self.workdir / "mosquitto.conf"

    @property
    def log_path(self) -> Path:
        return self.workdir / "mosquitto.log"

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    def _command(self) -> list[str]:
        binary = find_binary("mosquitto")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self._config())
        return [binary, "-c", str(self.config_path)]

    def _config(self) -> str:
        # Run as root, mosquitto switches to user "mosquitto" unless told
        # otherwise, and that user cannot write our temporary directory.
        user = pwd.getpwuid(os.geteuid()).pw_name
        return "\n".join(
            [
                f"listener {self.port} {self.host}",
                "allow_anonymous true",
                f"user {user}",
                "persistence true",
                # mosquitto concatenates location and file name: keep the slash.
                f"persistence_location {self.data_dir}/",
                "persistence_file mosquitto.db",
                # 0 = no limit (mosquitto.conf(5)); the default 1000 would drop
                # readings queued for the collector while it is down.
                "max_queued_messages 0",
                "max_queued_bytes 0",
                # A manual-ack subscriber (v3.1.1, or v5 without Receive
                # Maximum) would otherwise get only 20 messages in flight.
                "max_inflight_messages 1000",
                # Small packets (PUBACKs, alerts) go out at once, not after the
                # peer's delayed-ACK timer (~40 ms a hop).
                "set_tcp_nodelay true",
                f"log_dest file {self.log_path}",
                "log_type error",
                "log_type warning",
                "log_type notice",
                "log_type information",
                "log_type subscribe",
                "log_type unsubscribe",
                "connection_messages true",
                "log_timestamp_format %Y-%m-%dT%H:%M:%S",
                self.extra_config,
                "",
            ]
        )

    def _is_ready(self) -> bool:
        return port_open(self.host, self.port)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_offset(self) -> int:
        """Current size of the broker log: pass it as `since` to look only at newer lines."""
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def subscribed(self, client_id: str, topic_filter: str, *, since: int = 0) -> bool:
        """True if the log (from byte `since`) shows `client_id` subscribing to `topic_filter`."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(since)
                text = log.read().decode(errors="replace")
        except FileNotFoundError:
            return False
        # mosquitto logs a subscription as "<timestamp>: <client id> <qos> <filter>".
        for line in text.splitlines():
            _, _, rest = line.partition(": ")
            parts = rest.split(" ")
            if len(parts) == 3 and parts[0] == client_id and parts[2] == topic_filter:
                return True
        return False

    def wait_subscribed(
        self, client_id: str, topic_filter: str, *, since: int = 0, timeout: float = 10
    ) -> None:
        """Wait until `client_id` has subscribed to `topic_filter` (seen in the broker log)."""
        wait_until(
            lambda: self.subscribed(client_id, topic_filter, since=since),
            timeout=timeout,
            message=f"{client_id} subscribed to {topic_filter} on {self!r}",
        )

    def diagnostics(self) -> str:
        return f"{super().diagnostics()}\n--- {self.log_path} ---\n{tail(self.log_path)}"
