"""A report is a list of cells: the tidy long rows every output (page, CSV, XLSX, API, open data) shows.

A :class:`Cell` carries the ten public columns of the tidy format and, beside them, what the disclosure
control (:mod:`fablab.reports.disclosure`) needs to decide whether the cell may be shown: how many distinct
people are behind it, each person's share of an hour total, how many distinct users a machine had. Those
internal fields never leave the reports package: :meth:`Cell.public` is the only way out.

Periods are the fixed grid only (disclosure rule 2): ``2026`` (year), ``2026-Q3`` (quarter), ``2026-07``
(month). Levels: ``network`` (lab, type and machine empty), ``lab``, ``machine_type`` (a type *within* a
lab), ``machine``. ``dimension`` / ``category`` are empty for a total, or name the one breakdown of the
table (``gender``, ``age_band``, ``user_category``, ``initiative``, ``training``, ``weekday_hour``,
``booking_kind``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from dataclasses import dataclass, field

#: The public columns, in the order of the CSV export.
COLUMNS = (
    "period",
    "lab",
    "machine_type",
    "machine",
    "dimension",
    "category",
    "metric",
    "value",
    "unit",
    "obs_status",
)

LEVELS = ("network", "lab", "machine_type", "machine")

#: obs_status flags (SDMX-like): suppressed, provisional (the running period), estimated.
SUPPRESSED = "c"
PROVISIONAL = "p"
ESTIMATED = "e"

_PERIOD = re.compile(r"^(?P<year>\d{4})(?:-(?:Q(?P<quarter>[1-4])|(?P<month>0[1-9]|1[0-2])))?$")


@dataclass(frozen=True)
class Period:
    """A calendar year, quarter or month (in each lab's own time zone)."""

    year: int
    quarter: int | None = None
    month: int | None = None

    @classmethod
    def parse(cls, text: str) -> Period:
        """``2026``, ``2026-Q3`` or ``2026-07``; anything else (a free range too) is a ``ValueError``."""
        m = _PERIOD.match(text or "")
        if not m:
            raise ValueError(text)
        q, mo = m.group("quarter"), m.group("month")
        return cls(int(m.group("year")), int(q) if q else None, int(mo) if mo else None)

    @property
    def grain(self) -> str:
        return "month" if self.month else "quarter" if self.quarter else "year"

    def __str__(self) -> str:
        if self.month:
            return f"{self.year}-{self.month:02d}"
        if self.quarter:
            return f"{self.year}-Q{self.quarter}"
        return str(self.year)

    @property
    def first_day(self) -> dt.date:
        month = self.month or (3 * (self.quarter - 1) + 1 if self.quarter else 1)
        return dt.date(self.year, month, 1)

    @property
    def end_day(self) -> dt.date:
        """The first day after the period."""
        months = 1 if self.month else 3 if self.quarter else 12
        m0 = self.first_day.month - 1 + months
        return dt.date(self.year + m0 // 12, m0 % 12 + 1, 1)

    def days(self) -> int:
        return (self.end_day - self.first_day).days

    def previous(self) -> Period:
        """The period of the same grain just before (P3's "period before")."""
        if self.month:
            return Period(self.year - (self.month == 1), month=12 if self.month == 1 else self.month - 1)
        if self.quarter:
            return Period(
                self.year - (self.quarter == 1), quarter=4 if self.quarter == 1 else self.quarter - 1
            )
        return Period(self.year - 1)

    def children(self) -> list[Period]:
        """The periods of the grain below that make this one up (a year's quarters, a quarter's months)."""
        if self.month:
            return []
        if self.quarter:
            first = 3 * (self.quarter - 1) + 1
            return [Period(self.year, month=m) for m in range(first, first + 3)]
        return [Period(self.year, quarter=q) for q in range(1, 5)]

    @classmethod
    def of_year(cls, year: int) -> list[Period]:
        """Every period of a year: the year, its quarters, its months."""
        return [
            cls(year),
            *(cls(year, quarter=q) for q in range(1, 5)),
            *(cls(year, month=m) for m in range(1, 13)),
        ]


@dataclass(frozen=True)
class Cell:
    """One figure of a report. The first ten fields are public; the rest are for the disclosure control."""

    period: str
    lab: str = ""
    machine_type: str = ""
    machine: str = ""
    dimension: str = ""
    category: str = ""
    metric: str = ""
    value: float | None = None
    unit: str = ""
    obs_status: str = ""
    #: Distinct people behind the cell; ``None`` for a figure about equipment only (M1, M2).
    people: int | None = None
    #: Each person's contribution to an hour total split by a personal attribute, largest first (rule 4).
    shares: tuple[float, ...] = field(default=(), repr=False)
    #: For a machine cell: the machine's distinct users in the period (rule 5).
    users: int | None = None
    #: For a suppressed cell: the disclosure rule that hid it (a key of ``disclosure.SUPPRESSION_NOTES``),
    #: so that a page says "fewer than 10" only of a figure that does rest on fewer than 10 people.
    withheld_by: str = ""

    @property
    def level(self) -> str:
        if self.machine:
            return "machine"
        if self.machine_type:
            return "machine_type"
        if self.lab:
            return "lab"
        return "network"

    @property
    def key(self) -> tuple:
        """Identifies the cell within a report (everything public but value, unit and flag)."""
        return (
            self.period,
            self.lab,
            self.machine_type,
            self.machine,
            self.dimension,
            self.category,
            self.metric,
        )

    @property
    def suppressed(self) -> bool:
        return SUPPRESSED in self.obs_status

    def replace(self, **changes) -> Cell:
        return dataclasses.replace(self, **changes)

    def public(self) -> dict:
        """The ten public columns; a suppressed cell has no value."""
        row = {name: getattr(self, name) for name in COLUMNS}
        if self.suppressed:
            row["value"] = None
        return row
