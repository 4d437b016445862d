"""The board as the collector runs it: verdicts from the view + sign-out sheet, changes refused
with a reason, every change audited through the real spool, and the overdue sign-out alert
raised once per sign-out - across a restart too - and resolved at the sign-in."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from fleet.config import FleetSettings, load_settings
from fleet.daemon.alerts.model import Action, AlertEvent
from fleet.daemon.board.assignments import AssignmentStore, SignOutRefused
from fleet.daemon.board.audit import Audit
from fleet.daemon.board.fleetview import FleetView
from fleet.daemon.board.model import Readiness
from fleet.daemon.board.service import OVERDUE_RULE, BoardService
from fleet.daemon.collector import schema
from fleet.daemon.spool import Spool
from tests.daemon.board.test_fleetview import reading

M = 60_000
H = 3_600_000
T0 = 1_796_043_480_000  # 07:58 in New York

REGISTRY = """
[site]
id = "allingtown"

[alerts]
timezone = "America/New_York"

[[devices]]
id = "sw-01"
kind = "segway"

[[devices]]
id = "sw-02"
kind = "segway"

[[devices]]
id = "hh-01"
kind = "handheld"
"""


@dataclass
class Clock:
    now: int = T0

    def __call__(self) -> int:
        return self.now


@dataclass
class Station:
    settings: FleetSettings
    tmp: Path
    clock: Clock
    spool: Spool
    events: list[AlertEvent] = field(default_factory=list)
    running: list[BoardService] = field(default_factory=list)

    def board(self) -> BoardService:
        """A board over the station's files: a second call is the collector restarted."""
        view = FleetView(self.settings)
        self.hear(view)
        store = AssignmentStore(self.tmp / "assignments.sqlite", fsync=False)
        audit = Audit(self.spool, lambda: None, site="allingtown", schema=schema)
        board = BoardService(
            self.settings,
            view=view,
            store=store,
            audit=audit,
            clock_ms=self.clock,
            inject=self.events.extend,
        )
        self.running.append(board)
        return board

    def hear(self, view: FleetView) -> None:
        """The two segways report (a minute ago), well charged."""
        view.observe(
            [
                reading(self.clock.now - M, "sw-01", pct=90, charging=False),
                reading(self.clock.now - M, "sw-02", pct=95, charging=False),
            ],
            heard_ms=self.clock.now - M,
        )

    def lines(self, measurement: str) -> list[str]:
        lines = [line for row in self.spool.head(1000) for line in row.lines.split("\n")]
        return [line for line in lines if line.startswith(measurement + ",")]


@pytest.fixture
def station(tmp_path: Path) -> Iterator[Station]:
    path = tmp_path / "fleet.toml"
    path.write_text(REGISTRY, encoding="utf-8")
    settings = load_settings(path, environ={})
    spool = Spool(tmp_path / "spool.sqlite", max_bytes=1 << 20, fsync=False)
    s = Station(settings, tmp_path, Clock(), spool)
    yield s
    for board in s.running:
        board.store.close()
    spool.close()


def test_ready_devices_first_and_a_sign_out_makes_it_in_use(station: Station) -> None:
    board = station.board()
    states = [(v.device, v.state) for v in board.verdicts()]
    assert states[:2] == [("sw-02", Readiness.READY), ("sw-01", Readiness.READY)]
    assert ("hh-01", Readiness.UNKNOWN) in states  # registered, never heard

    a = board.sign_out("sw-01", "Officer Diaz", due_ms=T0 + 8 * H, by="sgt")
    assert (a.officer, a.by, a.out_ms) == ("Officer Diaz", "sgt", T0)
    verdict, _ = board.verdict("sw-01") or pytest.fail("sw-01 unknown")
    assert verdict.state is Readiness.IN_USE
    assert verdict.assignment == a
    assert next(v.device for v in board.verdicts()) == "sw-02"  # still the one to take


def test_refusals_say_why(station: Station) -> None:
    board = station.board()
    board.sign_out("sw-01", "Officer Diaz", due_ms=T0 + 8 * H, by="sgt")
    with pytest.raises(SignOutRefused) as twice:
        board.sign_out("sw-01", "Officer Kim", due_ms=T0 + 8 * H, by="sgt")
    assert twice.value.status == 409
    assert "already signed out to Officer Diaz" in twice.value.message

    with pytest.raises(SignOutRefused) as never_heard:
        board.sign_out("hh-01", "Officer Kim", due_ms=T0 + 8 * H, by="sgt")
    assert never_heard.value.status == 409
    assert never_heard.value.message.startswith("hh-01 is unknown: ")

    with pytest.raises(SignOutRefused) as nobody:
        board.sign_out("sw-99", "Officer Kim", due_ms=T0 + 8 * H, by="sgt")
    assert nobody.value.status == 404

    with pytest.raises(SignOutRefused) as not_out:
        board.sign_in("sw-02", by="sgt")
    assert (not_out.value.status, not_out.value.message) == (
        409,
        "sw-02 is not signed out, so it cannot be signed in",
    )

    board.mark_out_of_service("sw-02", reason="flat tyre", by="tech")
    verdict, _ = board.verdict("sw-02") or pytest.fail("sw-02 unknown")
    assert verdict.state is Readiness.OUT_OF_SERVICE
    with pytest.raises(SignOutRefused) as broken:
        board.sign_out("sw-02", "Officer Kim", due_ms=T0 + 8 * H, by="sgt")
    assert "out of service" in broken.value.message
    assert "flat tyre" in broken.value.message
    board.return_to_service("sw-02", by="tech")
    assert board.sign_out("sw-02", "Officer Kim", due_ms=T0 + 8 * H, by="sgt").officer == (
        "Officer Kim"
    )


def test_a_device_that_went_silent_cannot_be_signed_out(station: Station) -> None:
    board = station.board()
    station.clock.now += 30 * M  # a segway is expected every 10 min
    with pytest.raises(SignOutRefused) as silent:
        board.sign_out("sw-01", "Officer Kim", due_ms=station.clock.now + H, by="sgt")
    assert silent.value.message.startswith("sw-01 is offline: ")
    assert "min ago" in silent.value.message


def test_every_change_is_audited_with_who_and_an_assignment_point(station: Station) -> None:
    board = station.board()
    board.sign_out("sw-01", "Officer Diaz", due_ms=T0 + 8 * H, by="sgt")
    station.clock.now += H
    board.sign_in("sw-01", by="desk")
    board.mark_out_of_service("sw-01", reason="brakes", by="tech")

    out, back = station.lines("assignment")
    assert "change=out" in out
    assert "kind=segway" in out
    assert 'by="sgt"' in out
    assert "change=in" in back
    assert "kind=segway" in back
    assert 'by="desk"' in back
    assert 'officer="Officer Diaz"' in back
    audit = station.lines("audit")
    assert [re.search(r",action=(\w+)", line)[1] for line in audit] == [  # type: ignore[index]
        "sign_out",
        "sign_in",
        "out_of_service",
    ]
    assert 'user="desk"' in audit[1]
    assert 'target="sw-01"' in audit[1]


def test_overdue_alert_once_per_sign_out_even_across_a_restart(station: Station) -> None:
    board = station.board()
    board.sign_out("sw-01", "Officer Diaz", due_ms=T0 + 2 * H, by="sgt")
    board.sign_out("sw-02", "Officer Kim", due_ms=T0 + 8 * H, by="sgt")
    board.tick(T0 + H)
    assert station.events == []  # not due yet

    station.clock.now = T0 + 2 * H + M
    board.tick(station.clock.now)
    (fired,) = station.events
    assert (fired.action, fired.alert.rule, fired.alert.device) == (
        Action.FIRE,
        OVERDUE_RULE,
        "sw-01",
    )
    assert fired.alert.message == ("Segway sw-01 signed out to Officer Diaz was due back at 09:58")
    verdict, _ = board.verdict("sw-01") or pytest.fail("sw-01 unknown")
    assert verdict.state is Readiness.IN_USE
    assert verdict.overdue

    board.tick(station.clock.now + M)
    assert len(station.events) == 1  # once, not at every tick

    restarted = station.board()  # the same sign-out sheet, a fresh process
    restarted.tick(station.clock.now + 2 * M)
    assert len(station.events) == 1  # remembered: not raised again

    restarted.sign_in("sw-01", by="desk")
    resolved = station.events[1]
    assert (resolved.action, resolved.alert.device, resolved.alert.state) == (
        Action.RESOLVE,
        "sw-01",
        "resolved",
    )
    assert "signed back in" in resolved.alert.message


def test_a_sign_in_on_time_resolves_nothing_and_a_new_sign_out_can_be_late_again(
    station: Station,
) -> None:
    board = station.board()
    board.sign_out("sw-01", "Officer Diaz", due_ms=T0 + H, by="sgt")
    board.sign_in("sw-01", by="sgt")
    assert station.events == []

    board.sign_out("sw-01", "Officer Diaz", due_ms=T0 + H, by="sgt")
    board.tick(T0 + 2 * H)
    board.sign_in("sw-01", by="sgt")
    station.clock.now = T0 + 2 * H
    station.hear(board.view)
    board.sign_out("sw-01", "Officer Kim", due_ms=T0 + 3 * H, by="sgt")
    board.tick(T0 + 4 * H)
    assert [(e.action, e.alert.message.split(" was ")[0]) for e in station.events] == [
        (Action.FIRE, "Segway sw-01 signed out to Officer Diaz"),
        (Action.RESOLVE, "Segway sw-01 is signed back in (was due at 08:58)"),
        (Action.FIRE, "Segway sw-01 signed out to Officer Kim"),
    ]


def test_no_overdue_alert_when_switched_off(station: Station, tmp_path: Path) -> None:
    path = tmp_path / "quiet.toml"
    path.write_text(REGISTRY + "\n[board]\noverdue_alert = false\n", encoding="utf-8")
    station.settings = load_settings(path, environ={})
    board = station.board()
    board.sign_out("sw-01", "Officer Diaz", due_ms=T0 + H, by="sgt")
    board.tick(T0 + 2 * H)
    assert station.events == []
    verdict, _ = board.verdict("sw-01") or pytest.fail("sw-01 unknown")
    station.clock.now = T0 + 2 * H
    verdict, _ = board.verdict("sw-01") or pytest.fail("sw-01 unknown")
    assert verdict.overdue  # the board still flags it


def test_sites_count_devices_by_state(station: Station) -> None:
    board = station.board()
    board.sign_out("sw-01", "Officer Diaz", due_ms=T0 + H, by="sgt")
    (site,) = board.sites()
    assert site["site"] == "allingtown"
    assert site["devices"] == 3
    assert site["by_state"] == {"ready": 1, "in_use": 1, "unknown": 1}
