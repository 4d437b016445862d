"""Per-device seq accounting: gaps, late arrivals, duplicates, restarts."""

from __future__ import annotations

import pytest

from daemon.collector.seqtrack import WINDOW, SeqTracker


def feed(seqs: list[int | None]) -> SeqTracker:
    tracker = SeqTracker()
    for seq in seqs:
        tracker.observe("allingtown", "segway", "sw-01", seq)
    return tracker


@pytest.mark.parametrize(
    ("seqs", "missing", "duplicates"),
    [
        ([1, 2, 3, 4], 0, 0),
        ([1, 2, 5, 6], 2, 0),
        ([1, 2, 5, 3, 4], 0, 0),  # late arrivals fill the gap
        ([1, 2, 2, 3, 3, 3], 0, 3),  # QoS 1 redeliveries
        ([10, 11, 9, 12], 0, 0),  # older than the first seen: not a gap we counted
        ([None, None, 1, 2], 0, 0),  # OwnTracks readings carry no seq
        ([1, 3, 3, 2], 0, 1),
    ],
)
def test_gaps_and_duplicates(seqs, missing, duplicates):
    tracker = feed(seqs)
    assert (tracker.missing, tracker.duplicates) == (missing, duplicates)
    state = tracker.devices["sw-01"]
    assert (state.missing, state.duplicates) == (missing, duplicates)
    assert state.received == len(seqs)


def test_restart_of_the_agent_count_is_not_a_gap():
    high = WINDOW * 3
    tracker = feed([high, high + 1, 1, 2, 3])
    state = tracker.devices["sw-01"]
    assert state.restarts == 1
    assert tracker.missing == 0
    assert state.highest == 3


def test_take_changed_reports_each_device_once_per_news():
    tracker = SeqTracker()
    tracker.observe("allingtown", "segway", "sw-01", 1)
    tracker.observe("westhaven", "handheld", "hh-01", 1)
    assert sorted(d for d, _ in tracker.take_changed()) == ["hh-01", "sw-01"]
    assert tracker.take_changed() == []
    tracker.observe("westhaven", "handheld", "hh-01", 2)
    assert [d for d, _ in tracker.take_changed()] == ["hh-01"]


def test_memory_of_seen_numbers_stays_bounded():
    tracker = feed(list(range(1, WINDOW * 5)))
    assert tracker.devices["sw-01"].seen.bit_length() <= WINDOW
    assert tracker.missing == 0


def test_a_late_arrival_at_the_edge_of_the_window_still_fills_its_gap():
    tracker = feed([1, *range(3, WINDOW + 2), 2])
    assert tracker.missing == 0
    assert tracker.duplicates == 0
