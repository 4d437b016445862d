"""What the MQTT link says about its connection: why it cannot connect (once per reason), and
not paho's repetition of it.

paho calls `on_connect_fail` inside its own `except OSError` around each connection attempt
and itself logs only "Connection failed, retrying" at DEBUG, without the error: a broker
certificate the link refuses (another host's name, an unknown CA) would look like silence
while nothing connects. Socket and TLS errors carry no secret (the password is sent only
after TLS is up), so their words are logged as they are. Not paho-specific: no paho import.
"""

from __future__ import annotations

import logging
import ssl
import sys
from typing import Any

_LOG = logging.getLogger("fleet.daemon.mqtt")  # the link's own logger: one place to look

# OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH and X509_V_ERR_IP_ADDRESS_MISMATCH.
_NAME_MISMATCH = (62, 64)


def failure_reason(exc: BaseException | None) -> tuple[str, int]:
    """Why a connection attempt failed, in words, and how loudly: a refused certificate is
    a configuration to fix (ERROR), a broker away is an outage (WARNING)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        if exc.verify_code in _NAME_MISMATCH:
            hint = (
                "mqtt.host must be a name the broker's certificate holds (mqtt.tls.insecure "
                "skips this check, and lets anyone on the path pose as the broker)"
            )
        else:
            hint = "is mqtt.tls.ca_file the CA that signed the broker's certificate?"
        reason = (
            f"TLS: the broker's certificate is refused: {exc.verify_message.rstrip('.')}; {hint}"
        )
        return reason, logging.ERROR
    if exc is None:
        return "paho gave no reason", logging.WARNING
    return str(exc) or type(exc).__name__, logging.WARNING


class ConnectFailures:
    """The last reason a link to `where` (host:port) failed to connect; None once it does."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.reason: str | None = None

    def on_connect_fail(self, client: Any, userdata: Any) -> None:
        """paho's callback; the error being handled is paho's connect failure."""
        reason, level = failure_reason(sys.exc_info()[1])
        if reason != self.reason:  # once per reason, not at each retry of an outage
            self.reason = reason
            _LOG.log(
                level, "cannot connect to the MQTT broker at %s: %s; retrying", self.where, reason
            )

    def clear(self) -> None:
        self.reason = None


class NoSocketNoise(logging.Filter):
    """Drops paho's ERROR "Client is not connected", which paho's loop logs each time it goes
    round without a socket: after our own DISCONNECT at a clean stop (while QoS 1 publishes
    are unacknowledged), and at every retry while the broker cannot be reached. Each of those
    the link has already said once in its own words (a clean stop says nothing; a lost
    connection and a failed attempt are WARNINGs, a refused certificate an ERROR), so paho's
    line only repeats it - every second or so through an outage, which teaches operators to
    ignore paho's errors. Any other line of paho's passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Client is not connected")
