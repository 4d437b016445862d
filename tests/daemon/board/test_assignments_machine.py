"""The sign-out sheet against a simple model, under any order of changes (hypothesis): never a
double sign-out, every refusal where the model refuses, history complete, state survives reopens."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from fleet.daemon.board.assignments import AssignmentStore, SignOutRefused

DEVICES = st.sampled_from(["sw-01", "sw-02", "hh-01"])
PEOPLE = st.sampled_from(["Diaz", "Park", "Lee"])
H = 3_600_000


class SheetMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="fleet-sheet-"))
        self.path = self.dir / "assignments.sqlite"
        self.sheet = AssignmentStore(self.path, fsync=False)
        self.now = 1_800_000_000_000
        self.out: dict[str, tuple[str, int, int]] = {}  # device -> officer, out, due
        self.oos: dict[str, str] = {}  # device -> reason
        self.events: list[tuple[str, str, str]] = []  # action, device, by

    def teardown(self) -> None:
        self.sheet.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _refused(self, status: int, call: Any, *args: Any, **kwargs: Any) -> None:
        with pytest.raises(SignOutRefused) as info:
            call(*args, **kwargs)
        assert info.value.status == status, info.value.message
        assert info.value.message

    @rule(minutes=st.integers(1, 600))
    def time_passes(self, minutes: int) -> None:
        self.now += minutes * 60_000

    @rule(
        device=DEVICES, officer=PEOPLE, by=PEOPLE, hours=st.integers(1, 12), blocked=st.booleans()
    )
    def sign_out(self, device: str, officer: str, by: str, hours: int, blocked: bool) -> None:
        due = self.now + hours * H
        why = f"{device} is offline: last heard 23 min ago" if blocked else None
        call = self.sheet.sign_out
        if device in self.out or device in self.oos or blocked:
            self._refused(
                409, call, device, officer, due_ms=due, by=by, now_ms=self.now, blocked=why
            )
            return
        a = call(device, officer, due_ms=due, by=by, now_ms=self.now, blocked=why)
        assert (a.officer, a.out_ms, a.due_ms) == (officer, self.now, due)
        self.out[device] = (officer, self.now, due)
        self.events.append(("sign_out", device, by))

    @rule(device=DEVICES, by=PEOPLE)
    def sign_in(self, device: str, by: str) -> None:
        if device not in self.out:
            self._refused(409, self.sheet.sign_in, device, by=by, now_ms=self.now)
            return
        a = self.sheet.sign_in(device, by=by, now_ms=self.now)
        assert (a.officer, a.out_ms, a.due_ms) == self.out.pop(device)
        self.events.append(("sign_in", device, by))

    @rule(device=DEVICES, by=PEOPLE, reason=st.sampled_from(["flat tyre", "brake fault"]))
    def mark(self, device: str, by: str, reason: str) -> None:
        call = self.sheet.mark_out_of_service
        if device in self.oos:
            self._refused(409, call, device, reason=reason, by=by, now_ms=self.now)
            return
        call(device, reason=reason, by=by, now_ms=self.now)
        self.oos[device] = reason
        self.events.append(("out_of_service", device, by))

    @rule(device=DEVICES, by=PEOPLE)
    def back_in_service(self, device: str, by: str) -> None:
        if device not in self.oos:
            self._refused(409, self.sheet.return_to_service, device, by=by, now_ms=self.now)
            return
        assert self.sheet.return_to_service(device, by=by, now_ms=self.now).reason == (
            self.oos.pop(device)
        )
        self.events.append(("return_to_service", device, by))

    @rule()
    def restart(self) -> None:
        self.sheet.close()
        self.sheet = AssignmentStore(self.path, fsync=False)
        assert self.sheet.recovery is None

    @invariant()
    def state_matches_the_model(self) -> None:
        current = self.sheet.current()
        assert {d: (a.officer, a.out_ms, a.due_ms) for d, a in current.items()} == self.out
        assert {d: m.reason for d, m in self.sheet.out_of_service().items()} == self.oos
        assert {a.device for a in self.sheet.overdue(self.now)} == {
            d for d, (_, _, due) in self.out.items() if due < self.now
        }

    @invariant()
    def history_is_complete_and_replays_to_the_state(self) -> None:
        history = self.sheet.history(limit=1000)[::-1]
        assert [(e["action"], e["device"], e["by"]) for e in history] == self.events
        holder: dict[str, object] = {}
        for e in history:
            if e["action"] == "sign_out":
                assert e["device"] not in holder, "a double sign-out in the history"
                holder[str(e["device"])] = e["officer"]
            elif e["action"] == "sign_in":
                assert holder.pop(str(e["device"])) == e["officer"]
        assert holder == {d: officer for d, (officer, _, _) in self.out.items()}


SheetMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
test_sheet_against_a_model = SheetMachine.TestCase
