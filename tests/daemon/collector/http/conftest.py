"""The `api` fixture: a real HttpApi with the small router of rig.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.daemon.collector.http.rig import Api, running_api


@pytest.fixture
def api() -> Iterator[Api]:
    with running_api() as running:
        yield running
