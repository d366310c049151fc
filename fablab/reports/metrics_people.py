"""People metrics (P1–P7) from the :class:`~fablab.reports.models.MemberDay` rollup.

Every count is of distinct pseudonymous subjects, computed from per-member month masks (see
:mod:`fablab.reports.metrics_grid`): a member active in two labs is one maker of the network, a member
active in two months is one maker of the quarter. Each cell's ``people`` is the number of distinct
members the figure rests on — the count itself for a count of members, the denominator's members for a
percentage, the makers for a median, the distinct members behind a count of visits or certifications —
which is what the threshold rule (disclosure rule 3) is applied to.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

from django.db.models import (
    Case,
    CharField,
    Count,
    DateField,
    Exists,
    ExpressionWrapper,
    IntegerField,
    Max,
    Min,
    OuterRef,
    Q,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Cast, Concat, ExtractMonth, Power

from fablab.members.models import Training

from .cells import Period
from .metrics_grid import Scope, count_by_period, merge_masks, month_mask, pct, period_bits
from .models import MemberDay

USE, TRAINING = MemberDay.Kind.USE, MemberDay.Kind.TRAINING

#: P7's window: a use on the training day up to 90 days after it counts.
TRAINING_TO_USE_DAYS = 90


def member_masks(scope: Scope) -> list[tuple[int, int, int | None, str, int]]:
    """``(subject, lab id, machine id, kind, month mask)`` for every member's activity in the year."""
    rows = (
        MemberDay.objects.filter(**scope.in_year())
        .values_list("subject", "lab", "machine", "kind")
        .annotate(mask=month_mask())
        .order_by()
    )
    return [(s, lab, machine, kind, int(mask or 0)) for s, lab, machine, kind, mask in rows]


def people_cells(scope: Scope, masks, machines: dict[int, tuple[str, str, str]]) -> None:
    """P1–P4 and P6–P7 (P5 and the demographic tables are in :mod:`fablab.reports.metrics_groups`)."""
    slug = scope.lab_slugs
    use = [(s, slug[lab], mask) for s, lab, _m, kind, mask in masks if kind == USE]
    lab_masks = merge_masks(((s, lab), mask) for s, lab, mask in use)
    net_masks = merge_masks((s, mask) for s, _lab, mask in use)
    _active_and_new(scope, lab_masks, net_masks)
    _returning(scope, lab_masks)
    _visits(scope, masks, machines)
    _trainings(scope)
    _training_to_use(scope)


def _labs(scope: Scope) -> list[str]:
    return ["", *sorted(scope.lab_slugs.values())]


def _active_and_new(scope: Scope, lab_masks: dict, net_masks: dict) -> None:
    """P1 active makers and P2 new makers (first ``use`` day anywhere in the network, in any year)."""
    active = count_by_period(((lab, m) for (_s, lab), m in lab_masks.items()), scope.periods)
    active.update(count_by_period((("", m) for m in net_masks.values()), scope.periods))
    in_year = MemberDay.objects.filter(kind=USE, **scope.in_year()).values("subject")
    firsts = dict(
        MemberDay.objects.filter(kind=USE, subject__in=in_year)
        .values_list("subject")
        .annotate(Min("day"))
        .order_by()
    )
    new: dict[tuple[str, Period], int] = defaultdict(int)
    everyone = [((s, lab), m) for (s, lab), m in lab_masks.items()] + [
        ((s, ""), m) for s, m in net_masks.items()
    ]
    for (s, lab), mask in everyone:
        first = firsts.get(s)
        if first is None or first.year != scope.year:
            continue
        for period in scope.periods:
            # Activity before the first day does not exist, so any month of the period at or after it
            # that the member was active in (at this lab) makes them new here in this period.
            if period.first_day <= first < period.end_day and mask & period_bits(period):
                new[lab, period] += 1
    for lab in _labs(scope):
        for period in scope.periods:
            n = active.get((lab, period), 0)
            scope.emit(period, "active_makers", n, lab=lab, people=n)
            k = new.get((lab, period), 0)
            scope.emit(period, "new_makers", k, lab=lab, people=k)


def _returning(scope: Scope, lab_masks: dict) -> None:
    """P3: makers active at the lab in the period and in the one before, over those of the one before.

    The period before the first quarter is the previous year's last quarter, and the year before is the
    previous year: both are read from the rollup, outside the scope's year.
    """
    prev_first = dt.date(scope.year - 1, 1, 1)
    prev_q4 = dt.date(scope.year - 1, 10, 1)
    prev_rows = (
        MemberDay.objects.filter(
            kind=USE, lab__in=scope.lab_ids, day__gte=prev_first, day__lt=scope.first_day
        )
        .values_list("subject", "lab")
        .annotate(
            q4=Max(Case(When(day__gte=prev_q4, then=Value(1)), default=Value(0), output_field=IntegerField()))
        )
        .order_by()
    )
    prev_year: dict[str, set[int]] = defaultdict(set)
    prev_last_quarter: dict[str, set[int]] = defaultdict(set)
    for s, lab, in_q4 in prev_rows:
        prev_year[scope.lab_slugs[lab]].add(s)
        if in_q4:
            prev_last_quarter[scope.lab_slugs[lab]].add(s)
    this: dict[tuple[str, Period], set[int]] = defaultdict(set)
    for (s, lab), mask in lab_masks.items():
        for period in scope.periods:
            if period.grain != "month" and mask & period_bits(period):
                this[lab, period].add(s)
    for lab in sorted(scope.lab_slugs.values()):
        for period in scope.periods:
            if period.grain == "month":
                continue
            before = period.previous()
            if before.year < scope.year:
                earlier = prev_last_quarter[lab] if before.quarter else prev_year[lab]
            else:
                earlier = this[lab, before]
            both = len(this[lab, period] & earlier)
            scope.emit(period, "returning_makers", both, lab=lab, people=both)
            scope.emit(period, "returning_rate", pct(both, len(earlier)), lab=lab, people=len(earlier))


def _visits(scope: Scope, masks, machines: dict[int, tuple[str, str, str]]) -> None:
    """P4: distinct (member, lab, day) with any activity; for a type, activity on a machine of that type.

    Visits add up over days and labs (the lab is part of what is counted), so the database counts them
    per month and the rest is sums; ``people`` is the distinct members behind them.
    """
    visit = Count(Concat(Cast("subject", CharField()), Value("|"), Cast("day", CharField())), distinct=True)
    base = MemberDay.objects.filter(**scope.in_year()).annotate(m=ExtractMonth("day"))
    monthly: dict[tuple[str, str], dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for lab, month, n in base.values_list("lab", "m").annotate(n=visit).order_by():
        monthly[scope.lab_slugs[lab], ""][month] += n
        monthly["", ""][month] += n
    typed = base.filter(machine__isnull=False).values_list("lab", "machine__machine_type__slug", "m")
    for lab, mtype, month, n in typed.annotate(n=visit).order_by():
        monthly[scope.lab_slugs[lab], mtype][month] += n

    slug = scope.lab_slugs
    by_lab = merge_masks(((s, (slug[lab], "")), mk) for s, lab, _m, _k, mk in masks)
    by_type = merge_masks(
        ((s, (slug[lab], machines[mach][1])), mk) for s, lab, mach, _k, mk in masks if mach in machines
    )
    by_network = merge_masks((s, mk) for s, *_rest, mk in masks)
    people = count_by_period(
        [(key, m) for (_s, key), m in (*by_lab.items(), *by_type.items())]
        + [(("", ""), m) for m in by_network.values()],
        scope.periods,
    )
    keys = {(lab, "") for lab in _labs(scope)} | set(monthly)
    for lab, mtype in sorted(keys):
        for period in scope.periods:
            n = sum(v for m, v in monthly[lab, mtype].items() if period_bits(period) & (1 << (m - 1)))
            scope.emit(
                period, "visits", n, lab=lab, machine_type=mtype, people=people.get(((lab, mtype), period), 0)
            )


def _trainings(scope: Scope) -> None:
    """P6 by training: certifications granted by attendance (rows that certified) and distinct trainees."""
    rows = (
        MemberDay.objects.filter(kind=TRAINING, training__isnull=False, **scope.in_year())
        .values_list("subject", "lab", "training")
        .annotate(
            mask=month_mask(),
            cmask=Sum(Power(Value(2), ExtractMonth("day") - 1), distinct=True, filter=Q(certified=True)),
        )
        .order_by()
    )
    rows = [(s, scope.lab_slugs[lab], t, int(m or 0), int(c or 0)) for s, lab, t, m, c in rows]
    certs = (
        MemberDay.objects.filter(kind=TRAINING, training__isnull=False, certified=True, **scope.in_year())
        .annotate(m=ExtractMonth("day"))
        .values_list("lab", "training", "m")
        .annotate(Count("id"))
        .order_by()
    )
    granted: dict[tuple[str, int], dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for lab, t, month, n in certs:
        granted[scope.lab_slugs[lab], t][month] += n
        granted["", t][month] += n
    names = dict(Training.objects.filter(pk__in={t for *_x, t, _m, _c in rows}).values_list("pk", "slug"))
    trainees, certified = {}, {}
    for cut in (lambda lab: lab, lambda lab: ""):
        merged = merge_masks(((s, cut(lab), t), m) for s, lab, t, m, _c in rows)
        trainees.update(count_by_period((((lab, t), m) for (_s, lab, t), m in merged.items()), scope.periods))
        merged = merge_masks(((s, cut(lab), t), c) for s, lab, t, _m, c in rows)
        certified.update(
            count_by_period((((lab, t), c) for (_s, lab, t), c in merged.items()), scope.periods)
        )
    seen = {(lab, t) for _s, lab, t, _m, _c in rows} | {("", t) for *_x, t, _m, _c in rows}
    for lab, t in sorted(seen, key=lambda k: (k[0], names[k[1]])):
        for period in scope.periods:
            where = {"lab": lab, "dimension": "training", "category": names[t]}
            n = sum(v for m, v in granted[lab, t].items() if period_bits(period) & (1 << (m - 1)))
            scope.emit(
                period, "certifications_granted", n, people=certified.get(((lab, t), period), 0), **where
            )
            k = trainees.get(((lab, t), period), 0)
            scope.emit(period, "trainees", k, people=k, **where)


def _training_to_use(scope: Scope) -> None:
    """P7 per lab and training, for the year: trainees with a ``use`` day on a machine that requires the
    training, anywhere in the network, from the training day to 90 days after it (either day included)."""
    window_end = ExpressionWrapper(
        OuterRef("day") + dt.timedelta(days=TRAINING_TO_USE_DAYS), output_field=DateField()
    )
    used = Exists(
        MemberDay.objects.filter(
            subject=OuterRef("subject"),
            kind=USE,
            machine__required_training=OuterRef("training"),
            day__gte=OuterRef("day"),
            day__lte=window_end,
        )
    )
    rows = (
        MemberDay.objects.filter(kind=TRAINING, training__isnull=False, **scope.in_year())
        .annotate(used=used)
        .values_list("lab", "training__slug")
        .annotate(n=Count("subject", distinct=True), k=Count("subject", distinct=True, filter=Q(used=True)))
        .order_by()
    )
    year = Period(scope.year)
    for lab, training, trainees, using in sorted((scope.lab_slugs[lab], *rest) for lab, *rest in rows):
        where = {"lab": lab, "dimension": "training", "category": training}
        scope.emit(year, "trainees_using_within_90_days", using, people=using, **where)
        scope.emit(year, "training_to_use", pct(using, trainees), people=trainees, **where)
