"""What the collector heard, per device: the merged latest values and a bounded charge history.

`observe` runs on the collector's ingest thread after every spooled batch, so it does O(1)
work per reading under one lock and no I/O. The HTTP threads read with `devices()` and
`device(id)`; they take the same lock only to copy what they need.

The history is kept compact: per device three parallel arrays (epoch ms, charge in hundredths
of a percent, charging as -1/0/1) instead of objects - 11 bytes a sample against ~130 for a
`Sample` - at
most one sample per `board.history_step_s` plus every start and end of charging, for
`board.history_hours` back from the device's newest sample, and never more than `_cap`.
Learned rates are cached per device and refitted only when its history changed, so a list
of 1,000 devices neither copies histories nor refits them.
"""

from __future__ import annotations

import bisect
import sys
import threading
from array import array
from dataclasses import fields, replace
from typing import TypeVar

from fleet.config import FleetSettings
from fleet.daemon import wire
from fleet.daemon.board.drain import learn
from fleet.daemon.board.model import (
    NO_CONTEXT,
    Context,
    DeviceFacts,
    Latest,
    LearnedRates,
    Sample,
)
from fleet.daemon.wire.fast import builder

_T = TypeVar("_T")
# One Latest per reading observed: built without the dataclass __init__ (fast.builder says why).
_LATEST = builder(Latest)
_LATEST_ORDER: tuple[str, ...] = ("ts_ms", "heard_ms", "pct", "charging", "current_a", "temp_c")
_LATEST_ORDER += ("state", "error_code", "range_km", "odometer_km", "lat", "lon")
if tuple(f.name for f in fields(Latest)) != _LATEST_ORDER:
    raise TypeError(f"Latest's fields changed: _merge passes them as {_LATEST_ORDER}")

_FLIP_MIN_MS = 60_000  # a charging flip closer than this to the last kept sample is bounce
_CHARGING = {None: -1, False: 0, True: 1}
_FROM_CODE: dict[int, bool | None] = {-1: None, 0: False, 1: True}


class _Track:
    """One device: where it belongs, its latest values, its history and cached rates."""

    __slots__ = ("chg", "kind", "latest", "name", "pct", "rates", "site", "ts", "version")

    def __init__(self, site: str, kind: str, name: str | None) -> None:
        self.site = site
        self.kind = kind
        self.name = name
        self.latest: Latest | None = None
        self.ts = array("q")
        self.pct = array("H")  # hundredths of a percent: 0..10000
        self.chg = array("b")
        self.version = 0  # bumped on every history change: the cached rates' key
        self.rates: tuple[int, LearnedRates] | None = None

    def samples(self) -> tuple[Sample, ...]:
        return tuple(
            Sample(ts, pct / 100, _FROM_CODE[chg])
            for ts, pct, chg in zip(self.ts, self.pct, self.chg, strict=True)
        )


class FleetView:
    def __init__(self, settings: FleetSettings) -> None:
        self._board = settings.board
        self._window_ms = int(settings.board.history_hours * 3_600_000)
        self._step_ms = int(settings.board.history_step_s * 1000)
        self._flip_ms = min(_FLIP_MIN_MS, self._step_ms)
        # Flips may add samples between steps: twice the steps bound a flapping charger.
        self._cap = 2 * (self._window_ms // self._step_ms) + 16
        self._lock = threading.Lock()
        self._tracks: dict[str, _Track] = {}
        self._registered: set[str] = set()
        # The sites this collector owns (empty: every site): another collector's devices
        # are neither listed nor taken in (the seed from InfluxDB holds every site's).
        self._sites = frozenset(settings.collector.sites)
        for d in settings.devices:
            site = d.site or settings.site.id
            if not self._sites or site in self._sites:
                self._tracks[d.id] = _Track(site, d.kind, d.name)
                self._registered.add(d.id)

    # --- the ingest thread ---------------------------------------------------------------

    def observe(self, readings: list[wire.DecodedReading], heard_ms: int) -> None:
        """Merge a spooled batch of readings (any order, any age) into the view."""
        sites = self._sites
        with self._lock:
            for r in readings:
                if sites and r.site not in sites:
                    continue
                track = self._tracks.get(r.device)
                if track is None:
                    track = self._tracks[r.device] = _Track(r.site, r.kind, None)
                charging = self._merge(track, r, heard_ms)
                if r.battery is not None and r.battery.pct is not None:
                    self._remember(track, r.ts_ms, r.battery.pct, charging)

    @staticmethod
    def _merge(track: _Track, r: wire.DecodedReading, heard_ms: int) -> bool | None:
        """Fold the reading into `latest` (unless older than it); its charging flag."""
        b, s, loc = r.battery, r.status, r.location
        own = b.charging if b is not None else None
        if own is None and s is not None and s.state is not None:
            own = s.state == "charging"
        old = track.latest
        if old is not None and r.ts_ms < old.ts_ms:
            # Late (a replayed backlog): not the latest, but heard now.
            if heard_ms > old.heard_ms:
                track.latest = replace(old, heard_ms=heard_ms)
            return own
        if old is None:
            old = Latest(ts_ms=r.ts_ms, heard_ms=heard_ms)
        # Positional, in Latest's field order (the builder takes no keywords).
        track.latest = _LATEST(
            r.ts_ms,
            max(heard_ms, old.heard_ms),
            _newer(b.pct if b else None, old.pct),
            _newer(own, old.charging),
            _newer(b.current_a if b else None, old.current_a),
            _newer(b.temp_c if b else None, old.temp_c),
            _newer(str(s.state) if s and s.state is not None else None, old.state),
            _newer(s.error_code if s else None, old.error_code),
            _newer(s.range_km if s else None, old.range_km),
            _newer(s.odometer_km if s else None, old.odometer_km),
            loc.lat if loc else old.lat,
            loc.lon if loc else old.lon,
        )
        # A newest battery reading without a flag keeps the last known one.
        return own if own is not None else track.latest.charging

    def _remember(self, t: _Track, ts_ms: int, pct: float, charging: bool | None) -> None:
        code = _CHARGING[charging]
        n = len(t.ts)
        if n and ts_ms < t.ts[-1]:
            self._insert(t, ts_ms, pct, code)
            return
        if n:
            gap = ts_ms - t.ts[-1]
            flip = code != t.chg[-1] and code != -1 and gap >= self._flip_ms
            if gap < self._step_ms and not flip:
                return
        t.ts.append(ts_ms)
        t.pct.append(round(pct * 100))
        t.chg.append(code)
        t.version += 1
        self._trim(t)

    def _insert(self, t: _Track, ts_ms: int, pct: float, code: int) -> None:
        """A late sample: kept only inside the window and a step from its neighbours."""
        if ts_ms < t.ts[-1] - self._window_ms:
            return
        i = bisect.bisect_left(t.ts, ts_ms)
        if i > 0 and ts_ms - t.ts[i - 1] < self._step_ms:
            return
        if ts_ms == t.ts[i] or t.ts[i] - ts_ms < self._step_ms:
            return
        t.ts.insert(i, ts_ms)
        t.pct.insert(i, round(pct * 100))
        t.chg.insert(i, code)
        t.version += 1
        self._trim(t)

    def _trim(self, t: _Track) -> None:
        cutoff = t.ts[-1] - self._window_ms
        drop = 0
        while drop < len(t.ts) and t.ts[drop] < cutoff:
            drop += 1
        drop = max(drop, len(t.ts) - self._cap)
        if drop:
            del t.ts[:drop]
            del t.pct[:drop]
            del t.chg[:drop]

    # --- the HTTP threads ----------------------------------------------------------------

    def devices(self, context: Context = NO_CONTEXT) -> list[DeviceFacts]:
        """Every device heard or registered, with its learned rates but without history
        (`device(id)` has it): a list of 1,000 devices copies no histories."""
        with self._lock:
            rows = [(device, t, t.latest, t.rates, t.version) for device, t in self._tracks.items()]
        out = []
        for device, t, latest, rates, version in rows:
            if rates is None or rates[0] != version:
                rates = self._refit(t)
            out.append(self._facts(device, t, latest, (), rates[1], context))
        return out

    def device(self, device: str, context: Context = NO_CONTEXT) -> DeviceFacts | None:
        """One device with its history (oldest first), or None if never heard nor registered."""
        with self._lock:
            t = self._tracks.get(device)
            if t is None:
                return None
            latest, history, version, rates = t.latest, t.samples(), t.version, t.rates
        if rates is None or rates[0] != version:
            rates = self._store(t, version, self._learn(t.kind, history))
        return self._facts(device, t, latest, history, rates[1], context)

    def _refit(self, t: _Track) -> tuple[int, LearnedRates]:
        with self._lock:
            history, version = t.samples(), t.version
        return self._store(t, version, self._learn(t.kind, history))

    def _store(self, t: _Track, version: int, rates: LearnedRates) -> tuple[int, LearnedRates]:
        entry = (version, rates)
        with self._lock:
            if t.version == version:  # else the history moved on while fitting: refit later
                t.rates = entry
        return entry

    def _learn(self, kind: str, history: tuple[Sample, ...]) -> LearnedRates:
        k = self._board.kind(kind)
        return learn(
            history, min_history_h=k.min_history_h, min_charge_history_h=k.min_charge_history_h
        )

    @staticmethod
    def _facts(
        device: str,
        t: _Track,
        latest: Latest | None,
        history: tuple[Sample, ...],
        rates: LearnedRates,
        context: Context,
    ) -> DeviceFacts:
        return DeviceFacts(
            device=device,
            site=t.site,
            kind=t.kind,
            name=t.name,
            latest=latest,
            history=history,
            learned=rates,
            alerts=context.alerts.get(device, ()),
            silenced=context.silenced.get(device),
            assignment=context.assignments.get(device),
            out_of_service=context.out_of_service.get(device),
        )

    def sites(self) -> set[str]:
        """The sites of the devices registered or heard."""
        with self._lock:
            return {t.site for t in self._tracks.values()}

    def sample_count(self) -> int:
        """Samples held across all devices (the memory bound's measure)."""
        with self._lock:
            return sum(len(t.ts) for t in self._tracks.values())

    def history_bytes(self) -> int:
        """Bytes the histories' arrays take, as allocated (with their headers and slack)."""
        with self._lock:
            return sum(
                sys.getsizeof(a) for t in self._tracks.values() for a in (t.ts, t.pct, t.chg)
            )


def _newer(new: _T | None, old: _T | None) -> _T | None:
    return new if new is not None else old
