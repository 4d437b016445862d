"""Hostile bodies and paths to the board's changes (sign-out, sign-in, out of service), through
the real routes and a real board: every answer is a JSON refusal (4xx) or a success, never an
exception the API did not expect; and a refused change changes nothing on the sheet."""

from __future__ import annotations

import json
from collections.abc import Iterator
from email.message import Message
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleet.config import load_settings
from fleet.daemon.board.service import BoardService
from fleet.daemon.collector.http.api_v1 import add_board_routes
from fleet.daemon.collector.http.router import Refused, Router
from fleet.daemon.spool import Spool
from tests.daemon.board.test_service import REGISTRY, Clock, Station

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=80),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
# Mostly plausible fields with hostile values mixed in, so the examples reach every check
# behind the body's shape (names, times, the sheet's rules), not only the first refusal.
HOSTILE_TEXT = st.text(max_size=300) | st.sampled_from(["", " ", "\x00", "a\nb", "O" * 65])
PLAUSIBLE = {
    "device": st.sampled_from(["sw-01", "sw-02", "hh-01", "sw-99", "sw 01", "../x"]) | HOSTILE_TEXT,
    "officer": st.sampled_from(["Officer Diaz", "Kim"]) | HOSTILE_TEXT,
    "hours": st.sampled_from([1, 8, 0, -1, 24, 25, 1e308]) | st.floats() | HOSTILE_TEXT,
    "due_back": st.sampled_from(["2026-12-31T16:00:00-05:00", "2026-12-01T16:00", "tomorrow"])
    | HOSTILE_TEXT,
    "note": HOSTILE_TEXT,
    "reason": st.sampled_from(["flat tyre"]) | HOSTILE_TEXT,
    "by": HOSTILE_TEXT,
}
BODIES = st.one_of(
    st.fixed_dictionaries({}, optional={k: v | JSON_VALUES for k, v in PLAUSIBLE.items()}).map(
        lambda d: json.dumps(d).encode()
    ),
    st.fixed_dictionaries({}, optional=PLAUSIBLE).map(lambda d: json.dumps(d).encode()),
    st.binary(max_size=200),
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
)
TARGETS = st.sampled_from(
    [
        ("POST", "/api/v1/assignments"),
        ("POST", "/api/v1/assignments/sw-01/return"),
        ("POST", "/api/v1/devices/sw-01/out-of-service"),
        ("DELETE", "/api/v1/devices/sw-01/out-of-service"),
    ]
) | st.tuples(
    st.sampled_from(["POST", "DELETE", "GET"]),
    st.text(max_size=40).map(lambda t: "/api/v1/assignments/" + t + "/return"),
)


@pytest.fixture(scope="module")
def routed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Router, BoardService]]:
    tmp = tmp_path_factory.mktemp("hostile")
    path = tmp / "fleet.toml"
    path.write_text(REGISTRY, encoding="utf-8")
    spool = Spool(tmp / "spool.sqlite", max_bytes=64 << 20, fsync=False)
    station = Station(load_settings(path, environ={}), Path(tmp), Clock(), spool)
    board = station.board()
    router = Router()
    add_board_routes(router, board)
    yield router, board
    board.store.close()
    spool.close()


@settings(max_examples=400, deadline=None)
@given(target=TARGETS, body=BODIES, user=st.sampled_from(["sgt", None]))
def test_hostile_changes_are_refused_with_a_reason_and_change_nothing_they_refuse(
    routed: tuple[Router, BoardService], target: tuple[str, str], body: bytes, user: str | None
) -> None:
    router, board = routed
    before = (board.store.current(), board.store.out_of_service())
    headers = Message()
    headers["Content-Type"] = "application/json"
    method, path = target
    refused: Refused | None = None
    try:
        answer = router.dispatch(method, path, headers, lambda: body, user)
    except Refused as exc:
        refused = exc
    if refused is not None:
        assert 400 <= refused.status < 500, refused.message
        assert refused.message.strip()
        assert (board.store.current(), board.store.out_of_service()) == before
        return
    assert user is not None  # nothing changes without a signed-in user
    assert answer.status in (200, 201)
    json.loads(answer.body)
    # Undo what was taken, so every example starts from the same sheet.
    if board.store.current():
        board.sign_in("sw-01", by="sgt")
    if board.store.out_of_service():
        board.return_to_service("sw-01", by="sgt")
