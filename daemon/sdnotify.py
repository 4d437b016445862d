"""systemd's notify protocol (sd_notify(3)), written from its facts rather than a dependency.

The whole protocol: a datagram of newline-separated `KEY=VALUE` assignments sent
to the AF_UNIX datagram socket named by `$NOTIFY_SOCKET` (a path, or an
abstract-namespace name when it starts with '@'). systemd reads the sender's
pid from the socket credentials, so with `NotifyAccess=main` only the main
process - any of its threads - is listened to. Nothing is set when the
process does not run under a `Type=notify` unit: every call is then a no-op.

`$WATCHDOG_USEC` is the unit's `WatchdogSec=`; `$WATCHDOG_PID`, when set, names
the one process meant to ping. sd_watchdog_enabled(3) advises pinging at half
the interval.

A notification is never worth stopping the service for: `send` never raises.
A failed send is counted (`failures`) and logged once per streak of failures;
the next one is tried as usual.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Mapping

_LOG = logging.getLogger(__name__)

_SEND_TIMEOUT_S = 2.0  # systemd reads its socket at once; a full queue must not hang a thread
_STATUS_MAX = 400  # one readable line in `systemctl status`


def _address(raw: str | None) -> str | None:
    """The socket address of `$NOTIFY_SOCKET`, or None when it is unset or unusable."""
    if not raw:
        return None
    if raw.startswith("@"):
        return "\0" + raw[1:]  # Linux's abstract namespace
    if raw.startswith("/"):
        return raw
    # systemd >= 254 also knows `vsock:` addresses (for VMs); a service on a host never gets one.
    _LOG.warning("NOTIFY_SOCKET=%r is neither a path nor an abstract name; not notifying", raw)
    return None


def _watchdog_s(environ: Mapping[str, str], pid: int) -> float | None:
    """The watchdog period in seconds when this process is the one to ping, else None."""
    usec = environ.get("WATCHDOG_USEC")
    if not usec:
        return None
    target = environ.get("WATCHDOG_PID")
    if target:
        try:
            if int(target) != pid:
                return None  # meant for another process (our parent, or a child we became)
        except ValueError:
            _LOG.warning("WATCHDOG_PID=%r is not a number; not pinging the watchdog", target)
            return None
    try:
        value = int(usec)
    except ValueError:
        value = 0
    if value <= 0:
        _LOG.warning("WATCHDOG_USEC=%r is not a positive number; not pinging the watchdog", usec)
        return None
    return value / 1_000_000


def clean_status(text: str) -> str:
    """One line, bounded: a newline would start a new assignment in the datagram."""
    line = " ".join(text.split())
    return line if len(line) <= _STATUS_MAX else line[: _STATUS_MAX - 1] + "…"


class SdNotify:
    """The notify socket of this process, as its environment describes it."""

    def __init__(self, environ: Mapping[str, str] | None = None, pid: int | None = None) -> None:
        env = os.environ if environ is None else environ
        self.address = _address(env.get("NOTIFY_SOCKET"))
        watchdog = _watchdog_s(env, os.getpid() if pid is None else pid)
        # sd_watchdog_enabled(3): ping at half the period; None = no watchdog (or not ours).
        self.watchdog_period_s = watchdog
        self.ping_every_s = None if watchdog is None else watchdog / 2
        self.sent = 0
        self.failures = 0
        self._failing = False
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()  # the notifier thread and the stopping main thread

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *assignments: str) -> bool:
        """One datagram of `KEY=VALUE` lines; True if it left. A no-op without a socket."""
        if self.address is None or not assignments:
            return False
        data = "\n".join(assignments).encode()
        with self._lock:
            try:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                    self._sock.settimeout(_SEND_TIMEOUT_S)
                self._sock.sendto(data, self.address)
            except OSError as exc:
                self.failures += 1
                if not self._failing:
                    self._failing = True
                    _LOG.warning(
                        "could not notify systemd (%s); retrying with the next message", exc
                    )
                return False
            if self._failing:
                self._failing = False
                _LOG.info("notifying systemd works again (%d messages failed)", self.failures)
            self.sent += 1
            return True

    def ready(self, status: str | None = None) -> bool:
        return self.send("READY=1", *([f"STATUS={clean_status(status)}"] if status else []))

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={clean_status(text)}")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def stopping(self, status: str | None = None) -> bool:
        return self.send("STOPPING=1", *([f"STATUS={clean_status(status)}"] if status else []))

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None
