"""Who may be called offline, and from when: the engine's judgement of telemetry silence.

``offline`` is the only rule judged on silence, and silence is evidence only of what the
collector could have seen. So a device's silence counts from the latest of:
- when it was last heard (on the collector's clock: ``clock``);
- the engine's first tick: whatever the broker queued while the collector was down arrives
  first, so no device is called offline for the downtime before a window;
- the return of a holder of its site (telemetry devices only; OwnTracks phones do not go
  through agents): while an agent is down (``agent_down``) or the site's bridge link is cut
  (``site_link_down``, ``links``) the site's devices are not judged at all, and when it comes
  back each gets a full window to be heard again (its backlog arrives first);
- the end of the collector's own last *blind spell*: from losing its MQTT connection (T0) to
  regaining it (T1) it sees nothing, so nothing is judged offline while blind, and at T1 every
  device gets a full window in which the backlog the broker kept for it arrives. Alerts already
  firing at T0 stay as they are (an offline one resolves when its device is heard).

A blind spell also dates a link's "0": the central broker publishes the bridge's will as it
stops, i.e. while the collector cannot see it, and the collector reads it (retained, and
queued in its session) only after T1. A "0" that is the first state of that link read since
T1, when the last state known before T0 was "1" or none, therefore counts from T0: the link
cannot be known to have gone down later than the collector lost sight of everything. A "0"
already known before T0 keeps its own start. Why "first read since T1" suffices without a time
bound: on every reconnect the collector subscribes again and reads each link's retained state,
and a "0" (a will) only ever follows a connection that published "1"; so a later "0" is never
the first read after a spell.
"""

from __future__ import annotations

import logging

from fleet.config.alerts import Rule
from fleet.daemon.alerts import links
from fleet.daemon.alerts.model import EngineCounters
from fleet.daemon.alerts.rules import DeviceView

_LOG = logging.getLogger(__name__)

Holder = tuple[str, str]


class OfflineJudge:
    """The engine's state for offline: holders up or down, returns, the blind spells.

    Not thread-safe on its own: the engine calls it under its lock.
    """

    def __init__(self, counters: EngineCounters) -> None:
        self._counters = counters
        self.started_ms: int | None = None
        self._holders: dict[Holder, bool] = {}
        self._back_ms: dict[str, int] = {}  # site -> when its last agent or link came back
        self.blind_since_ms: int | None = None  # T0 while the collector is blind
        self._lost_ms: int | None = None  # T0 of the last spell that ended
        self._sight_back_ms: int | None = None  # T1 of the last spell
        self._read_since_sight: set[Holder] = set()

    def start(self, now_ms: int) -> None:
        if self.started_ms is None:
            self.started_ms = now_ms

    def restore_down(self, site: str, who: str, rule: Rule) -> None:
        """A holding alert restored firing from the store: its holder is down."""
        self._holders[links.holder(site, who, rule)] = False

    # --- the collector's own connection ---------------------------------------------------------

    def connection(self, connected: bool, now_ms: int) -> None:
        """The collector's MQTT connection lost (T0) or regained (T1); repeats change nothing."""
        if not connected:
            if self.blind_since_ms is None:
                self.blind_since_ms = now_ms
                self._counters.blind_spells += 1
                _LOG.warning("collector blind (MQTT connection lost): nobody judged offline")
            return
        lost = self.blind_since_ms
        if lost is None:
            return  # the first connect, or a repeat: no spell to end
        self.blind_since_ms = None
        self._lost_ms, self._sight_back_ms = lost, now_ms
        self._read_since_sight.clear()
        self._counters.blind_ms += max(0, now_ms - lost)
        _LOG.info(
            "collector sees again after %.1f s blind: every device gets a full offline window",
            (now_ms - lost) / 1000,
        )

    # --- holders: agents and links --------------------------------------------------------------

    def holder_state(self, site: str, who: str, rule: Rule, online: bool, now_ms: int) -> int:
        """Note an agent's availability or a link's state; returns when a "down" counts from
        (now, or T0 for a link's "0" first read after a blind spell: module docstring)."""
        key = links.holder(site, who, rule)
        was = self._holders.get(key)
        self._holders[key] = online
        first_read = key not in self._read_since_sight
        self._read_since_sight.add(key)
        if online and was is False:
            self._back_ms[site] = now_ms
        if (
            not online
            and rule is Rule.SITE_LINK_DOWN
            and was is not False
            and first_read
            and self._lost_ms is not None
            and self.blind_since_ms is None
        ):
            return min(self._lost_ms, now_ms)
        return now_ms

    # --- judging --------------------------------------------------------------------------------

    def down_sites(self) -> set[str]:
        """The sites whose agent or bridge link is down: their telemetry devices are held."""
        return {site for (site, _), online in self._holders.items() if not online}

    def heard_from(self, view: DeviceView, now_ms: int) -> int:
        """When the device's silence counts from (module docstring): the latest of when it was
        last heard, the first tick, the end of the last blind spell and, for a device fed
        through an agent, its site's last holder return. (``deadlines`` judges with it.)"""
        floor = max(self.started_ms or now_ms, self._sight_back_ms or 0)
        heard = max(view.last_heard_ms, floor)
        if view.source == "telemetry":
            heard = max(heard, self._back_ms.get(view.site, heard))
        return heard
