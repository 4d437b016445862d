"""The agent across failures: broker outage (store and forward), bounded outbox, kill -9, SIGTERM."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from fleet.daemon.agent.app import Agent
from tests.harness.agent import (
    Script,
    Subscriber,
    retained,
    running_agent,
    scripted_spec,
    settings_of,
    telemetry_topic,
    write_agent_config,
)
from tests.harness.process import kill_process, spawn, stop_process, tail
from tests.harness.servers import MosquittoServer
from tests.harness.waiting import wait_until

FLEET = str(Path(sys.executable).with_name("fleet"))


def first_seen(seqs: list[int]) -> list[int]:
    """The seqs in order of first arrival (QoS 1 may deliver one twice after a reconnect)."""
    return list(dict.fromkeys(seqs))


@pytest.mark.slow
def test_a_30_s_broker_outage_loses_nothing_and_keeps_the_order(
    tmp_path: Path, make_broker: Callable[..., MosquittoServer]
) -> None:
    broker: MosquittoServer = make_broker()
    config = write_agent_config(tmp_path, broker, fsync=True)
    settings = settings_of(config)
    topic = telemetry_topic("sw-10")
    # A persistent session: the broker keeps our subscription (and what arrives for us)
    # across its own restart, whoever reconnects first.
    sub = Subscriber(settings, broker, topic, persistent=True)
    script = Script(device="sw-10", interval_s=0.1)
    with running_agent(Agent(settings, specs=[scripted_spec(script)])) as agent:
        wait_until(lambda: len(sub.seqs()) >= 10, message="first readings")
        broker.stop()
        down_at = script.emitted
        wait_until(
            lambda: script.emitted >= down_at + 300,
            timeout=60,
            message="30 s of readings (10 Hz) while the broker is down",
        )
        waiting = agent.store.depth().rows
        assert waiting >= 290, f"only {waiting} readings waited in the outbox"
        broker.start()
        produced = script.emitted
        wait_until(
            lambda: max(sub.seqs(), default=0) >= produced,
            timeout=30,
            message="every reading of the outage delivered",
        )
        assert agent.store.stats.dropped == 0
    seqs = sub.seqs()
    assert first_seen(seqs) == list(range(1, len(first_seen(seqs)) + 1))
    duplicates = len(seqs) - len(first_seen(seqs))
    print(f"outage: {waiting} readings waited on disk, {duplicates} duplicate(s) delivered")
    sub.close()


def test_a_full_outbox_drops_the_oldest_and_counts_them(
    tmp_path: Path, make_broker: Callable[..., MosquittoServer]
) -> None:
    broker: MosquittoServer = make_broker()
    config = write_agent_config(tmp_path, broker, agent=f"outbox_max_bytes = {64 * 1024}")
    settings = settings_of(config)
    sub = Subscriber(settings, broker, telemetry_topic("sw-11"), persistent=True)
    broker.stop()
    script = Script(device="sw-11", interval_s=0.001)
    with running_agent(Agent(settings, specs=[scripted_spec(script)])) as agent:
        wait_until(lambda: agent.store.stats.dropped >= 200, message="the oldest dropped")
        assert agent.store.depth().bytes <= 64 * 1024
        broker.start()
        wait_until(lambda: agent.store.stats.forwarded >= 100, message="forwarding again")
    produced, dropped = script.emitted, agent.store.stats.dropped
    wait_until(lambda: len(first_seen(sub.seqs())) + dropped >= produced, message="the rest")
    seqs = first_seen(sub.seqs())
    # In order; what is missing is exactly what was counted as dropped, oldest first.
    assert seqs == sorted(seqs)
    assert len(seqs) + dropped == produced
    assert seqs[0] > 1
    sub.close()


def test_kill_9_makes_the_broker_publish_the_agent_lwt(
    tmp_path: Path, mqtt_broker: MosquittoServer
) -> None:
    config = write_agent_config(tmp_path, mqtt_broker)
    settings = settings_of(config)
    topic = f"fleet/v1/allingtown/agent/{settings.agent.id}/availability"
    sub = Subscriber(settings, mqtt_broker, topic)
    log = tmp_path / "agent.log"
    proc = spawn([FLEET, "agent", "--config", str(config)], log)
    try:
        wait_until(lambda: sub.payloads()[-1:] == [b"online"], message=f"online\n{tail(log)}")
    finally:
        assert kill_process(proc) == -signal.SIGKILL
    wait_until(lambda: sub.payloads()[-1:] == [b"offline"], message="the LWT")
    sub.close()
    assert retained(settings, mqtt_broker, topic) == b"offline"


def test_sigterm_stops_cleanly_with_a_retained_offline(
    tmp_path: Path, mqtt_broker: MosquittoServer
) -> None:
    config = write_agent_config(tmp_path, mqtt_broker)
    settings = settings_of(config)
    topic = f"fleet/v1/allingtown/agent/{settings.agent.id}/availability"
    sub = Subscriber(settings, mqtt_broker, topic)
    log = tmp_path / "agent.log"
    proc = spawn([FLEET, "agent", "--config", str(config)], log)
    try:
        wait_until(lambda: sub.payloads()[-1:] == [b"online"], message=f"online\n{tail(log)}")
    finally:
        code = stop_process(proc, timeout=20)
    assert code == 0, tail(log)
    wait_until(lambda: sub.payloads()[-1:] == [b"offline"], message="offline")
    assert "agent stopped" in log.read_text()
    sub.close()
    assert retained(settings, mqtt_broker, topic) == b"offline"


def test_a_bad_config_exits_78(tmp_path: Path, mqtt_broker: MosquittoServer) -> None:
    config = write_agent_config(tmp_path, mqtt_broker, agent='[[agent.drivers]]\nkind = "nope"')
    log = tmp_path / "agent.log"
    proc = spawn([FLEET, "agent", "--config", str(config)], log)
    assert proc.wait(30) == 78
    assert "agent.drivers[0]" in log.read_text()
