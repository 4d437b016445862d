"""Per-device seq accounting: gaps, late arrivals, duplicates, restarts."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleet.daemon.collector.seqtrack import WINDOW, SeqTracker
from fleet.daemon.spool import SeqRow


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


# --- any number, any jump: bounded, never raising, counting sensibly -------------------------

SEQ = st.integers(min_value=0, max_value=2**63 - 1)
# Mostly small numbers near each other (gaps, late arrivals, duplicates), with huge jumps mixed in.
MIXED = st.lists(
    st.one_of(st.integers(0, 3 * WINDOW), SEQ, st.just(2**62), st.just(2**63 - 1)), max_size=60
)


def test_a_jump_to_2_62_is_a_restart_not_2_62_missing():
    tracker = feed([1, 2**62, 2**62 + 1])
    state = tracker.devices["sw-01"]
    assert (state.restarts, tracker.restarts) == (1, 1)
    assert tracker.missing == 0
    assert state.highest == 2**62 + 1
    assert state.seen.bit_length() <= WINDOW


def test_a_jump_within_the_window_is_counted_as_missing():
    tracker = feed([1, 1 + WINDOW])
    assert tracker.missing == WINDOW - 1
    assert tracker.devices["sw-01"].restarts == 0
    tracker = feed([1, 2 + WINDOW])
    assert tracker.missing == 0
    assert tracker.devices["sw-01"].restarts == 1


@settings(max_examples=500, deadline=None)
@given(MIXED)
def test_any_sequence_of_numbers_is_bounded_and_never_raises(seqs):
    tracker = SeqTracker()
    for seq in seqs:
        tracker.observe("allingtown", "segway", "sw-01", seq)
        state = tracker.devices["sw-01"]
        assert state.seen.bit_length() <= WINDOW
        assert 0 <= state.missing <= (WINDOW - 1) * state.received
        assert tracker.missing == state.missing >= 0
    rows = tracker.take_dirty()
    assert all(len(r.seen) <= WINDOW // 8 for r in rows)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 3000), min_size=1, max_size=80))
def test_within_the_window_gaps_and_duplicates_are_exact(seqs):
    """No restart can happen here (every number is within WINDOW of every other), so the
    counts have a closed form: numbers between the first and the highest never seen, and
    repeats."""
    tracker = feed(list(seqs))
    first = seqs[0]
    highest = max(seqs)
    assert tracker.missing == len(set(range(first + 1, highest)) - set(seqs))
    assert tracker.duplicates == len(seqs) - len(set(seqs))
    assert tracker.restarts == 0


@settings(max_examples=200, deadline=None)
@given(MIXED, MIXED)
def test_state_survives_a_restart_through_its_rows(before, after):
    """Restoring from the persisted rows is bounded too, and its counters start at zero."""
    first = SeqTracker()
    for seq in before:
        first.observe("allingtown", "segway", "sw-01", seq)
    rows = first.take_dirty()
    second = SeqTracker(rows)
    for seq in after:
        second.observe("allingtown", "segway", "sw-01", seq)
        state = second.devices["sw-01"]
        assert state.seen.bit_length() <= WINDOW
        assert state.missing >= 0


def test_a_gap_across_a_restart_is_counted_and_a_redelivery_is_a_duplicate():
    first = feed([1, 2, 3, 5])
    second = SeqTracker(first.take_dirty())
    for seq in (5, 4, 9):  # 5 redelivered, 4 late, 6..8 lost while the collector was down
        second.observe("allingtown", "segway", "sw-01", seq)
    assert second.duplicates == 1
    assert second.missing == 3
    assert second.devices["sw-01"].restarts == 0


def test_a_hand_edited_row_cannot_bring_an_unbounded_bitmap_back():
    row = SeqRow("sw-01", "allingtown", "segway", 10, b"\xff" * 10_000)
    tracker = SeqTracker([row])
    assert tracker.devices["sw-01"].seen.bit_length() <= WINDOW
