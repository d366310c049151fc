"""P5 (median hours per maker) and the tables by one personal attribute: user category (P8), gender (P9),
age band (P10) and initiative (P11), from the :class:`~fablab.reports.models.MemberDay` rollup.

Each member falls in exactly one category of a table in a period: the one on their **latest** ``use``
row of the period (at the lab, for a lab table) — their own answer as it stood then, and for the age
band the band at the time of that activity. So the makers per category add up to the active makers of
the same lab and period, which the secondary suppression relies on, and a member who changed their
answer during a quarter is not counted twice. A member without an answer (or without statistics
consent) is "not declared" (category ``""``), as is an answer outside the published categories.

The database returns one row per member, lab and quarter (their hours and their latest snapshot, as
one sortable ``day|gender|age band|user category|declared initiatives`` string); the grouping into
categories happens here, over members, never over their rows.
"""

from __future__ import annotations

import functools
import json
import statistics
from collections import Counter, defaultdict

from django.db.models import CharField, Max, Sum, Value
from django.db.models.functions import Cast, Concat

from fablab.trainings.models import Initiative

from .definitions import AGE_BANDS, GENDERS, USER_CATEGORIES
from .metrics_grid import (
    Scope,
    mask_counts,
    month_number,
    month_start,
    pct,
    quarter_number,
    quarter_start,
    shares_of,
)
from .models import MemberDay

USE = MemberDay.Kind.USE

SNAPSHOT = Concat(
    Cast("day", CharField()),
    Value("|"),
    "gender",
    Value("|"),
    "age_band",
    Value("|"),
    "user_category",
    Value("|"),
    Cast("declared_initiatives", CharField()),
    output_field=CharField(),
)


def _parse(snapshot: str) -> tuple[str, str, str, frozenset[int]]:
    """``(gender, age band, user category, declared initiative ids)`` from a :data:`SNAPSHOT` string."""
    return _parse_answers((snapshot or "")[11:])


@functools.lru_cache(maxsize=4096)
def _parse_answers(tail: str) -> tuple[str, str, str, frozenset[int]]:
    """The answers after the snapshot's day: few distinct ones, so each is parsed once."""
    gender, band, category, declared = (tail or "|||").split("|", 3)
    try:
        ids = frozenset(int(i) for i in json.loads(declared or "[]"))
    except (TypeError, ValueError):
        ids = frozenset()
    return (
        gender if gender in GENDERS else "",
        band if band in AGE_BANDS else "",
        category if category in USER_CATEGORIES else "",
        ids,
    )


def group_cells(scope: Scope) -> None:
    """P5, the lab tables by user category, gender, age band and initiative, and network × month tables."""
    rows = (
        MemberDay.objects.filter(kind=USE, **scope.in_year())
        .annotate(q=quarter_start())
        .values_list("subject", "lab", "q")
        .annotate(hours=Sum("used_h"), snap=Max(SNAPSHOT))
        .order_by()
    )
    # (lab, period index) → subject → [hours, latest snapshot]
    members: dict[tuple[str, int], dict[int, list]] = defaultdict(dict)
    for s, lab, q, hours, snap in rows:
        lab = scope.lab_slugs[lab]
        for period in (scope.quarter(quarter_number(q)), scope.YEAR):
            entry = members[lab, period].setdefault(s, [0.0, ""])
            entry[0] += float(hours or 0)
            entry[1] = max(entry[1], snap or "")
    participation = _participation(scope)
    coarse = scope.coarse
    declared = {
        lab: {i for p in coarse for _h, snap in members[lab, p].values() for i in _parse(snap)[3]}
        for lab in scope.lab_slugs.values()
    }
    slugs = _initiative_slugs({i for (_lab, _p, i) in participation} | set().union(*declared.values()))
    for lab in sorted(scope.lab_slugs.values()):
        # The initiatives of a lab's table: those it had participants in, or active makers declaring them.
        ids = {i for (lb, _p, i) in participation if lb == lab} | declared[lab]
        lab_slugs = {i: slugs[i] for i in ids if i in slugs}
        for period in coarse:
            group = {s: (h, _parse(snap)) for s, (h, snap) in members[lab, period].items()}
            hours = [h for h, _snap in group.values()]
            median = statistics.median(hours) if hours else None
            scope.emit(period, "median_hours_per_maker", median, lab=lab, people=len(hours))
            for index, dimension in ((0, "gender"), (1, "age_band")):
                _demographic(scope, period, lab, dimension, [snap[index] for _h, snap in group.values()])
            _user_categories(scope, period, lab, group)
            _initiatives(scope, period, lab, group, participation, lab_slugs)
    _network_months(scope)


def _demographic(scope: Scope, period: int, lab: str, dimension: str, answers: list[str]) -> None:
    """Makers per category (incl. not declared) and the declared coverage (category "")."""
    categories = GENDERS if dimension == "gender" else AGE_BANDS
    tally = Counter(answers)
    for category in categories:
        n = tally[category]
        scope.emit(period, "makers", n, lab=lab, dimension=dimension, category=category, people=n)
    declared = len(answers) - tally[""]
    scope.emit(
        period,
        "declared_coverage",
        pct(declared, len(answers)),
        lab=lab,
        dimension=dimension,
        category="",
        people=len(answers),
    )


def _user_categories(scope: Scope, period: int, lab: str, group: dict) -> None:
    """P8: makers and their used hours per user category (hours with each maker's share, rule 4)."""
    for category in USER_CATEGORIES:
        hours = [h for h, snap in group.values() if snap[2] == category]
        where = {"lab": lab, "dimension": "user_category", "category": category, "people": len(hours)}
        scope.emit(period, "makers", len(hours), **where)
        scope.emit(period, "category_hours", sum(hours), shares=shares_of(hours), **where)


def _participation(scope: Scope) -> dict[tuple[str, int, int], dict[int, float]]:
    """``{(lab, period, initiative id): {subject: used hours}}`` over rows of any kind tagged with it."""
    rows = (
        MemberDay.objects.filter(initiative__isnull=False, **scope.in_year())
        .annotate(q=quarter_start())
        .values_list("subject", "lab", "q", "initiative")
        .annotate(Sum("used_h"))
        .order_by()
    )
    out: dict[tuple[str, int, int], dict[int, float]] = defaultdict(lambda: defaultdict(float))
    for s, lab, q, initiative, hours in rows:
        lab = scope.lab_slugs[lab]
        for period in (scope.quarter(quarter_number(q)), scope.YEAR):
            out[lab, period, initiative][s] += float(hours or 0)
    return out


def _initiatives(scope: Scope, period: int, lab: str, group: dict, participation, slugs) -> None:
    """P11 per initiative: participants, their used hours in the initiative's rows (with shares), and the
    active makers who declared taking part."""
    for initiative in sorted(slugs, key=slugs.get):
        hours = participation.get((lab, period, initiative), {})
        where = {"lab": lab, "dimension": "initiative", "category": slugs[initiative]}
        scope.emit(period, "participants", len(hours), people=len(hours), **where)
        scope.emit(
            period,
            "category_hours",
            sum(hours.values()),
            people=len(hours),
            shares=shares_of(hours.values()),
            **where,
        )
        declared = sum(1 for _h, snap in group.values() if initiative in snap[3])
        scope.emit(period, "declared_participants", declared, people=declared, **where)


def _initiative_slugs(ids: set[int]) -> dict[int, str]:
    """Initiative id → slug for those that still exist (a declared id of a deleted one is dropped)."""
    return dict(Initiative.objects.filter(pk__in=ids).values_list("pk", "slug")) if ids else {}


#: The network × month tables need only the two demographics: ``day|gender|age band``.
SHORT_SNAPSHOT = Concat(
    Cast("day", CharField()), Value("|"), "gender", Value("|"), "age_band", output_field=CharField()
)


def _network_months(scope: Scope) -> None:
    """Gender and age band for the network per month: each member once, whichever labs they used.

    The database counts the members per month and latest answer (the tail of their latest snapshot).
    """
    per_member = (
        MemberDay.objects.filter(kind=USE, **scope.in_year())
        .annotate(m=month_start())
        .values("subject", "m")
        .annotate(snap=Max(SHORT_SNAPSHOT))
    )
    answers: dict[int, list[tuple[str, str, int]]] = defaultdict(list)
    for month, tail, n in mask_counts(per_member, "m", "SUBSTR(snap, 12)"):
        gender, _sep, band = (tail or "|").partition("|")
        answers[month_number(month)].append(
            (gender if gender in GENDERS else "", band if band in AGE_BANDS else "", n)
        )
    for month in range(1, 13):
        period = scope.month(month)
        for index, dimension in ((0, "gender"), (1, "age_band")):
            _demographic(
                scope, period, "", dimension, [a[index] for a in answers[month] for _ in range(a[2])]
            )
