"""From protected cells to what a report page prints: one figure, its counts and its definition.

The pages never compute a figure: every number comes from a cell that went through the disclosure
control (the report service hands out nothing else). This module only *formats* them, and follows the
page rules of the reports:

* a percentage always carries the hours or counts it was computed from ("62 % (310 of 500 h)"),
  read from the cells of the same key — when one of them is hidden, only what is shown is printed;
* a suppressed cell (flag ``c``) reads "<10" only when it is a count of people hidden because fewer
  than 10 are behind it: then the figure itself is 1 to 9. Any other hidden figure reads "•": hours,
  visits or bookings resting on few people, a figure one or two people account for most of, or one
  hidden so that another hidden figure cannot be worked out. Such a figure may be large: "<10" would
  misstate it ("<10 h" reads as less than ten hours), and tell a reader which hidden figures are the
  small ones;
* a banded machine utilisation (1–2 users, unit "% band") reads "25–50 %";
* a provisional (``p``) or estimated (``e``) figure keeps its flag, shown beside it.

Numbers are formatted in the viewer's language (decimal comma in nl and fr).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.utils import formats
from django.utils.translation import gettext as _

from .cells import ESTIMATED, PROVISIONAL, SUPPRESSED, Cell
from .definitions import METRICS, RATIOS
from .disclosure import THRESHOLD_RULE

#: A percentage → (its part, its whole): the hours or counts printed beside it. The one table of ratios,
#: but for availability (its part is the downtime, not what it measures) and the ratios whose whole is
#: not published beside them.
PARTS = {name: (r.part, r.whole) for name, r in RATIOS.items() if r.whole and not r.complement}

BAND = "% band"
SUPPRESSED_TEXT = "<10"
WITHHELD_TEXT = "•"
NO_VALUE = "–"
#: The disclosure rules that hide a figure because fewer than 10 people are behind it.
FEW_PEOPLE_RULES = (THRESHOLD_RULE,)
#: The counts of distinct people: of all the figures hidden by :data:`FEW_PEOPLE_RULES`, only these are
#: themselves fewer than 10. Visits (member-days) and certifications are counts too, but one person may
#: make many of them.
PEOPLE_COUNTS = frozenset(
    {
        "active_makers",
        "new_makers",
        "returning_makers",
        "trainees",
        "trainees_using_within_90_days",
        "makers",
        "participants",
        "declared_participants",
    }
)


def fewer_than_ten(metric: str, withheld_by: str) -> bool:
    """Whether a hidden figure reads "<10": a count of people hidden for resting on fewer than 10 of them.

    Decided by the metric and the rule only, never by the hidden value, so that the mark tells nothing
    the rule does not."""
    return metric in PEOPLE_COUNTS and withheld_by in FEW_PEOPLE_RULES


def number(value: float, decimals: int = 0) -> str:
    """``value`` in the active language's format (grouping on, e.g. 1,234.5 / 1.234,5 / 1 234,5)."""
    return formats.number_format(round(value, decimals), decimals, use_l10n=True, force_grouping=True)


def plain(value: float | None, unit: str) -> str:
    """A value with its unit, e.g. "310 h", "62 %", "12", "4.2 kWh"; "–" without a value."""
    if value is None:
        return NO_VALUE
    if unit == "%":
        return f"{number(value, 1 if 0 < abs(value) < 10 else 0)}\u00a0%"
    if unit == BAND:
        return f"{number(value)}–{number(min(value + 25, 100))}\u00a0%"
    if unit == "h":
        return f"{number(value, 1 if abs(value) < 100 else 0)}\u00a0h"
    if unit == "kWh":
        return f"{number(value, 1 if abs(value) < 100 else 0)}\u00a0kWh"
    if unit == "kWh/h":
        return f"{number(value, 2)}\u00a0kWh/h"
    if unit == "count":
        return number(value)
    if unit == "flag":
        return _("yes") if value else _("no")
    return number(value, 1)


@dataclass(frozen=True)
class Fig:
    """One printed figure."""

    metric: str
    text: str
    detail: str = ""
    status: str = ""
    value: float | None = None
    unit: str = ""
    withheld_by: str = ""

    @property
    def suppressed(self) -> bool:
        return SUPPRESSED in self.status

    @property
    def few_people(self) -> bool:
        """A count of fewer than 10 people, hidden (it reads "<10", see the module)."""
        return self.suppressed and fewer_than_ten(self.metric, self.withheld_by)

    @property
    def provisional(self) -> bool:
        return PROVISIONAL in self.status

    @property
    def estimated(self) -> bool:
        return ESTIMATED in self.status

    @property
    def banded(self) -> bool:
        return self.unit == BAND

    @property
    def label(self):
        return METRICS[self.metric].label

    @property
    def definition(self):
        return METRICS[self.metric].definition

    @property
    def ref(self) -> str:
        return METRICS[self.metric].ref

    @property
    def shown(self) -> float | None:
        """The value to plot or colour: nothing for a hidden or banded figure."""
        return None if self.suppressed or self.banded else self.value


def _text(cell: Cell | None) -> str:
    if cell is None:
        return NO_VALUE
    if cell.suppressed:
        return SUPPRESSED_TEXT if fewer_than_ten(cell.metric, cell.withheld_by) else WITHHELD_TEXT
    return plain(cell.value, cell.unit)


def _visible(cell: Cell | None) -> bool:
    return cell is not None and not cell.suppressed and cell.value is not None and cell.unit != BAND


class Cells:
    """The cells of one report, looked up by their key, formatted on demand."""

    def __init__(self, cells: Iterable[Cell]):
        self.by_key = {c.key: c for c in cells}

    def get(
        self,
        metric: str,
        period: str,
        lab: str = "",
        machine_type: str = "",
        machine: str = "",
        dimension: str = "",
        category: str = "",
    ) -> Cell | None:
        return self.by_key.get((period, lab, machine_type, machine, dimension, category, metric))

    def fig(self, metric: str, period: str, **where) -> Fig:
        cell = self.get(metric, period, **where)
        return Fig(
            metric=metric,
            text=_text(cell),
            detail=self._detail(metric, period, cell, where),
            status=cell.obs_status if cell else "",
            value=cell.value if cell else None,
            unit=cell.unit if cell else METRICS[metric].unit,
            withheld_by=cell.withheld_by if cell else "",
        )

    def _detail(self, metric: str, period: str, cell: Cell | None, where: dict) -> str:
        """The hours or counts beside a percentage (only what is itself shown)."""
        if not _visible(cell):
            return ""
        if metric == "availability":
            down = self.get("unplanned_downtime_hours", period, **where)
            whole = self.get("net_available_hours", period, **where)
            if _visible(down) and _visible(whole):
                return _("%(part)s unplanned downtime in %(whole)s") % {
                    "part": plain(down.value, down.unit),
                    "whole": plain(whole.value, whole.unit),
                }
            return ""
        if metric == "returning_rate":
            part = self.get("returning_makers", period, **where)
            if _visible(part):
                return _("%(part)s returning makers") % {"part": number(part.value)}
            return ""
        if metric == "declared_coverage":
            whole = self.get("active_makers", period, **{**where, "dimension": "", "category": ""})
            if _visible(whole):
                return _("of %(whole)s active makers") % {"whole": number(whole.value)}
            return ""
        if metric not in PARTS:
            return ""
        part_name, whole_name = PARTS[metric]
        part, whole = self.get(part_name, period, **where), self.get(whole_name, period, **where)
        if _visible(part) and _visible(whole):
            unit = "" if part.unit == "count" else f"\u00a0{part.unit}"
            decimals = 0 if part.unit == "count" or abs(whole.value) >= 100 else 1
            return _("%(part)s of %(whole)s") % {
                "part": number(part.value, decimals),
                "whole": number(whole.value, decimals) + unit,
            }
        if _visible(whole):
            return _("of %(whole)s") % {"whole": plain(whole.value, whole.unit)}
        return ""

    def categories(self, period: str, dimension: str, **where) -> list[str]:
        """The categories a report has for ``dimension`` (at that place and period), in key order."""
        lab = where.get("lab", "")
        seen = {
            key[5]
            for key in self.by_key
            if key[0] == period and key[4] == dimension and key[1] == lab and not key[2] and not key[3]
        }
        return sorted(seen)

    def places(self, period: str, level: str, lab: str = "") -> list[tuple[str, str, str]]:
        """``(lab, machine_type, machine)`` of every place of ``level`` with cells in ``period``."""
        found = set()
        for key in self.by_key:
            if key[0] != period or key[4]:
                continue
            c_lab, c_type, c_machine = key[1], key[2], key[3]
            if lab and c_lab != lab:
                continue
            if level == "lab" and c_lab and not c_type and not c_machine:
                found.add((c_lab, "", ""))
            elif level == "machine_type" and c_type and not c_machine:
                found.add((c_lab, c_type, ""))
            elif level == "machine" and c_machine:
                found.add((c_lab, c_type, c_machine))
        return sorted(found)

    def __len__(self) -> int:
        return len(self.by_key)
