"""The fixed grid the metrics are computed on, and the small tools every metric module shares.

Distinct counts of people do not add up over months or labs (a member active in March and in May is one
member in the quarter, one member active in two labs is one member of the network). Rather than one
``COUNT(DISTINCT …)`` query per level and period, the database returns, per member and group, a *month
mask*: ``SUM(DISTINCT 2^(month-1))`` — bit ``m-1`` set when the member was active in month ``m``. From
those masks every period of the year (12 months, 4 quarters, the year) and every coarser level
(machine → type → lab → network, by OR-ing masks) is counted without going back to the database, and
the masks are few (one per member and machine), so the whole year stays well under a second.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field

from django.db.models import Sum, Value
from django.db.models.functions import ExtractMonth, Power

from .cells import PROVISIONAL, Cell, Period
from .definitions import COUNT, DIMENSIONS, FLAG, HOURS, KWH, KWH_PER_H, METRICS, PERCENT

YEAR_BITS = 0xFFF


def period_bits(period: Period) -> int:
    """The month-mask bits that make up ``period`` (a month, quarter or the year)."""
    if period.month:
        return 1 << (period.month - 1)
    if period.quarter:
        return 0b111 << (3 * (period.quarter - 1))
    return YEAR_BITS


def month_mask(day_field: str = "day"):
    """``SUM(DISTINCT 2^(month-1))`` over a group's rows: the months of the year it was active in."""
    return Sum(Power(Value(2), ExtractMonth(day_field) - 1), distinct=True)


def merge_masks(rows: Iterable[tuple[Hashable, int]]) -> dict[Hashable, int]:
    """OR the masks of rows with the same key (e.g. a member's machines into their lab)."""
    merged: dict[Hashable, int] = defaultdict(int)
    for key, mask in rows:
        merged[key] |= int(mask or 0)
    return merged


def count_by_period(
    masks: Iterable[tuple[Hashable, int]], periods: Iterable[Period]
) -> dict[tuple[Hashable, Period], int]:
    """``{(group, period): distinct members}`` from ``(group, mask)`` pairs, one pair per member and group."""
    periods = list(periods)
    tally = Counter((group, int(mask)) for group, mask in masks)
    out: dict[tuple[Hashable, Period], int] = defaultdict(int)
    for (group, mask), n in tally.items():
        for period in periods:
            if mask & period_bits(period):
                out[group, period] += n
    return out


def pct(numerator: float, denominator: float) -> float | None:
    """A percentage, ``None`` when the denominator is 0 (no figure rather than a made-up 0 %)."""
    return 100.0 * numerator / denominator if denominator else None


def ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def rounded(value, unit: str):
    """Published precision: hours, kWh and percentages to 0.1, kWh per hour to 0.01, counts whole."""
    if value is None:
        return None
    if unit in (COUNT, FLAG):
        return round(value)
    if unit == KWH_PER_H:
        return round(float(value), 2)
    if unit in (HOURS, KWH, PERCENT):
        return round(float(value), 1)
    return value


@dataclass
class Scope:
    """One year of one viewer's labs: what every metric module needs to emit its cells."""

    year: int
    lab_slugs: dict[int, str]
    today: dt.date
    cells: list[Cell] = field(default_factory=list)

    @property
    def lab_ids(self) -> list[int]:
        return list(self.lab_slugs)

    @property
    def periods(self) -> list[Period]:
        return Period.of_year(self.year)

    @property
    def first_day(self) -> dt.date:
        return dt.date(self.year, 1, 1)

    @property
    def end_day(self) -> dt.date:
        return dt.date(self.year + 1, 1, 1)

    def in_year(self, prefix: str = "") -> dict:
        """Filter kwargs: rows of the scope's labs in the year (``prefix`` reaches the lab, e.g. ``machine__``)."""
        return {
            f"{prefix}lab__in": self.lab_ids,
            "day__gte": self.first_day,
            "day__lt": self.end_day,
        }

    def emit(
        self,
        period: Period,
        metric: str,
        value,
        *,
        lab: str = "",
        machine_type: str = "",
        machine: str = "",
        dimension: str = "",
        category: str = "",
        people: int | None = None,
        shares: tuple[float, ...] = (),
        users: int | None = None,
    ) -> None:
        """Add one cell, only where the definitions allow it (metric levels and grains, rule 7's grid)."""
        definition = METRICS[metric]
        level = "machine" if machine else "machine_type" if machine_type else "lab" if lab else "network"
        if level not in definition.levels or period.grain not in definition.grains:
            return
        grid = DIMENSIONS[dimension]["grid"] if dimension else None
        if grid is not None and (level, period.grain) not in grid:
            return
        provisional = period.first_day <= self.today < period.end_day
        self.cells.append(
            Cell(
                period=str(period),
                lab=lab,
                machine_type=machine_type,
                machine=machine,
                dimension=dimension,
                category=category,
                metric=metric,
                value=rounded(value, definition.unit),
                unit=definition.unit,
                obs_status=PROVISIONAL if provisional else "",
                people=people,
                shares=shares,
                users=users,
            )
        )


def shares_of(hours: Iterable[float]) -> tuple[float, ...]:
    """Each person's part of an hour total, largest first (disclosure rule 4); empty for a zero total."""
    values = sorted((h for h in hours if h > 0), reverse=True)
    total = sum(values)
    return tuple(h / total for h in values) if total else ()
