"""The interval arithmetic every reader of a machine's free time shares (fablab.booking.free_time)."""

from __future__ import annotations

import datetime as dt
import itertools

from hypothesis import given
from hypothesis import strategies as st

from fablab.booking import free_time

BASE = dt.datetime(2025, 3, 3, 8, tzinfo=dt.UTC)


def at(minutes: int) -> dt.datetime:
    return BASE + dt.timedelta(minutes=minutes)


def interval(start: int, length: int) -> free_time.Interval:
    return at(start), at(start + length)


#: A window of up to two days, and busy intervals (bookings, maintenance) in and around it, in any
#: order, overlapping one another or not, empty ones too.
windows = st.builds(interval, st.integers(0, 2880), st.integers(1, 2880))
busy_lists = st.lists(st.builds(interval, st.integers(-600, 6000), st.integers(0, 900)), max_size=15)


@given(windows, busy_lists)
def test_free_and_busy_intervals_split_the_window(window, busy):
    lo, hi = window

    free = free_time.subtract([window], busy)

    # Sorted, disjoint, non-empty and inside the window.
    assert all(lo <= a < b <= hi for a, b in free)
    assert all(b <= next_a for (_, b), (next_a, _) in itertools.pairwise(free))
    # No free interval overlaps a busy one.
    assert not any(a < b_end and b_start < b for a, b in free for b_start, b_end in busy)
    # Together they cover the window: no moment of it is neither free nor busy.
    pieces = sorted([*free, *((max(s, lo), min(e, hi)) for s, e in busy if s < hi and e > lo)])
    covered = lo
    for a, b in pieces:
        assert a <= covered, f"{covered} to {a} is neither free nor busy"
        covered = max(covered, b)
    assert covered == hi


def test_a_free_interval_touching_a_busy_one_is_kept_whole():
    assert free_time.subtract([interval(0, 60)], [interval(60, 30), interval(-30, 30)]) == [interval(0, 60)]
