"""The agent when its disk or its own tasks fail, on a real Mosquitto and a real SQLite outbox.

A broken outbox (read-only, full) keeps readings in memory, bounded, makes the
agent report itself offline, and loses nothing once it works again; a writer or
forwarder that raises is restarted; trimming while the broker withholds its
acks counts every reading exactly once.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from fleet.daemon.agent.app import Agent
from fleet.daemon.agent.forward import READ, WRITE
from fleet.daemon.agent.outbox import DrillPragma, Outbox
from fleet.daemon.spool import Entry
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
from tests.harness.servers import MosquittoServer
from tests.harness.waiting import wait_until

NO_PAGE_LIMIT = 1_073_741_823  # SQLite's default max_page_count


def drill(agent: Agent, pragma: DrillPragma, value: int) -> None:
    """Break (or mend) the running agent's outbox, on the outbox's own thread."""
    agent.store.on_worker(lambda box: box.drill(pragma, value)).result(timeout=10)


def first_seen(seqs: list[int]) -> list[int]:
    return list(dict.fromkeys(seqs))


def test_a_read_only_outbox_holds_readings_and_the_agent_reports_offline_until_it_works(
    tmp_path: Path, mqtt_broker: MosquittoServer
) -> None:
    settings = settings_of(write_agent_config(tmp_path, mqtt_broker))
    topic = telemetry_topic("sw-40")
    sub = Subscriber(settings, mqtt_broker, topic)
    script = Script(device="sw-40", interval_s=0.01)
    agent = Agent(settings, specs=[scripted_spec(script)])
    state = Subscriber(settings, mqtt_broker, agent.agent_topic)
    with running_agent(agent):
        wait_until(
            lambda: len(sub.seqs()) >= 10 and state.payloads()[-1:] == [b"online"],
            message="readings flowing, agent online",
        )
        drill(agent, "query_only", 1)  # the disk was remounted read-only
        wait_until(lambda: agent.store.held >= 100, message="readings held in memory")
        wait_until(lambda: state.payloads()[-1:] == [b"offline"], message="agent offline")
        assert retained(settings, mqtt_broker, agent.agent_topic) == b"offline"
        assert WRITE in agent.problems
        assert agent.store.stats.store_errors >= 1
        drill(agent, "query_only", 0)
        wait_until(
            lambda: (
                not agent.problems
                and agent.store.held < 10
                and state.payloads()[-1:] == [b"online"]
            ),
            message="the outbox works again, agent online",
        )
        assert retained(settings, mqtt_broker, agent.agent_topic) == b"online"
    produced = script.emitted
    wait_until(lambda: len(sub.seqs()) >= produced, message="every reading delivered")
    # Nothing lost, nothing twice: the broker never went away, so at-least-once means once.
    assert sub.seqs() == list(range(1, produced + 1))
    stats = agent.store.stats
    assert (stats.accepted, stats.forwarded, stats.dropped) == (produced, produced, 0)
    print(f"read-only outbox: {stats.store_errors} failed outbox operations, {produced} readings")
    sub.close()
    state.close()


def test_a_full_disk_during_a_broker_outage_is_bounded_counted_and_reported_on_reconnect(
    tmp_path: Path, make_broker: Callable[..., MosquittoServer]
) -> None:
    broker: MosquittoServer = make_broker()
    hold = 200
    config = write_agent_config(tmp_path, broker, agent=f"outbox_hold_max_readings = {hold}")
    settings = settings_of(config)
    topic = telemetry_topic("sw-41")
    sub = Subscriber(settings, broker, topic, persistent=True)
    script = Script(device="sw-41", interval_s=0.005)
    agent = Agent(settings, specs=[scripted_spec(script)])
    state = Subscriber(settings, broker, agent.agent_topic, persistent=True)
    with running_agent(agent):
        wait_until(
            lambda: len(sub.seqs()) >= 10 and state.payloads()[-1:] == [b"online"],
            message="readings flowing, agent online",
        )
        broker.stop()
        drill(agent, "max_page_count", 1)  # the file may not grow: the disk is full
        wait_until(
            lambda: agent.store.stats.dropped > 0, timeout=20, message="memory bound reached"
        )
        assert agent.store.held <= hold
        assert WRITE in agent.problems
        seen = len(state.payloads())
        broker.start()
        # On reconnect the agent says what it is: offline, the disk still being full.
        wait_until(
            lambda: b"offline" in state.payloads()[seen:],
            timeout=20,
            message="offline published on reconnect",
        )
        drill(agent, "max_page_count", NO_PAGE_LIMIT)
        wait_until(
            lambda: (
                not agent.problems
                and agent.store.held == 0
                and state.payloads()[-1:] == [b"online"]
            ),
            timeout=20,
            message="the outbox works again, agent online",
        )
        script.readings = 0  # stop producing
        wait_until(
            lambda: agent.store.depth().rows == 0 and agent.store.stats.accepted == script.emitted,
            timeout=20,
            message="outbox drained",
        )
    produced, stats = script.emitted, agent.store.stats
    wait_until(
        lambda: len(first_seen(sub.seqs())) + stats.dropped >= produced,
        message="every reading kept delivered",
    )
    seqs = first_seen(sub.seqs())
    assert seqs == sorted(seqs)
    # What is missing is exactly what was counted; everything counted left memory once.
    assert len(seqs) + stats.dropped == produced
    assert stats.accepted == stats.forwarded + stats.dropped
    print(
        f"full disk: {produced} readings, {stats.dropped} dropped past the memory bound, "
        f"{stats.store_errors} failed outbox operations"
    )
    sub.close()
    state.close()


def test_a_writer_and_a_forwarder_that_raise_are_restarted_and_the_agent_says_so(
    tmp_path: Path, mqtt_broker: MosquittoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_agent_config(
        tmp_path, mqtt_broker, agent="restart_budget = 0\nrestart_window_s = 1.0"
    )
    settings = settings_of(config)
    topic = telemetry_topic("sw-42")
    sub = Subscriber(settings, mqtt_broker, topic)
    script = Script(device="sw-42", interval_s=0.01)
    agent = Agent(settings, specs=[scripted_spec(script)])
    state = Subscriber(settings, mqtt_broker, agent.agent_topic)
    writer, forwarder = agent.core
    with running_agent(agent):
        wait_until(
            lambda: len(sub.seqs()) >= 10 and state.payloads()[-1:] == [b"online"],
            message="readings flowing, agent online",
        )
        outbox = agent.store.outbox
        take, add = outbox.take, outbox.add
        bugs = {"take": 2, "add": 1}

        def buggy(name: str, real: Callable[..., object]) -> Callable[..., object]:
            def call(*args: object) -> object:
                if bugs[name]:
                    bugs[name] -= 1
                    raise RuntimeError(f"a bug in {name}")
                return real(*args)

            return call

        monkeypatch.setattr(outbox, "take", buggy("take", take))
        monkeypatch.setattr(outbox, "add", buggy("add", add))
        wait_until(lambda: (writer.failures, forwarder.failures) == (1, 2), message="both failed")
        wait_until(lambda: b"offline" in state.payloads(), message="agent offline")
        wait_until(
            lambda: not agent.problems and state.payloads()[-1:] == [b"online"],
            message="online again after a window without failures",
        )
        assert (writer.starts, forwarder.starts) == (2, 3)
        wait_until(lambda: len(sub.seqs()) >= script.emitted - 5, message="forwarding again")
    produced = script.emitted
    wait_until(lambda: len(sub.seqs()) >= produced, message="every reading delivered")
    assert sub.seqs() == list(range(1, produced + 1))  # the failed batch was kept, not lost
    assert agent.store.stats.dropped == 0
    sub.close()
    state.close()


def test_trimming_while_the_broker_withholds_its_acks_counts_every_reading_once(
    tmp_path: Path, make_broker: Callable[..., MosquittoServer]
) -> None:
    broker: MosquittoServer = make_broker()
    config = write_agent_config(tmp_path, broker, agent=f"outbox_max_bytes = {64 * 1024}")
    settings = settings_of(config)
    topic = telemetry_topic("sw-43")
    sub = Subscriber(settings, broker, topic, persistent=True)
    script = Script(device="sw-43", interval_s=0.001)
    agent = Agent(settings, specs=[scripted_spec(script)])
    with running_agent(agent):
        wait_until(lambda: len(sub.seqs()) >= 10, message="readings flowing")
        pid = broker.pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)  # connected, but no PUBACK comes back
        try:
            wait_until(
                lambda: agent.store.stats.dropped > 0 and agent.link.unacknowledged() > 0,
                message="outbox trimmed while a batch is in flight",
            )
        finally:
            os.kill(pid, signal.SIGCONT)
        script.readings = 0  # stop producing
        wait_until(
            lambda: (
                agent.store.depth().rows == 0
                and agent.store.stats.accepted == script.emitted
                and not agent.link.unacknowledged()
            ),
            timeout=30,
            message="outbox drained",
        )
    produced, stats = script.emitted, agent.store.stats
    wait_until(
        lambda: len(first_seen(sub.seqs())) + stats.dropped >= produced,
        message="every reading kept delivered",
    )
    seqs = first_seen(sub.seqs())
    assert seqs == sorted(seqs)
    # Every reading left the outbox once: sent (and then delivered) or dropped, never both.
    assert stats.accepted == produced == stats.forwarded + stats.dropped
    assert len(seqs) == stats.forwarded
    print(f"trim in flight: {produced} readings, {stats.dropped} dropped, {stats.forwarded} sent")
    sub.close()


def test_a_row_the_mqtt_client_refuses_is_dropped_and_counted_not_retried_forever(
    tmp_path: Path, mqtt_broker: MosquittoServer
) -> None:
    config = write_agent_config(tmp_path, mqtt_broker)
    settings = settings_of(config)
    topic = f"fleet/test/poison-{os.getpid()}"
    box = Outbox(settings.agent.outbox_path, max_bytes=64 * 1024, fsync=False)
    box.add([Entry(topic, "a", 1), Entry("fleet/#", "poison", 1), Entry(topic, "b", 1)], {})
    box.close()
    sub = Subscriber(settings, mqtt_broker, topic)
    with running_agent(Agent(settings, specs=[])) as agent:
        wait_until(lambda: sub.payloads() == [b"a", b"b"], message="the good rows")
        wait_until(lambda: agent.store.depth().rows == 0, message="outbox empty")
        assert (agent.store.stats.forwarded, agent.store.stats.dropped) == (2, 1)
        assert READ not in agent.problems
    sub.close()
