"""A collector that owns some of the sites (`collector.sites`): its subscriptions, which
messages are its own (OwnTracks phones included), what it counts as another's, what its
board lists and what alert state it takes back after a restart.

The two-collector scenario on real servers is tests/daemon/collector/test_two_collectors.py.
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleet.config import ConfigError, FleetSettings, load_settings
from fleet.config.alerts import AlertSettings
from fleet.config.influx import InfluxSettings
from fleet.daemon import wire
from fleet.daemon.alerts import AlertEngine
from fleet.daemon.alerts.store import AlertStore
from fleet.daemon.board.assignments import AssignmentStore
from fleet.daemon.board.audit import Audit
from fleet.daemon.board.fleetview import FleetView
from fleet.daemon.board.service import BoardService
from fleet.daemon.collector import schema
from fleet.daemon.collector.app import Collector, make_decoder
from fleet.daemon.collector.ingest import Ingest
from fleet.daemon.collector.sinks import V1Sink
from fleet.daemon.collector.stats import StatsReporter
from fleet.daemon.collector.writer import Writer, write_backoff
from fleet.daemon.mqtt import Inbound
from fleet.daemon.spool import Spool
from tests.daemon.alerts.test_alert_engine import reading as alert_reading
from tests.daemon.board.test_fleetview import reading as board_reading
from tests.harness.waiting import wait_until

NOW_MS = int(time.time() * 1000)
MIN = 60_000

# Two sites, one installation file: allingtown is site.id (unregistered phones' site).
REGISTRY = """
[site]
id = "allingtown"
others = {{ downtown = "Downtown" }}

[collector]
sites = {sites}

[[devices]]
id = "sw-01"
kind = "segway"

[[devices]]
id = "sw-02"
kind = "segway"
site = "downtown"

[[devices]]
id = "hh-01"
kind = "handheld"
owntracks = "diaz/phone"

[[devices]]
id = "hh-02"
kind = "handheld"
site = "downtown"
owntracks = "reyes/phone"
"""


def configured(tmp_path: Path, sites: list[str]) -> FleetSettings:
    path = tmp_path / f"fleet-{'-'.join(sites) or 'all'}.toml"
    path.write_text(REGISTRY.format(sites=json.dumps(sites)), encoding="utf-8")
    return load_settings(path, environ={})


def telemetry(device: str, seq: int = 1) -> bytes:
    body = {"schema": 1, "device": device, "seq": seq, "ts": NOW_MS / 1000, "battery": {"pct": 50}}
    return json.dumps(body).encode()


def owntracks(batt: int = 60) -> bytes:
    body = {"_type": "location", "lat": 41.27, "lon": -72.95, "tst": NOW_MS // 1000}
    return json.dumps(body | {"batt": batt}).encode()


# --- configuration and subscriptions ------------------------------------------------------------


def test_every_site_by_default_and_a_site_listed_twice_is_refused(tmp_path: Path) -> None:
    every = configured(tmp_path, [])
    assert every.collector.sites == []
    assert every.collector.owns("anywhere")
    one = configured(tmp_path, ["downtown"])
    assert one.collector.owns("downtown")
    assert not one.collector.owns("allingtown")
    path = tmp_path / "twice.toml"
    path.write_text('[collector]\nsites = ["a", "b", "a"]\n', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    assert any(
        "collector.sites" in p and "site a is listed twice" in p for p in info.value.problems
    )
    path.write_text('[collector]\nsites = ["bad site"]\n', encoding="utf-8")
    with pytest.raises(ConfigError):
        load_settings(path, environ={})


def test_subscriptions_name_each_owned_site_and_every_site_without_any() -> None:
    assert wire.subscriptions("fleet") == ["fleet/v1/+/+/+/telemetry", "owntracks/+/+"]
    assert wire.subscriptions("fleet", ["allingtown", "downtown"]) == [
        "fleet/v1/allingtown/+/+/telemetry",
        "fleet/v1/downtown/+/+/telemetry",
        "owntracks/+/+",
    ]
    assert wire.control_subscriptions("fleet") == [
        "fleet/v1/+/+/+/availability",
        "fleet/v1/+/alerts/+/+/ack",
        "fleet/v1/+/bridge/+/link",
    ]
    assert wire.control_subscriptions("acme/fleet", ["downtown"]) == [
        "acme/fleet/v1/downtown/+/+/availability",
        "acme/fleet/v1/downtown/alerts/+/+/ack",
        "acme/fleet/v1/downtown/bridge/+/link",
    ]
    with pytest.raises(ValueError, match="site"):
        wire.subscriptions("fleet", ["#"])  # a wildcard never becomes a site level


# --- whose message is it ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("topic", "allingtown", "downtown"),
    [
        ("fleet/v1/allingtown/segway/sw-01/telemetry", True, False),
        ("fleet/v1/downtown/segway/sw-02/telemetry", False, True),
        ("fleet/v1/elsewhere/segway/sw-09/telemetry", False, False),
        ("owntracks/diaz/phone", True, False),  # registered at allingtown (site.id)
        ("owntracks/reyes/phone", False, True),  # registered at downtown
        ("owntracks/nobody/hh-77", True, False),  # unregistered: site.id's collector
        ("owntracks/mallory/sw-02", True, False),  # unregistered pair, refused at site.id
    ],
)
def test_each_message_belongs_to_exactly_one_collector(
    tmp_path: Path, topic: str, allingtown: bool, downtown: bool
) -> None:
    owner_a = make_decoder(configured(tmp_path, ["allingtown"]))
    owner_d = make_decoder(configured(tmp_path, ["downtown"]))
    every = make_decoder(configured(tmp_path, []))
    assert (owner_a.ours(topic), owner_d.ours(topic)) == (allingtown, downtown)
    assert every.ours(topic)


_OWNERS: dict[str, wire.Decoder] = {}


def _owners() -> dict[str, wire.Decoder]:
    """One decoder per site, as two collectors sharing one configuration build them."""
    if not _OWNERS:
        with tempfile.TemporaryDirectory() as folder:
            for site in ("allingtown", "downtown"):
                _OWNERS[site] = make_decoder(configured(Path(folder), [site]))
    return _OWNERS


_LEVEL = st.text(st.characters(codec="utf-8", exclude_characters="/"), max_size=12)


@settings(max_examples=500, deadline=None, derandomize=True)
@given(
    user=st.one_of(st.sampled_from(["diaz", "reyes", "nobody"]), _LEVEL),
    device=st.one_of(st.sampled_from(["phone", "hh-01", "sw-02"]), _LEVEL),
    extra=st.sampled_from(["", "/x"]),
)
def test_every_owntracks_topic_has_exactly_one_owner(user: str, device: str, extra: str) -> None:
    """Both collectors hear every OwnTracks message: whatever its topic - registered pair,
    unregistered, hostile - exactly one of them takes it (stores or refuses it)."""
    topic = f"owntracks/{user}/{device}{extra}"
    owners = [site for site, decoder in _owners().items() if decoder.ours(topic)]
    assert len(owners) == 1, (topic, owners)


def make_ingest(decoder: wire.Decoder, spool: Spool, acks: list[int], dead: list[str]) -> Ingest:
    return Ingest(
        decoder=decoder,
        spool=spool,
        publish=lambda topic, payload: dead.append(topic),
        ack=lambda batch: acks.extend(m.mid for m in batch),
        deadletter_topic=lambda topic: "fleet/v1/allingtown/deadletter",
        on_spooled=lambda: None,
        batch_max=100,
    )


def test_another_sites_messages_are_acknowledged_and_counted_never_stored(
    tmp_path: Path,
) -> None:
    """What arrives for a site the collector does not own (a subscription set by hand, the
    shared OwnTracks filter) is neither stored, dead-lettered nor handed to the alerts."""
    spool = Spool(tmp_path / "spool.sqlite", max_bytes=1 << 24, fsync=False)
    acks: list[int] = []
    dead: list[str] = []
    ingest = make_ingest(make_decoder(configured(tmp_path, ["downtown"])), spool, acks, dead)
    handed: list[wire.DecodedReading] = []
    ingest._on_readings = handed.extend
    messages = [
        ("fleet/v1/allingtown/segway/sw-01/telemetry", telemetry("sw-01")),
        ("fleet/v1/allingtown/segway/sw-01/telemetry", b"{not json"),  # not ours to refuse
        ("owntracks/diaz/phone", owntracks()),
        ("owntracks/nobody/hh-77", owntracks()),
        ("fleet/v1/downtown/segway/sw-02/telemetry", telemetry("sw-02")),
        ("owntracks/reyes/phone", owntracks()),
    ]
    stop = threading.Event()
    thread = threading.Thread(target=ingest.run, args=(stop,))
    thread.start()
    try:
        for mid, (topic, payload) in enumerate(messages, 1):
            ingest.put(Inbound(topic, payload, 1, mid, 1, False))
        wait_until(lambda: len(acks) == len(messages), message="every message acknowledged")
    finally:
        stop.set()
        thread.join(10)
    c = ingest.counters
    assert (c.received, c.not_ours, c.accepted, c.dead_lettered) == (6, 4, 2, 0)
    assert dead == []
    assert sorted(r.device for r in handed) == ["hh-02", "sw-02"]
    stored = [line for row in spool.head(100) for line in row.lines.split("\n")]
    assert {line.split("device=")[1].split(",")[0] for line in stored} == {"sw-02", "hh-02"}
    assert all("site=downtown" in line for line in stored)
    spool.close()


# --- the board ----------------------------------------------------------------------------------


def board_of(s: FleetSettings, tmp_path: Path) -> BoardService:
    spool = Spool(tmp_path / "board-spool.sqlite", max_bytes=1 << 20, fsync=False)
    return BoardService(
        s,
        view=FleetView(s),
        store=AssignmentStore(tmp_path / "assignments.sqlite", fsync=False),
        audit=Audit(spool, lambda: None, site=s.site.id, schema=schema),
        clock_ms=lambda: NOW_MS,
    )


def test_the_board_lists_only_its_own_sites_devices_and_every_owned_site(
    tmp_path: Path,
) -> None:
    board = board_of(configured(tmp_path, ["downtown", "northside"]), tmp_path)
    # Heard live or refilled from InfluxDB (which holds every site's readings) alike.
    board.view.observe(
        [
            board_reading(NOW_MS - MIN, "sw-01", pct=80, site="allingtown"),
            board_reading(NOW_MS - MIN, "sw-02", pct=80, site="downtown"),
            board_reading(NOW_MS - MIN, "sw-09", pct=80, site="elsewhere"),
        ],
        heard_ms=NOW_MS - MIN,
    )
    assert sorted(v.device for v in board.verdicts()) == ["hh-02", "sw-02"]
    assert board.verdicts("allingtown") == []
    assert board.view.device("sw-01") is None
    # northside has no device yet: it is listed all the same, as the chooser lists it.
    assert [(s["site"], s["devices"]) for s in board.sites()] == [
        ("downtown", 2),
        ("northside", 0),
    ]
    assert board.site_ids() == ["downtown", "northside"]
    assert board.site_names == {"downtown": "Downtown", "northside": "northside"}
    board.store.close()


def test_owning_every_site_the_board_is_as_before(tmp_path: Path) -> None:
    board = board_of(configured(tmp_path, []), tmp_path)
    board.view.observe(
        [board_reading(NOW_MS - MIN, "sw-09", pct=80, site="elsewhere")], heard_ms=NOW_MS
    )
    assert sorted(v.device for v in board.verdicts()) == [
        "hh-01",
        "hh-02",
        "sw-01",
        "sw-02",
        "sw-09",
    ]
    assert board.site_ids() == ["allingtown", "downtown", "elsewhere"]
    assert board.site_names == {"allingtown": "Allingtown", "downtown": "Downtown"}
    board.store.close()


# --- alert state kept from when the collector owned more sites ----------------------------------


def test_a_site_given_up_is_not_called_offline_from_the_kept_state(tmp_path: Path) -> None:
    """A collector that owned both sites, restarted owning one: the other site's devices in
    its alert state would be silent for good here (the other collector hears them now)."""
    path = tmp_path / "alerts.sqlite"
    rules = AlertSettings.model_validate({"state_path": str(path)})
    before = AlertEngine(rules, store=AlertStore(path))
    t0 = NOW_MS - 10 * MIN
    before.tick(t0)
    for device, site in (("sw-01", "allingtown"), ("sw-02", "downtown")):
        before.observe(alert_reading(t0, device, pct=10, site=site), t0)
    before.tick(t0 + 5 * 60_000)
    firing = {a.device for a in before.alerts(firing_only=True)}
    assert firing == {"sw-01", "sw-02"}  # battery alerts of both sites

    after = AlertEngine(rules, store=AlertStore(path, sites=["allingtown"]))
    assert {a.device for a in after.alerts()} == {"sw-01"}
    later = t0 + 24 * 60 * MIN  # a day of silence from both
    events = after.tick(later) + after.tick(later + 31 * MIN)
    assert {e.alert.device for e in events} == {"sw-01"}  # nothing of downtown's sw-02
    assert ("sw-01", "offline") in {(e.alert.device, e.alert.rule) for e in events}

    every = AlertEngine(rules, store=AlertStore(path))  # owning every site again: all of it
    assert {a.device for a in every.alerts()} == {"sw-01", "sw-02"}


# --- the pipeline's per-device points -----------------------------------------------------------


def test_per_device_pipeline_points_carry_the_devices_site(tmp_path: Path) -> None:
    """The per-site panels (seq gaps, readings arriving per site) select on it."""
    spool = Spool(tmp_path / "spool.sqlite", max_bytes=1 << 20, fsync=False)
    ingest = make_ingest(make_decoder(configured(tmp_path, [])), spool, [], [])
    ingest.seq.observe("downtown", "segway", "sw-02", 1)
    ingest.seq.observe("allingtown", "segway", "sw-01", 1)

    writer = Writer(
        spool,
        V1Sink(InfluxSettings(url="http://127.0.0.1:9")),  # never asked: nothing is written
        batch_size=10,
        flush_interval_s=1,
        backoff=write_backoff(0.1, 1),
        on_rejected=lambda lines, reason: None,
        oldest_allowed_ms=lambda: None,
    )
    stats = StatsReporter(
        site="allingtown", instance="collector-a", ingest=ingest, writer=writer, spool=spool,
        interval_s=1,
    )  # fmt: skip
    lines = stats.lines()
    by_device = {
        line.split("device=")[1].split(",")[0]: line for line in lines if "device=" in line
    }
    assert "site=downtown" in by_device["sw-02"]
    assert "site=allingtown" in by_device["sw-01"]
    assert "site=allingtown,instance=collector-a " in lines[0] or (
        "instance=collector-a,site=allingtown " in lines[0]
    )
    spool.close()


# --- control messages of another site -----------------------------------------------------------


def test_another_sites_availability_and_acks_are_counted_not_taken(tmp_path: Path) -> None:
    """An agent's `offline` of a site the collector does not own must not start its
    agent_down (nor hold that site's offline alerts): it is the owner's to judge."""
    path = tmp_path / "fleet.toml"
    path.write_text(
        REGISTRY.format(sites='["downtown"]')
        + f"""
[spool]
path = "{tmp_path / "spool.sqlite"}"
fsync = false

[alerts]
state_path = "{tmp_path / "alerts.sqlite"}"

[http]
bind = "127.0.0.1:0"
""",
        encoding="utf-8",
    )
    collector = Collector(load_settings(path, environ={}))
    assert collector.alerts is not None
    try:
        for topic in (
            "fleet/v1/allingtown/agent/agent-1/availability",
            "fleet/v1/allingtown/segway/sw-01/availability",
            "fleet/v1/allingtown/alerts/sw-01/battery_low/ack",
        ):
            assert collector._control(Inbound(topic, b"offline", 1, 1, 1, False)) is True
        assert collector.ingest.counters.not_ours == 3
        assert collector.alerts.counters.control == 0
        # Its own site's goes to the alert service.
        own = "fleet/v1/downtown/agent/agent-2/availability"
        assert collector._control(Inbound(own, b"offline", 1, 2, 1, False)) is True
        assert collector.alerts.counters.control == 1
        assert collector.ingest.counters.not_ours == 3
    finally:
        collector.spool.close()
        collector.deadletters.close()
        collector.alerts.store.close()
        collector.web.store.close()
        collector.web.http.start()()  # its listening socket, bound when it was made: closed
