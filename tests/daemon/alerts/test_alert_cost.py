"""What keeps the engine cheap must not change what it decides (issue 14).

- Offline from a heap of deadlines (daemon/alerts/deadlines.py) against the walk over every
  device it replaced, on random fleets: the same events, in the same order, at the same ticks.
- A quiet tick judges nobody; a batch of readings is one transaction, on disk before the
  events are returned.
"""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from fleet.config.alerts import AlertSettings, Rule
from fleet.daemon.alerts import AlertEngine, AlertEvent
from fleet.daemon.alerts.rules import DeviceView, silent_too_long
from fleet.daemon.alerts.store import AlertStore
from fleet.daemon.wire import Battery, DecodedReading

S, MIN = 1000, 60_000
T0 = 1_796_000_000_000
SETTINGS: dict[str, Any] = {
    "kinds": {"handheld": {"offline_after_s": 120}, "scooter": {"disabled": ["offline"]}},
    "devices": {"sw-3": {"offline_after_s": 45}},
}
SITES = ("allingtown", "westhaven")


class WalkEveryDevice:
    """The offline judgement before deadlines: every device, every tick (its code, verbatim
    but for the names), as the reference the heap must agree with."""

    def __init__(self, engine: AlertEngine) -> None:
        self._judge = engine._judge

    def schedule(self, *_: object) -> None:
        pass

    def silent(self, views: dict[str, DeviceView], offline_after_s: Any, now_ms: int) -> list[str]:
        j = self._judge
        if j.blind_since_ms is not None:
            return []
        down_sites = {site for (site, _), online in j._holders.items() if not online}
        floor = max(j.started_ms or now_ms, j._sight_back_ms or 0)
        found = []
        for device, view in views.items():
            after_s = offline_after_s(device, view)
            if after_s is None:
                continue
            through_agent = view.source == "telemetry"
            heard = max(view.last_heard_ms, floor)
            if through_agent:
                heard = max(heard, j._back_ms.get(view.site, heard))
            if not silent_too_long(heard, now_ms, after_s):
                continue
            if through_agent and view.site in down_sites:
                continue
            found.append(device)
        return found


def engine(store: AlertStore | None = None) -> AlertEngine:
    return AlertEngine(AlertSettings.model_validate(SETTINGS), store=store)


def reading(device: str, site: str, kind: str, source: str, ts: int, pct: float) -> DecodedReading:
    return DecodedReading(site, kind, device, None, ts, Battery(pct=pct), None, None, source)


def trace(events: list[AlertEvent]) -> list[tuple[str, str, str, bool, str]]:
    return [
        (str(e.action), e.alert.device, e.alert.rule, e.notify, e.alert.message) for e in events
    ]


def scenario(seed: int, engines: list[AlertEngine]) -> list[list[tuple[str, str, str, bool, str]]]:
    """The same random history through each engine: what each decided, step by step."""
    rng = random.Random(seed)
    devices = [f"sw-{i}" for i in range(12)] + [f"hh-{i}" for i in range(6)]
    traces: list[list[tuple[str, str, str, bool, str]]] = [[] for _ in engines]
    now = T0

    def each(method: str, *args: Any) -> None:
        for i, e in enumerate(engines):
            traces[i].extend(trace(getattr(e, method)(*args) or []))

    each("tick", now)
    for _ in range(400):
        now += rng.choice((200, 1 * S, 5 * S, 20 * S, 70 * S))
        roll = rng.random()
        if roll < 0.55:
            batch = []
            for device in rng.sample(devices, rng.randint(1, 5)):
                # Kinds and sites change under a device (shorter and disabled windows too).
                kind = rng.choice(("segway", "handheld", "scooter") if roll < 0.05 else ("segway",))
                kind = "handheld" if device.startswith("hh") and kind == "segway" else kind
                site = SITES[hash(device) % 2] if roll > 0.02 else rng.choice(SITES)
                source = "owntracks" if device == "hh-0" else "telemetry"
                ts = now - rng.choice((0, 300, 2 * S, 9 * MIN))  # some buffered, some late
                batch.append(reading(device, site, kind, source, ts, rng.uniform(5, 90)))
            each("observe_batch", batch, now)
        elif roll < 0.65:
            site, agent, up = rng.choice(SITES), rng.choice(("ag-1", "ag-2")), rng.random() < 0.5
            each("agent_availability", site, agent, up, now)
        elif roll < 0.7:
            site, up = rng.choice(SITES), rng.random() < 0.5
            each("agent_availability", site, site, up, now, Rule.SITE_LINK_DOWN)
        elif roll < 0.75:
            each("connection", rng.random() < 0.6, now)
        else:
            each("tick", now)
    return traces


@pytest.mark.parametrize("seed", range(12))
def test_offline_from_deadlines_decides_what_the_walk_over_every_device_did(seed: int) -> None:
    heap, walk = engine(), engine()
    walk._deadlines = WalkEveryDevice(walk)  # type: ignore[assignment]
    got, expected = scenario(seed, [heap, walk])
    assert any(t[2] == "offline" for t in expected), "the scenario must exercise offline"
    assert got == expected
    assert heap.alerts() == walk.alerts()


def test_a_quiet_tick_judges_nobody_and_each_silent_device_fires_on_time() -> None:
    e = engine()
    e.tick(T0)
    batch = [
        reading(f"sw-{i:04d}", "allingtown", "segway", "telemetry", T0, 80.0) for i in range(1000)
    ]
    e.observe_batch(batch, T0)
    judged = []
    after_s = e._offline_after_s

    def counting(device: str, view: DeviceView) -> float | None:
        judged.append(device)
        return after_s(device, view)

    e._offline_after_s = counting  # type: ignore[method-assign]
    for now in range(T0 + S, T0 + 10 * MIN, S):
        assert e.tick(now) == []
    assert judged == []  # nobody's deadline came up: a tick walks no device
    assert e.tick(T0 + 10 * MIN) == []  # due now, judged exactly: not yet silent for longer
    fired = e.tick(T0 + 10 * MIN + 1)
    assert sorted(ev.alert.device for ev in fired) == [b.device for b in batch]
    assert len(judged) == 2000
    assert e.tick(T0 + 10 * MIN + 2) == []
    assert len(judged) == 2000  # fired ones left the heap


def test_a_batch_is_one_transaction_on_disk_before_its_events_are_returned(tmp_path: Path) -> None:
    store = AlertStore(tmp_path / "alerts.sqlite")
    e = engine(store)
    e.tick(T0)
    commits: list[str] = []
    store._db.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)
    batch = [
        reading(f"sw-{i:03d}", "allingtown", "segway", "telemetry", T0 + i, 5.0 if i % 2 else 50.0)
        for i in range(400)
    ]
    events = e.observe_batch(batch, T0 + 500)
    assert len(events) == 200  # battery_critical fires at once for every other one
    assert commits == ["COMMIT"]
    # Another connection (another process after a crash) reads them all back as firing.
    other = sqlite3.connect(tmp_path / "alerts.sqlite")
    (firing,) = other.execute(
        "SELECT count(*) FROM alert WHERE json_extract(doc, '$.phase') = 'firing'"
    ).fetchone()
    other.close()
    assert firing == 200
    restarted = engine(AlertStore(tmp_path / "alerts.sqlite"))
    assert len(restarted.alerts(firing_only=True)) == 200


def test_a_failing_reading_costs_only_itself_and_the_batch_is_still_stored(tmp_path: Path) -> None:
    e = engine(AlertStore(tmp_path / "alerts.sqlite"))
    judge_one = e._observe

    def broken(r: DecodedReading, now_ms: int, *out: list[Any]) -> bool:
        if r.device == "sw-bad":
            raise RuntimeError("injected")
        return judge_one(r, now_ms, *out)

    e._observe = broken  # type: ignore[method-assign,assignment]
    failed: list[str] = []
    batch = [
        reading(d, "allingtown", "segway", "telemetry", T0, 5.0) for d in ("sw-1", "sw-bad", "sw-2")
    ]
    events = e.observe_batch(batch, T0, lambda r, exc: failed.append(f"{r.device}: {exc}"))
    assert failed == ["sw-bad: injected"]
    assert [ev.alert.device for ev in events] == ["sw-1", "sw-2"]
    with pytest.raises(RuntimeError):  # without on_error it is the caller's, as observe's
        e.observe(reading("sw-bad", "allingtown", "segway", "telemetry", T0 + S, 5.0), T0 + S)
    restarted = engine(AlertStore(tmp_path / "alerts.sqlite"))
    assert sorted(a.device for a in restarted.alerts(firing_only=True)) == ["sw-1", "sw-2"]
