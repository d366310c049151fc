"""The fixed grid the metrics are computed on, and the small tools every metric module shares.

Distinct counts of people do not add up over months or labs (a member active in March and in May is one
member in the quarter, one member active in two labs is one member of the network). Rather than one
``COUNT(DISTINCT …)`` query per level and period, the database returns, per member and group, a *month
mask*: ``SUM(DISTINCT 2^(month-1))`` — bit ``m-1`` set when the member was active in month ``m``. From
those masks every period of the year (12 months, 4 quarters, the year) is counted at once. Where only
the counts matter, the database also does that last step (:func:`mask_counts`: how many members per
group share each mask), so that a year of thousands of members comes back as a few thousand rows.

A year's report is some hundred thousand cells; :meth:`Scope.emit` is written to cost about a
microsecond per cell for that reason.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import defaultdict
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field

from django.db import connections
from django.db.models import Aggregate, DateField, IntegerField, Value
from django.db.models.functions import Cast, ExtractMonth, TruncMonth, TruncQuarter

from .cells import COLUMNS, PROVISIONAL, Cell, Period
from .definitions import COUNT, DIMENSIONS, FLAG, HOURS, KWH, KWH_PER_H, METRICS, PERCENT

YEAR_BITS = 0xFFF


def period_bits(period: Period) -> int:
    """The month-mask bits that make up ``period`` (a month, quarter or the year)."""
    if period.month:
        return 1 << (period.month - 1)
    if period.quarter:
        return 0b111 << (3 * (period.quarter - 1))
    return YEAR_BITS


def month_start(day: str = "day"):
    """The first day of the row's month: grouping on a truncated date is about twice as fast on
    PostgreSQL as on ``EXTRACT(MONTH …)``, a numeric."""
    return TruncMonth(day, output_field=DateField())


def quarter_start(day: str = "day"):
    return TruncQuarter(day, output_field=DateField())


def month_number(value) -> int:
    """The month of a :func:`month_start` value (a date, or its ISO text from a raw SQLite query)."""
    return int(str(value)[5:7])


def quarter_number(value) -> int:
    return (month_number(value) - 1) // 3 + 1


class MonthMask(Aggregate):
    """The months a group's rows fall in, as bits: ``BIT_OR(1 << (month - 1))`` on PostgreSQL, and the
    same through ``SUM(DISTINCT …)`` where there is no ``BIT_OR`` (SQLite)."""

    function = "SUM"
    name = "MonthMask"
    allow_distinct = True
    output_field = IntegerField()

    def __init__(self, day: str = "day", **extra):
        bit = Value(1).bitleftshift(Cast(ExtractMonth(day), IntegerField()) - Value(1))
        super().__init__(bit, distinct=True, **extra)

    def as_postgresql(self, compiler, connection, **extra_context):
        clone = self.copy()
        clone.distinct = False
        return clone.as_sql(compiler, connection, function="BIT_OR", **extra_context)


def mask_counts(queryset, *columns: str) -> list[tuple]:
    """``(column values…, rows)``: the rows of ``queryset`` (one per member and group, with its month
    masks) counted by the database per combination of ``columns``.

    ``queryset`` is a ``values()`` query naming or annotating ``columns``; it is wrapped as a sub-select
    (which Django's ORM cannot group over by itself). A column may be ``SUBSTR(name, n)`` — the only
    expression used — to group on the tail of a string.
    """
    db = connections[queryset.db]
    quoted = ", ".join(_column(db, c) for c in columns)
    sql, params = queryset.order_by().query.get_compiler(queryset.db).as_sql()
    with db.cursor() as cursor:
        # Only quoted column names and the ORM's own parameterised SQL go into the text.
        cursor.execute(f"SELECT {quoted}, COUNT(*) FROM ({sql}) members GROUP BY {quoted}", params)  # noqa: S608
        return cursor.fetchall()


def _column(db, column: str) -> str:
    if column.startswith("SUBSTR("):
        name, start = column[len("SUBSTR(") : -1].split(", ")
        return f"SUBSTR({db.ops.quote_name(name)}, {int(start)})"
    return db.ops.quote_name(column)


def merge_masks(rows: Iterable[tuple[Hashable, int]]) -> dict[Hashable, int]:
    """OR the masks of rows with the same key (e.g. a member's labs into the network)."""
    merged: dict[Hashable, int] = defaultdict(int)
    for key, mask in rows:
        merged[key] |= int(mask or 0)
    return merged


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


def shares_of(hours: Iterable[float]) -> tuple[float, ...]:
    """Each person's part of an hour total, largest first (disclosure rule 4); empty for a zero total."""
    values = sorted((h for h in hours if h > 0), reverse=True)
    total = sum(values)
    return tuple(h / total for h in values) if total else ()


_new = object.__new__
_CELL_FIELDS = {f.name for f in dataclasses.fields(Cell)}
_FAST = not hasattr(Cell, "__slots__") and {*COLUMNS, "people", "shares", "users"} == _CELL_FIELDS


@dataclass
class Scope:
    """One year of one viewer's labs: what every metric module needs to emit its cells."""

    year: int
    lab_slugs: dict[int, str]
    today: dt.date
    cells: list[Cell] = field(default_factory=list)

    def __post_init__(self) -> None:
        #: Every period of the year, in the order of ``Period.of_year``: the year (index 0), the quarters
        #: (1–4), the months (5–16). Inner tables are keyed by these indices, not by ``Period`` objects,
        #: whose hash (a frozen dataclass's) costs a microsecond, a million times over.
        self.periods: list[Period] = Period.of_year(self.year)
        self.index = {p: i for i, p in enumerate(self.periods)}
        self.coarse = [i for i, p in enumerate(self.periods) if p.grain != "month"]
        self.first_day = dt.date(self.year, 1, 1)
        self.end_day = dt.date(self.year + 1, 1, 1)
        self._info = [
            (str(p), p.grain, PROVISIONAL if p.first_day <= self.today < p.end_day else "")
            for p in self.periods
        ]
        self._bits = [period_bits(p) for p in self.periods]
        self._covers: dict[int, tuple[int, ...]] = {}
        self._allowed: dict[tuple, bool] = {}

    YEAR = 0

    @staticmethod
    def quarter(q: int) -> int:
        """The index of quarter ``q`` in :attr:`periods`."""
        return q

    @staticmethod
    def month(m: int) -> int:
        """The index of month ``m`` in :attr:`periods`."""
        return 4 + m

    def bits(self, i: int) -> int:
        """The month-mask bits of period ``i``."""
        return self._bits[i]

    @property
    def lab_ids(self) -> list[int]:
        return list(self.lab_slugs)

    def labs(self) -> list[str]:
        """The network ("") and every lab of the scope, in a stable order."""
        return ["", *sorted(self.lab_slugs.values())]

    def in_year(self, prefix: str = "") -> dict:
        """Filter kwargs: rows of the scope's labs in the year (``prefix`` reaches the lab, e.g. ``machine__``)."""
        return {f"{prefix}lab__in": self.lab_ids, "day__gte": self.first_day, "day__lt": self.end_day}

    def covers(self, mask: int) -> tuple[int, ...]:
        """The indices of the periods a member with this month mask was active in."""
        mask = int(mask or 0)
        found = self._covers.get(mask)
        if found is None:
            found = self._covers[mask] = tuple(i for i, bits in enumerate(self._bits) if mask & bits)
        return found

    def count(self, rows: Iterable[tuple[Hashable, int, int]]) -> dict[tuple[Hashable, int], int]:
        """``{(group, period index): members}`` from ``(group, mask, members with that mask)`` rows."""
        out: dict[tuple[Hashable, int], int] = defaultdict(int)
        for group, mask, n in rows:
            for i in self.covers(mask):
                out[group, i] += n
        return out

    def allowed(self, metric: str, level: str, period: int, dimension: str = "") -> bool:
        """Whether the definitions allow ``metric`` at ``level`` in period ``period`` (and rule 7's grid)."""
        rule = (metric, level, self._info[period][1], dimension)
        allowed = self._allowed.get(rule)
        if allowed is None:
            definition = METRICS[metric]
            grid = DIMENSIONS[dimension]["grid"] if dimension else None
            allowed = self._allowed[rule] = (
                level in definition.levels
                and rule[2] in definition.grains
                and (grid is None or (level, rule[2]) in grid)
            )
        return allowed

    def emit(
        self,
        period: int | Period,
        metric: str,
        value,
        lab: str = "",
        machine_type: str = "",
        machine: str = "",
        dimension: str = "",
        category: str = "",
        people: int | None = None,
        shares: tuple[float, ...] = (),
        users: int | None = None,
    ) -> None:
        """Add one cell of ``period`` (its index, or the period), only where the definitions allow it
        (the metric's levels and grains, and rule 7's grid of its breakdown)."""
        if type(period) is not int:
            period = self.index[period]
        text, _grain, status = self._info[period]
        level = "machine" if machine else "machine_type" if machine_type else "lab" if lab else "network"
        if not self.allowed(metric, level, period, dimension):
            return
        unit = METRICS[metric].unit
        fields = {
            "period": text,
            "lab": lab,
            "machine_type": machine_type,
            "machine": machine,
            "dimension": dimension,
            "category": category,
            "metric": metric,
            "value": rounded(value, unit),
            "unit": unit,
            "obs_status": status,
            "people": people,
            "shares": shares,
            "users": users,
        }
        if _FAST:  # a frozen dataclass's __init__ costs several times more, a hundred thousand times
            cell = _new(Cell)
            cell.__dict__.update(fields)
        else:
            cell = Cell(**fields)
        self.cells.append(cell)
