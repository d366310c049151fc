"""Sets of half-open time intervals ``[start, end)`` for the rollups, as plain numbers (epoch seconds).

Pure functions, no Django: the rollup (:mod:`fablab.reports.rollup`) turns every booking, session,
window and state into such intervals once, then adds, intersects and subtracts them in Python, which
is what lets it rebuild a year of a large network in seconds instead of asking the database per
machine-day. A *set* here is a list of ``(start, end)`` pairs; :func:`normalize` makes it canonical
(sorted, disjoint, no empty pieces, touching pieces merged), and every other function takes and
returns canonical sets.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable

Interval = tuple[float, float]
IntervalSet = list[Interval]


def normalize(intervals: Iterable[Interval]) -> IntervalSet:
    """The union of any intervals, as a canonical set (empty and reversed pieces dropped)."""
    result: IntervalSet = []
    for start, end in sorted(iv for iv in intervals if iv[1] > iv[0]):
        if result and start <= result[-1][1]:
            if end > result[-1][1]:
                result[-1] = (result[-1][0], end)
        else:
            result.append((start, end))
    return result


def union(*sets: IntervalSet) -> IntervalSet:
    return normalize(iv for s in sets for iv in s)


def intersect(a: IntervalSet, b: IntervalSet) -> IntervalSet:
    """What lies in both canonical sets."""
    result: IntervalSet = []
    i = j = 0
    while i < len(a) and j < len(b):
        start, end = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if start < end:
            result.append((start, end))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return result


def subtract(a: IntervalSet, b: IntervalSet) -> IntervalSet:
    """What lies in ``a`` and not in ``b`` (both canonical)."""
    result: IntervalSet = []
    j = 0
    for start, end in a:
        while j < len(b) and b[j][1] <= start:
            j += 1
        k = j
        cursor = start
        while k < len(b) and b[k][0] < end:
            if b[k][0] > cursor:
                result.append((cursor, b[k][0]))
            cursor = max(cursor, b[k][1])
            k += 1
        if cursor < end:
            result.append((cursor, end))
    return result


def clip(a: IntervalSet, lo: float, hi: float) -> IntervalSet:
    """The part of a canonical set inside ``[lo, hi)``; finds its first piece by bisection."""
    i = bisect.bisect_right(a, lo, key=lambda iv: iv[1])
    result: IntervalSet = []
    while i < len(a) and a[i][0] < hi:
        start, end = max(a[i][0], lo), min(a[i][1], hi)
        if start < end:
            result.append((start, end))
        i += 1
    return result


def length(a: Iterable[Interval]) -> float:
    """Total length of a canonical set (seconds)."""
    return sum(end - start for start, end in a)


def hours(a: Iterable[Interval]) -> float:
    return length(a) / 3600.0


def split(intervals: Iterable[Interval], bounds: list[float]) -> dict[int, IntervalSet]:
    """Cut intervals at ``bounds`` (the sorted starts of consecutive days, then the end of the last):
    ``{day index: raw pieces inside that day}``; what lies outside ``[bounds[0], bounds[-1])`` is
    dropped. The pieces are not normalized (a caller that needs a set normalizes a day's pieces)."""
    result: dict[int, IntervalSet] = {}
    last = len(bounds) - 1
    for start, end in intervals:
        start, end = max(start, bounds[0]), min(end, bounds[-1])
        if start >= end:
            continue
        i = bisect.bisect_right(bounds, start) - 1
        while i < last and bounds[i] < end:
            lo, hi = max(start, bounds[i]), min(end, bounds[i + 1])
            if lo < hi:
                result.setdefault(i, []).append((lo, hi))
            i += 1
    return result
