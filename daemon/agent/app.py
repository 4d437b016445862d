"""The agent assembled: supervised drivers -> seq stamping -> outbox -> MQTT, plus availability.

One asyncio loop runs everything: each driver as a supervised task, the
outbox writer and the forwarder (supervised too), and the BLE watchdog. The
MQTT link (paho's own thread) carries the agent's last will: retained
`offline` on its availability topic, replaced by a retained `online` on every
connect.

While the agent cannot do its job - the outbox cannot be written or read, or
the writer or forwarder keeps failing - it publishes `offline` on that topic
instead (the v1 contract knows only online/offline, and the collector raises
`agent_down` for it), and `online` again once everything works.

`run(stop)` returns after a clean stop: drivers stopped, pending readings on
disk, the outbox sent for up to `drain_timeout_s`, every device and the agent
marked offline (retained), paho's queue flushed, disconnected.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from fleet.config import FleetSettings
from fleet.daemon import wire
from fleet.daemon.agent import telemetry
from fleet.daemon.agent.availability import Availability
from fleet.daemon.agent.forward import StoreAndForward
from fleet.daemon.agent.outbox import Outbox
from fleet.daemon.agent.registry import Clock, DriverSpec, build_specs, wall_ms
from fleet.daemon.agent.supervise import RestartPolicy, SupervisedDriver, SupervisedTask
from fleet.daemon.agent.systemd import FORWARDER, AgentSystemd
from fleet.daemon.agent.watchdog import BleWatchdog
from fleet.daemon.alerts import system
from fleet.daemon.mqtt import MqttLink
from fleet.drivers import readings
from fleet.drivers.backoff import Backoff

_LOG = logging.getLogger(__name__)

_LINK_FLUSH_S = 5.0


@dataclass(frozen=True, slots=True)
class _Route:
    telemetry: str
    availability: str


class _Sink:
    """The `DriverSink` one driver sees: the agent, with that driver's default device kind."""

    def __init__(self, agent: Agent, spec: DriverSpec) -> None:
        self._agent = agent
        self._kind = spec.device_kind

    def reading(self, reading: readings.Reading) -> None:
        self._agent.on_loop(self._agent.reading, reading, self._kind)

    def availability(self, device: str, online: bool, detail: str = "") -> None:
        self._agent.on_loop(self._agent.availability, device, self._kind, online, detail)

    def advert_seen(self) -> None:
        self._agent.watchdog.advert_seen()


class Agent:
    def __init__(
        self,
        settings: FleetSettings,
        *,
        specs: Sequence[DriverSpec] | None = None,
        clock: Clock = wall_ms,
    ) -> None:
        self.settings = settings
        cfg = settings.agent
        self._prefix = settings.mqtt.topic_prefix
        self._site = cfg.site_or(settings.site.id)
        self._registry = {d.id: d for d in settings.devices}
        self.specs = list(specs) if specs is not None else build_specs(settings, clock=clock)
        self.agent_topic = wire.agent_availability_topic(self._prefix, self._site, cfg.id)
        self.link = MqttLink(
            settings.mqtt,
            client_id=cfg.mqtt_client_id,
            persistent=True,
            will=(self.agent_topic, b"offline"),
            on_connect=self._link_connected,
            on_disconnect=self._link_lost,
        )
        self.store = StoreAndForward(
            lambda: Outbox(cfg.outbox_path, max_bytes=cfg.outbox_max_bytes, fsync=cfg.outbox_fsync),
            self.link,
            hold_max=cfg.outbox_hold_max_readings,
            on_problem=self.problem,
        )
        # Bumped on paho's thread at every connect and loss; `_announced` is the one whose
        # states the loop republished. A change publishes only then: while `link.connected`
        # is already true but `_after_connect` has not run, it would go out twice.
        self._epoch = 0
        self._announced = -1
        self.devices = Availability(self._publish_retained, lambda: self._announced == self._epoch)
        policy = RestartPolicy(
            cfg.restart_budget,
            cfg.restart_window_s,
            Backoff(cfg.restart_backoff_initial_s, cfg.restart_backoff_max_s),
        )
        self.drivers = [
            SupervisedDriver(spec, _Sink(self, spec), policy, on_down=self._down_reporter(spec))
            for spec in self.specs
        ]
        # READY, STATUS and the watchdog rule (daemon/agent/systemd.py).
        self.systemd = AgentSystemd(
            settings,
            link=self.link,
            store=self.store,
            drivers=self.drivers,
            problems=lambda: self.problems,
        )
        self.core = [
            SupervisedTask(name, run, policy, on_problem=self._problem_of(name))
            for name, run in (
                ("outbox writer", self.store.run_writer),
                (FORWARDER, self.systemd.task(FORWARDER, self.store.run_forwarder)),
            )
        ]
        self.watchdog = BleWatchdog(cfg.ble_watchdog_s, self._restart_ble)
        # What keeps the agent from doing its job now (what -> sentence); empty: online.
        self.problems: dict[str, str] = {}
        self._stopping = False
        self.invalid_readings = 0
        self.state_files_recovered = 0  # a broken outbox file replaced at start
        self._seqs: dict[str, int] = {}
        self._routes: dict[str, _Route] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._stop: asyncio.Event | None = None
        self._stop_requested = False
        self.started = threading.Event()  # set once the agent runs (for tests and the command)

    # --- the sink side (on the event loop) ------------------------------------------------------

    def on_loop(self, fn: Callable[..., None], *args: object) -> None:
        """Call `fn(*args)` on the agent's loop: at once there, else scheduled thread-safely."""
        if threading.get_ident() == self._loop_thread or self._loop is None:
            fn(*args)
        else:
            self._loop.call_soon_threadsafe(fn, *args)

    def _route(self, device: str, default_kind: str) -> _Route:
        route = self._routes.get(device)
        if route is None:
            entry = self._registry.get(device)
            kind = entry.kind if entry is not None else default_kind
            site = self.settings.device_site(device)
            route = _Route(
                wire.telemetry_topic(self._prefix, site, kind, device),
                wire.availability_topic(self._prefix, site, kind, device),
            )
            self._routes[device] = route
        return route

    def reading(self, reading: readings.Reading, default_kind: str) -> None:
        seq = self._seqs.get(reading.device, 0) + 1
        try:
            route = self._route(reading.device, default_kind)
            payload = telemetry.encode(reading, seq)
        except ValueError as exc:
            # A driver bug must not stop the driver: refuse this reading, say why.
            self.invalid_readings += 1
            _LOG.warning(
                "dropped an invalid reading of %s (%d so far): %s",
                reading.device,
                self.invalid_readings,
                str(exc).replace("\n", "; ")[:300],
            )
            return
        self._seqs[reading.device] = seq
        self.store.put(route.telemetry, payload, reading.device, seq)

    def availability(self, device: str, default_kind: str, online: bool, detail: str) -> None:
        try:
            route = self._route(device, default_kind)
        except ValueError as exc:
            _LOG.warning("availability of an invalid device id: %s", exc)
            return
        self.devices.set(device, route.availability, online, detail)

    # --- MQTT -----------------------------------------------------------------------------------

    def _publish_retained(self, topic: str, payload: bytes) -> None:
        self.link.publish(topic, payload, qos=1, retain=True)

    def _state(self) -> bytes:
        return b"offline" if self.problems or self._stopping else b"online"

    def _link_connected(self) -> None:
        # paho's thread: the will is replaced at once, the rest happens on the loop.
        self._publish_retained(self.agent_topic, self._state())
        self._epoch += 1
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._after_connect, self._epoch)

    def _link_lost(self) -> None:
        self._epoch += 1  # paho's thread: changes wait for the next connect's republish

    def _announce_recovery(self) -> None:
        """The outbox file was broken at start (logged CRITICAL by daemon/sqlite_files.py):
        counted, and a retained critical alert under the agent's id (sent once connected)."""
        recovery = self.store.outbox.recovery
        if recovery is None:
            return
        self.state_files_recovered += 1
        topic, payload, _ = system.recovery_alert(
            recovery,
            prefix=self._prefix,
            site=self._site,
            source=self.settings.agent.id,
            kind="agent",
            now_ms=int(time.time() * 1000),
        )
        self._publish_retained(topic, payload)  # paho keeps it until the link is up

    def _after_connect(self, epoch: int) -> None:
        # Again from the loop, which owns `problems`: whatever paho's thread read
        # above, the last word on the topic is the loop's current state.
        self._publish_retained(self.agent_topic, self._state())
        self.devices.republish()
        self._announced = epoch
        self.store.link_up()

    def _problem_of(self, what: str) -> Callable[[str | None], None]:
        return lambda problem: self.problem(what, problem)

    def problem(self, what: str, problem: str | None) -> None:
        """`what` stopped working (`problem` says how) or works again (None); on the loop."""
        before = self._state()
        if problem is None:
            self.problems.pop(what, None)
        else:
            self.problems[what] = problem
        after = self._state()
        if after == before:
            return
        if after == b"offline":
            _LOG.error("agent reports itself offline: %s", "; ".join(self.problems.values()))
        else:
            _LOG.warning("agent reports itself online again")
        if self.link.connected:
            self._publish_retained(self.agent_topic, after)

    # --- supervision ----------------------------------------------------------------------------

    def _down_reporter(self, spec: DriverSpec) -> Callable[[str], None]:
        def down(detail: str) -> None:
            for device in spec.devices:
                self.availability(device, spec.device_kind, False, detail)

        return down

    def _restart_ble(self) -> int:
        return sum(1 for d in self.drivers if d.spec.ble and d.restart())

    # --- life cycle -----------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the agent to stop (from any thread or a signal handler; also before it runs)."""
        self._stop_requested = True
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._stop = asyncio.Event()
        if self._stop_requested:
            self._stop.set()
        cfg = self.settings.agent
        self._seqs = await self.store.open()
        self._announce_recovery()
        self._warn_unknown_kinds()
        self.link.start()
        for task in self.core:
            task.start()
        tasks: list[asyncio.Task[None]] = []
        if any(spec.ble for spec in self.specs):
            tasks.append(asyncio.create_task(self.watchdog.run(), name="ble watchdog"))
        for driver in self.drivers:
            driver.start()
        tasks.append(asyncio.create_task(self.systemd.pulse(), name="liveness pulse"))
        stop_notify = self.systemd.start()  # READY=1 once MQTT is connected
        _LOG.info(
            "agent %s started: %d driver(s), outbox %s (%d waiting), will on %s",
            cfg.id,
            len(self.drivers),
            cfg.outbox_path,
            self.store.depth().rows,
            self.agent_topic,
        )
        self.started.set()
        try:
            await self._stop.wait()
        finally:
            stop_notify()  # STOPPING=1: no watchdog ping while the agent winds down
            await self._shutdown(tasks)

    async def _shutdown(self, tasks: list[asyncio.Task[None]]) -> None:
        _LOG.info("agent stopping")
        await asyncio.gather(*(d.stop() for d in self.drivers))
        writer, forwarder = self.core
        await writer.stop()  # a commit under way completes; the rest is flushed here
        await self._last_flush(self.settings.agent.drain_timeout_s)
        drained = await self.store.drain(self.settings.agent.drain_timeout_s)
        await forwarder.stop()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.devices.all_offline("agent stopped", link_up=self.link.connected)
        self._stopping = True
        if self.link.connected:
            self._publish_retained(self.agent_topic, b"offline")
        flushed = self.link.connected and await asyncio.get_running_loop().run_in_executor(
            None, self.link.flush, _LINK_FLUSH_S
        )
        self.link.stop()
        left = self.store.depth().rows
        await self.store.close()
        _LOG.info(
            "agent stopped; %d reading(s) left in the outbox%s",
            left,
            "" if drained and flushed else " (broker unreachable: sent on the next start)",
        )

    async def _last_flush(self, within_s: float) -> None:
        """Commit what is pending, retrying a failing outbox for up to `within_s`."""
        deadline = time.monotonic() + within_s
        for _ in range(1000):  # bounded even if the clock stood still
            try:
                pause = await self.store.flush()
            except Exception:  # noqa: BLE001 - a bug must not keep the agent from stopping
                _LOG.exception("the last commit to the outbox failed")
                return
            if not pause or time.monotonic() + pause >= deadline:
                return
            await asyncio.sleep(pause)

    def _warn_unknown_kinds(self) -> None:
        for spec in self.specs:
            for device in spec.devices:
                entry = self._registry.get(device)
                kind = entry.kind if entry is not None else spec.device_kind
                if kind not in self.settings.kinds:
                    _LOG.error(
                        "device %s of driver %s has kind %s, which is not in `kinds`: the "
                        "collector will refuse its readings; add it to the device registry",
                        device,
                        spec.name,
                        kind,
                    )


def run_forever(agent: Agent) -> None:
    """Run `agent` on a fresh event loop in this thread until `agent.stop()`."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(agent.run())
