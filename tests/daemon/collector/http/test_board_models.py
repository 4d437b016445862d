"""The board's request bodies: refusals that name the field and say what to do; a name too
long is refused, never cut (a cut name on the sign-out sheet names someone else)."""

from __future__ import annotations

import pytest

from fleet.daemon.collector.http.board_models import (
    OutOfServiceRequest,
    ReturnRequest,
    SignOutRequest,
)
from fleet.daemon.collector.http.models import parse
from fleet.daemon.collector.http.router import Refused

NOW = 1_796_043_480_000


def refusal(model: type, body: dict[str, object]) -> str:
    with pytest.raises(Refused) as refused:
        parse(model, body)
    assert refused.value.status == 400
    return refused.value.message


def test_a_sign_out_with_hours_or_a_due_time_or_the_shift() -> None:
    by_hours = parse(SignOutRequest, {"device": "sw-01", "officer": "Officer Diaz", "hours": 2})
    assert by_hours.due_ms(NOW, 8) == NOW + 2 * 3_600_000
    by_default = parse(SignOutRequest, {"device": "sw-01", "officer": "Officer Diaz"})
    assert by_default.due_ms(NOW, 8) == NOW + 8 * 3_600_000
    due = parse(
        SignOutRequest,
        {"device": "sw-01", "officer": "Diaz", "due_back": "2026-11-30T16:00:00-05:00"},
    )
    assert due.due_ms(NOW, 8) == 1_796_072_400_000


def test_names_are_one_line_and_too_long_is_refused_not_cut() -> None:
    body: dict[str, object] = {"device": "sw-01", "officer": "Officer\n  Diaz\x00"}
    assert parse(SignOutRequest, body).officer == "Officer Diaz"
    long: dict[str, object] = {"device": "sw-01", "officer": "O" * 65}
    assert refusal(SignOutRequest, long) == '"officer" is longer than 64 characters'
    assert parse(SignOutRequest, {"device": "sw-01", "officer": "O" * 64}).officer == "O" * 64
    assert refusal(ReturnRequest, {"note": "n" * 201}) == '"note" is longer than 200 characters'
    assert refusal(OutOfServiceRequest, {"reason": "r" * 201}) == (
        '"reason" is longer than 200 characters'
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"device": "sw-01"}, 'say who takes it: "officer"'),
        ({"device": "sw-01", "officer": "  \n "}, 'say who takes it: "officer"'),
        ({"device": "sw-01", "officer": "Diaz", "hours": 0}, '"hours" must be more than 0'),
        (
            {"device": "sw-01", "officer": "Diaz", "hours": 2, "due_back": "2026-12-01T16:00Z"},
            'give "due_back" or "hours", not both',
        ),
        (
            {"device": "sw-01", "officer": "Diaz", "due_back": "2026-12-01T16:00"},
            '"due_back" needs a time zone',
        ),
        ({"device": "sw 01", "officer": "Diaz"}, "device"),
    ],
)
def test_refusals_name_the_field(body: dict[str, object], message: str) -> None:
    assert message in refusal(SignOutRequest, body)
