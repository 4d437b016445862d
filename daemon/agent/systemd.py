"""What the agent tells systemd: READY, a STATUS line, and the watchdog rule.

Watched parts and how long each may go without a turn (daemon/liveness.py):

    event loop  a task on the agent's asyncio loop beats every second: it stops
                when anything blocks the loop (every driver, the outbox writer and
                the forwarder run on it)
    forwarder   its loop wakes at least every second, idle or waiting for the
                link; its supervisor may pause it up to restart_backoff_max_s

A failing outbox is not a reason to stop pinging: the agent reports itself
offline on MQTT and retries, and readings held in memory meanwhile would be
lost by a restart. `READY=1` follows the MQTT connection. Without
`$NOTIFY_SOCKET` nothing runs but the beat.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from fleet.config import FleetSettings
from fleet.daemon.agent.forward import WRITE, StoreAndForward
from fleet.daemon.agent.supervise import SupervisedDriver
from fleet.daemon.liveness import STALL_S, Health, Rate, ServiceNotifier, Watch, pulse, watched_task
from fleet.daemon.mqtt import MqttLink
from fleet.daemon.sdnotify import SdNotify

LOOP = "event loop"
FORWARDER = "forwarder"
_NAMED_DOWN = 3  # drivers named in the status line; the rest are counted


class AgentSystemd:
    def __init__(
        self,
        settings: FleetSettings,
        *,
        link: MqttLink,
        store: StoreAndForward,
        drivers: Sequence[SupervisedDriver],
        problems: Callable[[], dict[str, str]],
    ) -> None:
        self._settings = settings
        self._link = link
        self._store = store
        self._drivers = drivers
        self._problems = problems
        self.watch = Watch()
        self._loop_heart = self.watch.add(LOOP, STALL_S)
        self.watch.add(FORWARDER, STALL_S + settings.agent.restart_backoff_max_s)
        self._rate = Rate()
        self.notifier: ServiceNotifier | None = None  # while it runs under systemd

    def task(
        self, name: str, run: Callable[[], Coroutine[Any, Any, None]]
    ) -> Callable[[], Coroutine[Any, Any, None]]:
        """`run` with its heart bound, if `name` is watched."""
        heart = self.watch.hearts.get(name)
        return run if heart is None else watched_task(heart, run)

    def pulse(self) -> Coroutine[Any, Any, None]:
        """The event loop's heartbeat: run it as a task on the agent's loop."""
        return pulse(self._loop_heart)

    def start(self, sd: SdNotify | None = None) -> Callable[[], None]:
        sd = SdNotify() if sd is None else sd
        if not sd.enabled:
            return lambda: None
        self.notifier = ServiceNotifier(
            sd,
            self.watch,
            connected=lambda: self._link.connected,
            status=self.status,
            starting=self._starting,
            stopping="stopping: storing and sending the outbox",
        )
        return self.notifier.start()

    def _starting(self) -> str:
        mqtt = self._settings.mqtt
        depth = self._store.depth().rows
        return (
            f"starting: connecting to MQTT broker {mqtt.host}:{mqtt.port}; "
            f"outbox {depth:,} readings"
        )

    def status(self, health: Health) -> str:
        """e.g. '3.5 readings/s, outbox 0 readings, drivers 2 up, 0 down, MQTT connected'."""
        agent_problems = dict(self._problems())  # a copy: the loop owns the dict
        problems = health.problems() + list(agent_problems.values())
        down = [d.spec.name for d in self._drivers if not d.running]
        up = len(self._drivers) - len(down)
        drivers = f"drivers {up} up, {len(down)} down"
        if down:
            named = ", ".join(down[:_NAMED_DOWN])
            drivers += f" ({named}{', ...' if len(down) > _NAMED_DOWN else ''})"
        rate = self._rate.per_s(self._store.stats.accepted)
        figures = [
            f"{rate:,.1f} readings/s",
            f"outbox {self._store.depth().rows:,} readings",
            drivers,
        ]
        if WRITE in agent_problems:  # else `held` is only the next 50 ms batch
            figures.append(f"{self._store.held:,} held in memory")
        if health.connected:
            figures.append("MQTT connected")
        return "; ".join([*problems, ", ".join(figures)])
