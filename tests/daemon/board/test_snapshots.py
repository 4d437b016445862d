"""The device list judged once and shared: kept for its age, dropped on a change, refreshed
while watched, one computation for concurrent requests, gzip that decodes to the same."""

from __future__ import annotations

import gzip
import threading
from dataclasses import dataclass, field

from fleet.daemon.board.snapshots import Snapshots


@dataclass
class Judge:
    """Counts its calls; `gate` holds a computation until the test releases it."""

    calls: list[str | None] = field(default_factory=list)
    gate: threading.Event | None = None
    started: threading.Event = field(default_factory=threading.Event)

    def __call__(self, site: str | None) -> bytes:
        self.calls.append(site)
        self.started.set()
        if self.gate is not None:
            assert self.gate.wait(10)
        return f'[{{"site": "{site}", "n": {len(self.calls)}}}]'.encode()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_answer_is_kept_for_its_age_then_judged_again() -> None:
    judge, clock = Judge(), Clock()
    snaps = Snapshots(judge, max_age_s=2.0, clock=clock)
    first = snaps.get("allingtown")
    clock.now += 1.9
    assert snaps.get("allingtown") is first
    assert snaps.get("westhaven").body != first.body  # per site
    clock.now += 0.2
    assert snaps.get("allingtown").body == b'[{"site": "allingtown", "n": 3}]'
    assert judge.calls == ["allingtown", "westhaven", "allingtown"]
    assert gzip.decompress(first.gzipped) == first.body


def test_a_change_drops_what_was_kept() -> None:
    judge, clock = Judge(), Clock()
    snaps = Snapshots(judge, clock=clock)
    snaps.get(None)
    snaps.changed()
    snaps.get(None)
    assert judge.calls == [None, None]


def test_refresh_judges_only_what_a_screen_watches_and_forgets_the_rest() -> None:
    judge, clock = Judge(), Clock()
    snaps = Snapshots(judge, max_age_s=2.0, watch_s=60.0, clock=clock)
    snaps.get("allingtown")
    snaps.refresh()
    assert judge.calls == ["allingtown"]  # still fresh
    clock.now += 1.0
    snaps.refresh()  # half its age: made again before a request would have to wait
    assert judge.calls == ["allingtown", "allingtown"]
    clock.now += 1.5
    assert snaps.get("allingtown").body.endswith(b'"n": 2}]')  # served, not judged
    clock.now += 61
    snaps.refresh()  # nobody asked for a minute
    assert judge.calls == ["allingtown", "allingtown"]
    snaps.get("allingtown")
    assert len(judge.calls) == 3


def test_concurrent_requests_share_one_computation() -> None:
    judge, clock = Judge(gate=threading.Event()), Clock()
    snaps = Snapshots(judge, clock=clock)
    answers: list[bytes] = []
    threads = [
        threading.Thread(target=lambda: answers.append(snaps.get(None).body)) for _ in range(4)
    ]
    threads[0].start()
    assert judge.started.wait(10)
    for t in threads[1:]:
        t.start()
    assert judge.gate is not None
    judge.gate.set()
    for t in threads:
        t.join(10)
    assert judge.calls == [None]
    assert answers == [b'[{"site": "None", "n": 1}]'] * 4
