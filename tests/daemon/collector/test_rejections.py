"""Finding the refused lines of a partial write from InfluxDB's own words."""

from __future__ import annotations

from fleet.daemon.collector.rejections import rejected_lines

LINES = [
    "battery,device=a pct=50 1000",
    'status,device=a state="riding",error_code=0i 1000',
    "battery,device=b pct=60 2000",
    "location,device=b lat=41.2,lon=-72.9 500",
]


def test_unparsable_lines_are_named_in_the_error():
    body = '{"error":"partial write: unable to parse \'battery,device=b pct=60 2000\': invalid number dropped=0"}'
    assert rejected_lines(body, LINES, oldest_allowed_ms=None) == [2]


def test_type_conflict_names_measurement_and_field():
    body = (
        '{"error":"partial write: field type conflict: input field \\"pct\\" on measurement '
        '\\"battery\\" is type integer, already exists as type float dropped=2"}'
    )
    assert rejected_lines(body, LINES, oldest_allowed_ms=None) == [0, 2]


def test_points_beyond_retention_are_the_old_ones():
    body = '{"error":"partial write: points beyond retention policy dropped=1"}'
    assert rejected_lines(body, LINES, oldest_allowed_ms=900) == [3]


def test_an_unexplained_refusal_reports_every_line():
    body = '{"error":"partial write: max-series-per-database limit exceeded: (1000000) dropped=4"}'
    assert rejected_lines(body, LINES, oldest_allowed_ms=None) == [0, 1, 2, 3]


def test_type_conflict_names_only_the_lines_of_the_refused_type():
    lines = [
        "battery,device=a pct=50 1000",  # float: what the server has, written
        "battery,device=a pct=51i 1001",  # integer: refused
        'status,device=a firmware="pct=1i" 1002',  # a string that only looks like the field
        "battery,device=b v=1i,pct=52i 1003",
    ]
    body = (
        '{"error":"partial write: field type conflict: input field \\"pct\\" on measurement '
        '\\"battery\\" is type integer, already exists as type float dropped=2"}'
    )
    assert rejected_lines(body, lines, oldest_allowed_ms=None) == [1, 3]
