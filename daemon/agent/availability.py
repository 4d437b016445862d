"""Device availability: retained `online`/`offline` per device, published on change.

Drivers may report the same state on every poll; only a change is published
and logged. Nothing is handed to paho while the link is down (paho may send
what it queued before CONNACK out of order); every state is published on each
(re)connect instead, which also teaches a broker that lost its retained
messages the current states.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

_LOG = logging.getLogger(__name__)

Publish = Callable[[str, bytes], None]  # (topic, payload): retained, QoS 1


class Availability:
    def __init__(self, publish: Publish, connected: Callable[[], bool]) -> None:
        self._publish = publish
        self._connected = connected
        self._states: dict[str, tuple[str, bool]] = {}  # device -> (topic, online)

    def set(self, device: str, topic: str, online: bool, detail: str = "") -> None:
        previous = self._states.get(device)
        if previous is not None and previous[1] == online:
            return
        self._states[device] = (topic, online)
        if self._connected():
            self._publish(topic, b"online" if online else b"offline")
        if online:
            _LOG.info("device %s online%s", device, f": {detail}" if detail else "")
        else:
            _LOG.warning("device %s offline%s", device, f": {detail}" if detail else "")

    def online(self, device: str) -> bool | None:
        state = self._states.get(device)
        return None if state is None else state[1]

    def republish(self) -> None:
        for topic, online in list(self._states.values()):
            self._publish(topic, b"online" if online else b"offline")

    def all_offline(self, detail: str, *, link_up: bool) -> None:
        """Every device offline at once (the agent stops): one log line, not one per device.

        `link_up` is the link itself, not the republish gate: a connect whose republish
        has not run yet would otherwise take the last word with it (the loop stops), and
        a second retained `offline` costs nothing."""
        gone = [device for device, (_, online) in self._states.items() if online]
        for device in gone:
            topic = self._states[device][0]
            self._states[device] = (topic, False)
            if link_up:
                self._publish(topic, b"offline")
        if gone:
            _LOG.info("%d device(s) marked offline: %s", len(gone), detail)
