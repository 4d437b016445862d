"""A real AF_UNIX datagram socket posing as systemd's $NOTIFY_SOCKET.

Every datagram is kept, parsed into its `KEY=VALUE` assignments, in arrival
order: one datagram per notifier tick, so tests can count ticks by counting
datagrams.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path

Datagram = dict[str, str]

_SUN_PATH_MAX = 107  # sockaddr_un.sun_path holds 108 bytes, NUL included


def parse(data: bytes) -> Datagram:
    out: Datagram = {}
    for line in data.decode().split("\n"):
        key, sep, value = line.partition("=")
        assert sep, f"not an assignment: {line!r} in {data!r}"
        out[key] = value
    return out


class NotifySocket:
    """Bound at `tmp_path/notify` (or an abstract name starting with '@')."""

    def __init__(self, where: Path | str) -> None:
        if isinstance(where, Path):
            path = where / "notify"
            assert len(str(path)) <= _SUN_PATH_MAX, f"socket path too long for AF_UNIX: {path}"
            self.env_value = str(path)
            address = str(path)
        else:
            assert where.startswith("@")
            self.env_value = where
            address = "\0" + where[1:]
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(address)
        self.received: list[Datagram] = []
        self.raw: list[bytes] = []

    def env(self, watchdog_s: float | None = None) -> dict[str, str]:
        env = {"NOTIFY_SOCKET": self.env_value}
        if watchdog_s is not None:
            env["WATCHDOG_USEC"] = str(int(watchdog_s * 1_000_000))
        return env

    def _take(self, timeout: float) -> Datagram | None:
        self._sock.settimeout(timeout)
        try:
            data = self._sock.recv(65536)
        except TimeoutError:
            return None
        self.raw.append(data)
        self.received.append(parse(data))
        return self.received[-1]

    def drain(self) -> list[Datagram]:
        """The datagrams waiting now (without waiting for more)."""
        got: list[Datagram] = []
        self._sock.setblocking(False)
        try:
            while True:
                data = self._sock.recv(65536)
                self.raw.append(data)
                self.received.append(parse(data))
                got.append(self.received[-1])
        except BlockingIOError:
            return got

    def wait_for(
        self, predicate: Callable[[Datagram], bool], timeout: float = 20, message: str = ""
    ) -> Datagram:
        """Receive until a datagram satisfies `predicate`; returns it (earlier ones are kept)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                seen = [r.decode() for r in self.raw[-5:]]
                raise AssertionError(
                    f"no datagram: {message or 'condition not met'} "
                    f"(waited {timeout:g} s; last ones: {seen})"
                )
            datagram = self._take(remaining)
            if datagram is not None and predicate(datagram):
                return datagram

    def next(self, count: int, timeout: float = 20) -> list[Datagram]:
        """The next `count` datagrams, as they arrive."""
        return [
            self.wait_for(lambda _: True, timeout, f"datagram {i + 1} of {count}")
            for i in range(count)
        ]

    def close(self) -> None:
        self._sock.close()
