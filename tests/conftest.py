"""Shared fixtures: private Mosquitto and InfluxDB servers, started once per session.

Tests that restart or kill a server take their own from `make_broker` /
`make_influx`, so the session servers stay up for everyone else. A missing
server binary fails the test with a pointer to scripts/setup rather than
skipping it: a skipped integration test proves nothing.
"""

from __future__ import annotations

import itertools
import logging
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.fuzz.cases import TALLY_PROPERTY
from tests.harness.servers import InfluxServer, MosquittoServer, ServerError

_db_numbers = itertools.count(1)


# A test that takes one of these talks to a real server: an integration test.
_SERVER_FIXTURES = frozenset({"mqtt_broker", "influx", "tmp_db", "make_broker", "make_influx"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        uses_servers = _SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ()))
        # The fuzz runs drive whole processes, servers and PTYs 10,000 times over.
        if uses_servers or item.get_closest_marker("fuzz"):
            item.add_marker(pytest.mark.integration)


def pytest_configure(config: pytest.Config) -> None:
    # Hypothesis keeps its example database and caches in .hypothesis/ of the working
    # directory by default: tests write only under their own temporary folder.
    from hypothesis import configuration, settings

    home = Path(tempfile.mkdtemp(prefix="fleet-hypothesis-"))
    configuration.set_hypothesis_home_dir(home)
    settings.register_profile("fleet", database=None)
    settings.load_profile("fleet")
    config.add_cleanup(lambda: shutil.rmtree(home, ignore_errors=True))


@pytest.fixture(autouse=True)
def _root_logging_restored() -> Iterator[None]:
    """A CLI run inside a test (`fleet ...` through `main`) points the root logger at the
    stderr of that moment, often pytest's capture of it; left in place, a later test's log
    line would be written to that closed stream. Whatever a test does to the root logger
    is undone after it (its stream handlers and level)."""
    root = logging.getLogger()
    before, level = set(root.handlers), root.level
    yield
    # Only plain stream handlers a test added: pytest's own capture handlers come and go
    # with each phase and are pytest's to remove.
    for handler in root.handlers[:]:
        if handler not in before and type(handler) is logging.StreamHandler:
            root.removeHandler(handler)
    root.setLevel(level)


_FUZZ_TALLIES: dict[str, dict[str, Any]] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    for name, value in report.user_properties:
        if name == TALLY_PROPERTY and isinstance(value, dict):
            _FUZZ_TALLIES.update(value)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The fuzz runs' case counts, in the summary of every session that ran any."""
    if not _FUZZ_TALLIES:
        return
    terminalreporter.section("fuzz: hostile cases per surface")
    for surface, t in _FUZZ_TALLIES.items():
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(t["outcomes"].items()))
        terminalreporter.write_line(
            f"{surface:<28} {t['cases']:>7} cases in {t['examples']:>6} examples  ({outcomes})"
        )


S = TypeVar("S", MosquittoServer, InfluxServer)


def _started(server: S) -> S:
    try:
        return server.start()
    except ServerError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def mqtt_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoServer]:
    """One Mosquitto for the whole session; do not stop or restart it."""
    server = _started(MosquittoServer(tmp_path_factory.mktemp("mosquitto")))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def influx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxServer]:
    """One InfluxDB for the whole session; use `tmp_db` for a database of your own."""
    server = _started(InfluxServer(tmp_path_factory.mktemp("influxd")))
    yield server
    server.stop()


@pytest.fixture
def make_broker(tmp_path: Path) -> Iterator[Callable[..., MosquittoServer]]:
    """Factory of private, started brokers (`make_broker(port=None, extra_config="")`),
    stopped at the end of the test."""
    made: list[MosquittoServer] = []

    def make(port: int | None = None, *, extra_config: str = "") -> MosquittoServer:
        server = MosquittoServer(
            tmp_path / f"mosquitto-{len(made)}", port, extra_config=extra_config
        )
        made.append(server)
        return _started(server)

    yield make
    for server in made:
        server.stop()


@pytest.fixture
def make_influx(tmp_path: Path) -> Iterator[Callable[..., InfluxServer]]:
    """Factory of private, started InfluxDB servers (`make_influx(port=None)`),
    stopped at the end of the test."""
    made: list[InfluxServer] = []

    def make(port: int | None = None) -> InfluxServer:
        server = InfluxServer(tmp_path / f"influxd-{len(made)}", port)
        made.append(server)
        return _started(server)

    yield make
    for server in made:
        server.stop()


@pytest.fixture
def tmp_db(influx: InfluxServer, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh database on the session InfluxDB, named after the test; dropped afterwards."""
    stem = re.sub(r"[^A-Za-z0-9_]", "_", request.node.name)[:40]
    name = f"t_{stem}_{next(_db_numbers)}"
    influx.create_database(name)
    yield name
    influx.drop_database(name)
