"""The `secured` fixture: a generated broker running (see secured.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.daemon.broker.secured import Secured, secured_broker


@pytest.fixture
def secured(tmp_path: Path, capsys: Any, request: pytest.FixtureRequest) -> Iterator[Secured]:
    """A generated broker; its collector stores into the test's database when it asks for one."""
    if "tmp_db" not in request.fixturenames:
        with secured_broker(tmp_path, capsys) as broker:
            yield broker
        return
    database = request.getfixturevalue("tmp_db")
    url = request.getfixturevalue("influx").url
    with secured_broker(tmp_path, capsys, influx_url=url, database=database) as broker:
        yield broker
