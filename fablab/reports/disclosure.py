"""Disclosure control: the one module every report output goes through (pages, CSV, XLSX, API, open data),
for every viewer, lab managers included.

:func:`protect` takes the *raw* cells of a whole calendar year for one scope (``metrics.year_cells``) and
returns the same cells with the suppressed ones flagged ``c`` (their value stays inside the cell for the
reports package; :meth:`Cell.public` blanks it), the utilisation of machines with one or two users turned
into 25-point bands, and cells off the fixed grid dropped. It is deterministic and idempotent: protecting
protected cells changes nothing. It runs on the whole year at once, so that the suppression pattern is
the same whichever slice (period, level, lab) is shown or downloaded.

The rules (the numbers are those of the reports' disclosure rules, see ``docs/reports.md``):

* **Rule 3, threshold** — a figure about people (a count of people, or a percentage, median or hour total
  resting on people) needs at least 10 distinct people; 1–9 is suppressed, 0 is a true zero and shown.
* **Rule 4, dominance** — an hour total split by a personal attribute is suppressed when one person gives
  more than 50 % of it, or two people more than 67 %.
* **Rule 5, machine cells** — booking and use figures of a machine with 1–2 distinct users in the period
  are suppressed, except its booking and usage utilisation, which are shown as 25-point bands (when a band
  spans less than an hour of available time it would pin the hours down, so it is suppressed instead).
  Equipment figures (open hours, downtime, availability) are always shown. *Decision:* the rule applies
  at every level, not only per machine: a machine type (or lab) whose figures rest on one or two users
  describes those users as much as a machine does (no-show, late-cancellation and walk-in figures exist
  from the type level up, so this is where they need it), which is what a statistics office would do.
* **Rule 6, secondary suppression** — the figures an officer can download add up: machines to their type,
  types to their lab, labs to the network; months to their quarter, quarters to the year; the categories of
  an exclusive breakdown (gender, age band, user category, weekday × hour, training) to the table total;
  and a percentage gives its hours or count away beside its denominator. Each of these is a relation
  here; while a relation would let a hidden figure be solved for (exactly one hidden member, or hidden
  members worth less than :data:`MARGIN` together), the next smallest shown member is hidden too ("not
  declared" and "another" first in a demographic table). A category hidden in one period of a table is
  hidden in every period of that table in the year, so that comparing periods reveals nothing.
  *Decision:* whenever a lab's figure is hidden, the network's is hidden too, rather than another lab's.
  A lab's pattern then never depends on which other labs are in the viewer's scope, so an officer who
  compares their programme's report with another scope or with the open data learns nothing more, and
  the network figures only hide what some lab hides. Relations inside a lab are settled before the
  network's (a priority queue), which keeps this true. Relations that share hidden figures can still pin
  one down together, so an exact audit of the whole pattern follows (:mod:`.disclosure_audit`): while
  the relations together determine a hidden figure, one more member of its relations is hidden.
* **Rule 7** — a demographic breakdown only on the grid its dimension allows; other cells are dropped.
* **Rule 9, open data** — the same protection as the reports (so that the two can be put side by side
  safely), then only the network and lab × year tables without the weekday × hour heatmap, every count
  1–9 suppressed and the others rounded to base 5. *Decision:* a percentage of two counts is recomputed
  from the rounded, published counts (so it tells nothing they do not) and suppressed when either is;
  the returning rate, whose denominator lies in the year before, is left out of the open data.
"""

from __future__ import annotations

import functools
import gc
import heapq
import math
from collections import defaultdict
from collections.abc import Iterable

from django.utils.translation import gettext_lazy as _

from . import disclosure_audit
from .cells import PROVISIONAL, SUPPRESSED, Cell, Period
from .definitions import COUNT, DIMENSIONS, METRICS, RATIOS

THRESHOLD = 10
MACHINE_MIN_USERS = 3
DOMINANCE_ONE, DOMINANCE_TWO = 0.5, 0.67
BAND = 25
BAND_UNIT = "% band"
BANDED = ("booking_utilisation", "usage_utilisation")
OPEN_DATA_BASE = 5
#: The hidden members of a relation must be worth at least this much together (by unit), so that what
#: a reader can solve for stays a range at least this wide. An hour, or one person or booking.
MARGIN = {"h": 1.0, COUNT: 1.0, "kWh": 1.0}

# Reasons a cell was suppressed (or banded, or dropped), the keys of SUPPRESSION_NOTES.
THRESHOLD_RULE = "threshold"
DOMINANCE_RULE = "dominance"
MACHINE_RULE = "machine_users"
BAND_RULE = "band"
SECONDARY_RULE = "secondary"
PATTERN_RULE = "pattern"
GRID_RULE = "grid"
OPEN_DATA_RULE = "open_data"

SUPPRESSION_NOTES = {
    SUPPRESSED: _(
        "Flag c: the value is withheld (empty, or “<10” or “•” on the pages) so that nobody can be recognised in it."
    ),
    PROVISIONAL: _("Flag p: provisional, the period is still running and the figure will change."),
    THRESHOLD_RULE: _(
        "Fewer than 10 people: a count of people, or a percentage, median or hour total resting on fewer than 10 distinct people, is withheld. A zero is shown."
    ),
    DOMINANCE_RULE: _(
        "Dominance: an hour total split by a personal attribute is withheld when one person gives more than half of it, or two people more than two thirds."
    ),
    MACHINE_RULE: _(
        "Few users: the booking and use figures of a machine, machine type or lab with only one or two distinct users in the period are withheld."
    ),
    BAND_RULE: _(
        "Banded: with only one or two users, booking and usage utilisation are shown as 25-point bands (unit “% band”, the value is the lower bound: 0, 25, 50 or 75)."
    ),
    SECONDARY_RULE: _(
        "Withheld with another figure: it would let a withheld figure be worked out from a total, a neighbouring period, a coarser table or a percentage."
    ),
    PATTERN_RULE: _(
        "Withheld in every period of the year because the same category had to be withheld in one of them, so that comparing periods reveals nothing."
    ),
    GRID_RULE: _(
        "Not published: a personal characteristic is shown only by lab and quarter or by network and month, never crossed with a machine or another characteristic."
    ),
    OPEN_DATA_RULE: _(
        "Open data: counts are rounded to the nearest 5 and counts from 1 to 9 are withheld; percentages of counts are computed from the rounded counts."
    ),
}

#: Percentages of two counts: recomputed from the rounded counts in the open data.
_COUNT_RATIOS = {
    name for name, r in RATIOS.items() if r.whole and METRICS[r.part].unit == METRICS[r.whole].unit == COUNT
}
_NOT_OPEN = ("returning_rate",)

# Beyond the metrics marked additive: figures that add up exactly over time (their events or days fall
# in one period only) and, for visits and certifications, over labs (the lab is part of what is counted).
_TEMPORAL_TOO = {"visits", "new_makers", "certifications_granted", "category_hours"}
_LAB_ADDITIVE = {"visits", "certifications_granted"}
#: Breakdowns whose categories do not overlap, with the metric of their table total (``None``: the
#: total is not published as a cell, but a reader may know it, so it counts as shown).
_EXCLUSIVE = {
    ("gender", "makers"): "active_makers",
    ("age_band", "makers"): "active_makers",
    ("user_category", "makers"): "active_makers",
    # Members' hours are the lab's used hours but for sessions tied to nobody: close enough to treat the
    # lab's used hours as the total a reader would subtract from.
    ("user_category", "category_hours"): "used_hours",
    ("weekday_hour", "used_hours"): "used_hours",
    ("training", "certifications_granted"): "certifications_granted",
}
#: Categories hidden first in a demographic table ("merge into not declared / another").
_PREFERRED = ("", "another")


def _kind(metric: str) -> str:
    m = METRICS.get(metric)
    return m.kind if m else "people"


def _on_grid(cell: Cell) -> bool:
    """Rule 7: a demographic breakdown only on the (level, grain) grid of its dimension."""
    dim = DIMENSIONS.get(cell.dimension)
    if dim is None or not dim["demographic"]:
        return True
    return (cell.level, _grain(cell.period)) in dim["grid"]


@functools.lru_cache(maxsize=256)
def _parse(period: str) -> Period:
    return Period.parse(period)


def _grain(period: str) -> str:
    return _parse(period).grain


@functools.lru_cache(maxsize=256)
def _parent_period(period: str) -> str:
    """The quarter of a month, the year of a quarter, "" for a year."""
    p = _parse(period)
    if p.month:
        return str(Period(p.year, quarter=(p.month - 1) // 3 + 1))
    return str(p.year) if p.quarter else ""


_FIELDS = {
    name: i
    for i, name in enumerate(("period", "lab", "machine_type", "machine", "dimension", "category", "metric"))
}


def _with_key(key: tuple, **changes) -> tuple:
    """The key of the cell like ``key`` but for the given public fields (period, lab, …, metric)."""
    out = list(key)
    for name, value in changes.items():
        out[_FIELDS[name]] = value
    return tuple(out)


def _evolve(cell: Cell, **changes) -> Cell:
    """``cell.replace(**changes)`` without the dataclass machinery (a year has 100,000 cells)."""
    new = object.__new__(Cell)
    new.__dict__.update(cell.__dict__, **changes)
    return new


def _users(cell: Cell, by_key: dict) -> int | None:
    """The distinct users a machine-kind figure rests on (a breakdown's from its table total)."""
    if cell.users is not None or not cell.dimension:
        return cell.users
    total = by_key.get(_with_key(cell.key, dimension="", category=""))
    return total.users if total else None


def _primary(cell: Cell, by_key: dict) -> str | None:
    """Rules 3–5 for one cell: the reason it is suppressed (or banded), or ``None`` to show it."""
    kind = _kind(cell.metric)
    if kind in ("people", "people_hours"):
        people = cell.people
        if people is None:  # unknown: only an empty figure can be shown
            people = 0 if not cell.value else 1
        if 0 < people < THRESHOLD:
            return THRESHOLD_RULE
        shares = cell.shares
        if kind == "people_hours" and shares:
            top_two = shares[0] + (shares[1] if len(shares) > 1 else 0)
            if shares[0] > DOMINANCE_ONE or top_two > DOMINANCE_TWO:
                return DOMINANCE_RULE
        return None
    if kind == "machine":
        users = _users(cell, by_key)
        if users is None or not 0 < users < MACHINE_MIN_USERS:
            return None
        if cell.metric in BANDED and cell.value is not None and not cell.suppressed:
            net = by_key.get(_with_key(cell.key, metric="net_available_hours"))
            if net is not None and (net.value or 0) * BAND / 100 >= MARGIN["h"]:
                return BAND_RULE
        return MACHINE_RULE
    return None


def _band(value: float) -> float:
    return float(min(100 - BAND, math.floor(value / BAND) * BAND))


def _ratio_members(key: tuple, cell: Cell) -> tuple[tuple, tuple | None] | None:
    """A percentage's numerator and denominator keys (``None`` for an unpublished denominator), or
    ``None`` when the cell is no percentage of two figures."""
    if cell.metric == "declared_coverage":
        num = _with_key(key, metric="makers", category="")
        return num, _with_key(key, metric="active_makers", dimension="", category="")
    r = RATIOS.get(cell.metric)
    if r is None:
        return None
    den = r.whole and _with_key(key, metric=r.whole)
    if cell.metric == "returning_rate":
        den = _with_key(key, metric="active_makers", period=str(_parse(cell.period).previous()))
    return _with_key(key, metric=r.part), den


class _Relation:
    """Cells an officer can combine. ``total`` is a cell key, ``None`` (a total the reader may know
    although it is not published) or absent for a ratio; ``rank`` orders lab-internal relations before
    the network's; ``prefer_total``: hide the total rather than another member."""

    __slots__ = ("exact", "kind", "parts", "prefer_total", "preferred", "rank", "total")

    def __init__(self, kind, total, parts, rank, prefer_total=False, preferred=(), exact=True):
        self.kind, self.total, self.parts, self.rank = kind, total, parts, rank
        self.prefer_total, self.preferred, self.exact = prefer_total, preferred, exact


class _Protector:
    def __init__(self, cells: list[Cell]):
        self.by_key = {cell.key: cell for cell in cells}
        self.reasons: dict[tuple, str] = {}
        self.hidden: set[tuple] = set()
        self.banded: set[tuple] = set()
        self.relations: list[_Relation] = []
        self.member_of: dict[tuple, list[int]] = defaultdict(list)
        #: The sum of a breakdown's categories in one period: a table of zeros has nobody to protect.
        self.table_sum: dict[tuple, float] = {}

    # --- state ---------------------------------------------------------------------------------------
    def value(self, key) -> float:
        return float(self.by_key[key].value or 0)

    def margin(self, key) -> float:
        return MARGIN.get(self.by_key[key].unit, 1.0)

    def hideable(self, key) -> bool:
        return key not in self.hidden and _kind(key[6]) != "equipment"

    def fuzzy(self, key) -> bool:
        return key in self.hidden or key in self.banded

    # --- primary -------------------------------------------------------------------------------------
    def primary(self) -> None:
        for key, cell in self.by_key.items():
            reason = _primary(cell, self.by_key)
            if reason == BAND_RULE:
                self.banded.add(key)
                self.reasons[key] = reason
            elif reason:
                self.hidden.add(key)
                self.reasons[key] = reason
            elif cell.suppressed:  # protected before: keep it so (idempotence)
                self.hidden.add(key)
                self.reasons[key] = SECONDARY_RULE

    # --- relations -----------------------------------------------------------------------------------
    def add(self, relation: _Relation) -> None:
        index = len(self.relations)
        self.relations.append(relation)
        for key in (relation.total, *relation.parts):
            if key is not None:
                self.member_of[key].append(index)

    def build(self) -> None:
        spatial, temporal, exclusive, stable = (defaultdict(list) for _ in range(4))
        for key, cell in self.by_key.items():
            metric = METRICS.get(cell.metric)
            additive = bool(metric and metric.additive)
            level = cell.level
            if additive or (cell.metric in _LAB_ADDITIVE and level == "lab"):
                parent = {
                    "machine": {"machine": ""},
                    "machine_type": {"machine_type": ""},
                    "lab": {"lab": ""},
                }.get(level)
                if parent:
                    spatial[_with_key(key, **parent)].append(key)
            if additive or cell.metric in _TEMPORAL_TOO:
                up = _parent_period(cell.period)
                if up:
                    temporal[_with_key(key, period=up)].append(key)
            if cell.dimension and (cell.dimension, cell.metric) in _EXCLUSIVE:
                total = _EXCLUSIVE[(cell.dimension, cell.metric)]
                total_key = total and _with_key(key, dimension="", category="", metric=total)
                exclusive[(key[:5], total_key)].append(key)
            if cell.dimension and _kind(cell.metric) != "machine" and cell.dimension != "weekday_hour":
                stable[key[1:]].append(key)
                table = (*key[:5], key[6])
                self.table_sum[table] = self.table_sum.get(table, 0.0) + abs(cell.value or 0)
        for total, parts in spatial.items():
            if total in self.by_key:
                network = not total[1]
                self.add(_Relation("sum", total, parts, 1 if network else 0, prefer_total=network))
        for total, parts in temporal.items():
            if total in self.by_key:
                self.add(_Relation("sum", total, parts, 2 if not total[1] else 0))
        for (_table, total), parts in exclusive.items():
            if total is not None and total not in self.by_key:
                continue
            cats = sorted((k for k in parts if k[5] in _PREFERRED), key=lambda k: _PREFERRED.index(k[5]))
            exact = parts[0][6] != "category_hours"  # members' hours: close to the used hours only
            rank = 2 if not parts[0][1] else 0
            self.add(_Relation("sum", total, parts, rank, preferred=tuple(cats), exact=exact))
        for parts in stable.values():
            if len(parts) > 1:
                self.add(_Relation("stable", None, parts, 2 if not parts[0][1] else 0))
        for key, cell in self.by_key.items():
            self.ratio(key, cell)

    def ratio(self, key, cell) -> None:
        pair = _ratio_members(key, cell)
        if pair is None:
            return
        members = [k for k in (key, *pair) if k and k in self.by_key]
        if len(members) > 1:
            self.add(_Relation("ratio", None, members, 2 if not key[1] else 0))

    # --- secondary -----------------------------------------------------------------------------------
    def unsafe(self, rel: _Relation) -> list[tuple]:
        """The members to hide next for ``rel`` to let no hidden member be solved for."""
        if rel.kind == "stable":
            if any(k in self.hidden for k in rel.parts):
                return [k for k in rel.parts if self.hideable(k) and self.table_sum[(*k[:5], k[6])]]
            return []
        if rel.kind == "ratio":
            if self.by_key[rel.parts[0]].value is None:
                return []  # the percentage has no denominator: nothing to give away
            fuzzy = [k for k in rel.parts if self.fuzzy(k)]
            if len(fuzzy) != 1:
                return []
            return [k for k in rel.parts if self.hideable(k) and k not in self.banded][:1]
        parts_hidden = [k for k in rel.parts if k in self.hidden]
        total = rel.total
        if total is not None and total in self.hidden:
            if parts_hidden:
                return []
            need = margin = MARGIN.get(self.by_key[rel.parts[0]].unit, 1.0)
        else:
            if not parts_hidden:
                return []
            if rel.prefer_total and total is not None and self.hideable(total):
                # Labs to the network: two hidden labs beside a shown network total still give their
                # sum away, which the other relations can split (a lab's year minus its shown quarters).
                return [total]
            margin = MARGIN.get(self.by_key[rel.parts[0]].unit, 1.0)
            hidden_sum = sum(self.value(k) for k in parts_hidden)
            if len(parts_hidden) > 1 and hidden_sum >= margin - 1e-9:
                return []
            need = max(margin - hidden_sum, 1e-9)
        # A zero protects nothing: it is usually pinned down elsewhere (an empty month, a machine nobody
        # used), and hiding it would only hide a figure a reader can still work out.
        shown = [k for k in rel.parts if self.hideable(k) and self.value(k) > 0]
        if shown:
            preferred = [k for k in rel.preferred if k in shown]
            return [
                min(
                    shown,
                    key=lambda k: (
                        self.value(k) < need,
                        self.value(k) < margin,
                        k not in preferred,
                        self.value(k),
                        k,
                    ),
                )
            ]
        if total is not None and self.hideable(total):
            return [total]
        return []

    def secondary(self, seeds: Iterable[tuple] | None = None) -> None:
        """The relation-by-relation heuristic, from every hidden or banded cell (or only ``seeds``,
        cells hidden since it last ran)."""
        queued = set()
        heap = []

        def enqueue(index):
            if index not in queued:
                queued.add(index)
                heapq.heappush(heap, (self.relations[index].rank, index))

        for key in sorted(self.hidden | self.banded if seeds is None else seeds):
            for index in self.member_of.get(key, ()):
                enqueue(index)
        while heap:
            _, index = heapq.heappop(heap)
            queued.discard(index)
            rel = self.relations[index]
            for key in self.unsafe(rel):
                self.hidden.add(key)
                self.reasons[key] = PATTERN_RULE if rel.kind == "stable" else SECONDARY_RULE
                for other in self.member_of.get(key, ()):
                    enqueue(other)

    def audited(self) -> None:
        """The heuristic, then the exact audit of the whole hidden pattern
        (:mod:`~fablab.reports.disclosure_audit`): while a hidden cell can be solved for from the
        relations together, one more member of its relations is hidden and the heuristic runs again."""
        self.secondary()
        while True:
            more, fixed = [], set()
            for key, component in disclosure_audit.audit(self, _ratio_members, BAND):
                if component[0] in fixed:
                    continue  # one more cell per component and round: it may free the others too
                own = self.member_of.get(key, ())
                for pick in (
                    disclosure_audit.candidates(self, own),
                    disclosure_audit.candidates(self, component),
                    disclosure_audit.candidates(self, own, zeros=True),
                    disclosure_audit.candidates(self, component, zeros=True),
                ):
                    if pick:
                        more.append(pick[0])
                        fixed.add(component[0])
                        break
            if not more:
                return
            for key in more:
                self.hidden.add(key)
                self.reasons[key] = SECONDARY_RULE
            self.secondary(more)

    # --- output --------------------------------------------------------------------------------------
    def cells(self, cells: list[Cell]) -> list[Cell]:
        out = []
        for cell in cells:
            key = cell.key
            if key in self.hidden:
                if not cell.suppressed:  # one protected before keeps the rule that hid it
                    cell = _evolve(
                        cell, obs_status=SUPPRESSED + cell.obs_status, withheld_by=self.reasons[key]
                    )
            elif key in self.banded and cell.unit != BAND_UNIT:
                cell = _evolve(cell, value=_band(cell.value), unit=BAND_UNIT)
            out.append(cell)
        return out


def _run(cells: list[Cell], reasons: dict) -> list[Cell]:
    protector = _Protector(cells)
    protector.primary()
    protector.build()
    protector.audited()
    for key, reason in protector.reasons.items():
        reasons.setdefault(key, reason)  # a cell protected before keeps the rule that hid it
    return protector.cells(cells)


def protect_with_reasons(
    cells: Iterable[Cell], *, open_data: bool = False
) -> tuple[list[Cell], dict[tuple, str]]:
    """:func:`protect`, plus why each cell was suppressed, banded or dropped: ``{cell key: rule}`` with
    the keys of :data:`SUPPRESSION_NOTES`. The reasons are internal (they are for the notes' counts)."""
    # A year is some 100,000 cells and as many relation tuples, none of them in a reference cycle: the
    # cyclic garbage collector, set off again and again by so many new objects, would double the time.
    collecting = gc.isenabled()
    gc.disable()
    try:
        cells = list(cells)
        reasons = {cell.key: GRID_RULE for cell in cells if not _on_grid(cell)}
        out = _run([cell for cell in cells if cell.key not in reasons], reasons)
        if open_data:
            out = _open_data(out, reasons)
        return out, reasons
    finally:
        if collecting:
            gc.enable()


def protect(cells: Iterable[Cell], *, open_data: bool = False) -> list[Cell]:
    """The cells of a year, protected by the disclosure rules (see the module docstring)."""
    return protect_with_reasons(cells, open_data=open_data)[0]


def _round(value: float) -> float:
    return float(math.floor(value / OPEN_DATA_BASE + 0.5) * OPEN_DATA_BASE)


def _open_data(cells: list[Cell], reasons: dict) -> list[Cell]:
    """Rule 9 on protected cells: network and lab × year only, no heatmap; counts 1–9 suppressed, the
    others rounded to base 5, and what the new suppressions give away suppressed too (so that protecting
    open data again changes nothing); percentages of counts recomputed from the rounded counts."""
    kept = []
    for cell in cells:
        if cell.level not in ("network", "lab") or _grain(cell.period) != "year":
            continue
        if cell.dimension == "weekday_hour" or cell.metric in _NOT_OPEN:
            continue
        if cell.unit == COUNT and not cell.suppressed and cell.value is not None:
            if 0 < cell.value < THRESHOLD:
                reasons[cell.key] = OPEN_DATA_RULE
                cell = _evolve(cell, obs_status=SUPPRESSED + cell.obs_status, withheld_by=OPEN_DATA_RULE)
            else:
                cell = cell.replace(value=_round(cell.value))
        kept.append(cell)
    kept = {cell.key: cell for cell in _run(kept, reasons)}
    for key, cell in kept.items():
        if cell.metric not in _COUNT_RATIOS or cell.suppressed:
            continue
        r = RATIOS[cell.metric]
        num = kept.get(_with_key(key, metric=r.part))
        den = kept.get(_with_key(key, metric=r.whole))
        if num is None or den is None or num.suppressed or den.suppressed:
            reasons[key] = OPEN_DATA_RULE
            kept[key] = cell.replace(obs_status=SUPPRESSED + cell.obs_status, withheld_by=OPEN_DATA_RULE)
        else:
            value = round(100 * num.value / den.value, 1) if den.value else None
            kept[key] = cell.replace(value=value)
    return list(kept.values())


def summary(cells: Iterable[Cell], reasons: dict | None = None) -> dict[str, int]:
    """How many of ``cells`` (protected) were suppressed or banded, by rule: ``{rule: count}``.

    With the ``reasons`` of :func:`protect_with_reasons`, or the rule each suppressed cell carries
    (``withheld_by``), the counts are exact; only for a cell without either are the primary rules
    recomputed, any other suppression counting as secondary (which would fold the pattern rule into it).
    """
    cells = list(cells)
    by_key = {cell.key: cell for cell in cells}
    counts: dict[str, int] = {}
    for cell in cells:
        if not cell.suppressed and cell.unit != BAND_UNIT:
            continue
        if reasons is not None and cell.key in reasons:
            reason = reasons[cell.key]
        elif cell.suppressed and cell.withheld_by:
            reason = cell.withheld_by
        elif cell.unit == BAND_UNIT:
            reason = BAND_RULE
        else:
            reason = _primary(cell.replace(obs_status=""), by_key)
            reason = reason if reason and reason != BAND_RULE else SECONDARY_RULE
        counts[reason] = counts.get(reason, 0) + 1
    return counts
