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
from dataclasses import dataclass

from django.db.models import (
    BigIntegerField,
    Case,
    Count,
    DateField,
    Exists,
    ExpressionWrapper,
    F,
    IntegerField,
    Max,
    Min,
    OuterRef,
    Q,
    Value,
    When,
)
from django.db.models.functions import Cast, ExtractDay

from fablab.members.models import Training

from .metrics_grid import MonthMask, Scope, mask_counts, merge_masks, month_number, month_start, pct
from .models import MemberDay

USE, TRAINING = MemberDay.Kind.USE, MemberDay.Kind.TRAINING

#: P7's window: a use on the training day up to 90 days after it counts.
TRAINING_TO_USE_DAYS = 90


@dataclass
class Population:
    """Who was active where in the year, as month masks (see :mod:`fablab.reports.metrics_grid`).

    ``by_lab``: ``{(subject, lab slug): (use mask, any-activity mask)}``, one entry per member and lab —
    what the lab and network counts of people (P1–P4) and the machine tables' lab and network ``users``
    rest on. ``users``: ``{((lab, type, machine), period): distinct users}`` at every machine level.
    ``type_people``: ``{((lab, type), period): distinct members active on the type's machines}`` (P4).
    """

    by_lab: dict[tuple[int, str], tuple[int, int]]
    users: dict
    type_people: dict


def population(scope: Scope, machines: dict[int, tuple[str, str, str]]) -> Population:
    """Three grouping queries, whatever the number of members: per member and lab; per machine and
    per type within a lab, counted by the database per month mask."""
    year = MemberDay.objects.filter(**scope.in_year())
    by_lab = {
        (s, scope.lab_slugs[lab]): (int(use or 0), int(any_ or 0))
        for s, lab, use, any_ in year.values_list("subject", "lab")
        .annotate(use_mask=MonthMask(filter=Q(kind=USE)), any_mask=MonthMask())
        .order_by()
    }
    per_machine = year.filter(kind=USE, machine__isnull=False).values("machine", "subject")
    rows = mask_counts(per_machine.annotate(mask=MonthMask()), "machine", "mask")
    users = scope.count((machines[m], mask, n) for m, mask, n in rows if m in machines)
    per_type = year.filter(machine__isnull=False).values(
        "lab", "subject", mtype=F("machine__machine_type__slug")
    )
    per_type = per_type.annotate(use_mask=MonthMask(filter=Q(kind=USE)), any_mask=MonthMask())
    rows = [
        (scope.lab_slugs[lab], mtype, use, any_, n)
        for lab, mtype, use, any_, n in mask_counts(per_type, "lab", "mtype", "use_mask", "any_mask")
    ]
    users.update(scope.count(((lab, mtype, ""), use, n) for lab, mtype, use, _a, n in rows))
    type_people = scope.count(((lab, mtype), any_, n) for lab, mtype, _u, any_, n in rows)
    users.update(scope.count(((lab, "", ""), use, 1) for (_s, lab), (use, _a) in by_lab.items()))
    network = merge_masks((s, use) for (s, _lab), (use, _a) in by_lab.items())
    users.update(scope.count((("", "", ""), use, 1) for use in network.values()))
    return Population(by_lab=by_lab, users=users, type_people=type_people)


def people_cells(scope: Scope, people: Population) -> None:
    """P1–P4 and P6–P7 (P5 and the tables by a personal attribute are in :mod:`.metrics_groups`)."""
    use_by_lab = {key: use for key, (use, _a) in people.by_lab.items() if use}
    _active_and_new(scope, use_by_lab)
    _returning(scope, use_by_lab)
    _visits(scope, people)
    _trainings(scope)
    _training_to_use(scope)


def _active_and_new(scope: Scope, use_by_lab: dict) -> None:
    """P1 active makers and P2 new makers (first ``use`` day anywhere in the network, in any year)."""
    network = merge_masks((s, mask) for (s, _lab), mask in use_by_lab.items())
    active = scope.count((lab, mask, 1) for (_s, lab), mask in use_by_lab.items())
    active.update(scope.count(("", mask, 1) for mask in network.values()))
    in_year = MemberDay.objects.filter(kind=USE, **scope.in_year()).values("subject")
    firsts = dict(
        MemberDay.objects.filter(kind=USE, subject__in=in_year)
        .values_list("subject")
        .annotate(first=Min("day"))
        .filter(first__gte=scope.first_day)
        .order_by()
    )
    new: dict[tuple[str, int], int] = defaultdict(int)
    everyone = [*use_by_lab.items(), *(((s, ""), mask) for s, mask in network.items())]
    for (s, lab), mask in everyone:
        first = firsts.get(s)
        if first is None:
            continue
        for i in scope.covers(mask):
            # No activity lies before the first day, so activity in the period (at this lab) together
            # with a first day inside it makes the member new here in this period.
            if scope.periods[i].first_day <= first < scope.periods[i].end_day:
                new[lab, i] += 1
    for lab in scope.labs():
        for i in range(len(scope.periods)):
            n = active.get((lab, i), 0)
            scope.emit(i, "active_makers", n, lab=lab, people=n)
            k = new.get((lab, i), 0)
            scope.emit(i, "new_makers", k, lab=lab, people=k)


def _returning(scope: Scope, use_by_lab: dict) -> None:
    """P3: makers active at the lab in the period and in the one before, over those of the one before.

    The period before the first quarter is the previous year's last quarter, and the year before is the
    previous year: both are read from the rollup, outside the scope's year.
    """
    prev_first = dt.date(scope.year - 1, 1, 1)
    prev_q4 = dt.date(scope.year - 1, 10, 1)
    in_q4 = Max(Case(When(day__gte=prev_q4, then=Value(1)), default=Value(0), output_field=IntegerField()))
    prev_rows = (
        MemberDay.objects.filter(
            kind=USE, lab__in=scope.lab_ids, day__gte=prev_first, day__lt=scope.first_day
        )
        .values_list("subject", "lab")
        .annotate(q4=in_q4)
        .order_by()
    )
    prev_year: dict[str, set[int]] = defaultdict(set)
    prev_last_quarter: dict[str, set[int]] = defaultdict(set)
    for s, lab, q4 in prev_rows:
        prev_year[scope.lab_slugs[lab]].add(s)
        if q4:
            prev_last_quarter[scope.lab_slugs[lab]].add(s)
    this: dict[tuple[str, int], set[int]] = defaultdict(set)
    for (s, lab), mask in use_by_lab.items():
        for i in scope.covers(mask):
            this[lab, i].add(s)
    for lab in sorted(scope.lab_slugs.values()):
        for i in scope.coarse:
            before = scope.periods[i].previous()
            if before.year < scope.year:
                earlier = prev_last_quarter[lab] if before.quarter else prev_year[lab]
            else:
                earlier = this[lab, scope.index[before]]
            both = len(this[lab, i] & earlier)
            scope.emit(i, "returning_makers", both, lab=lab, people=both)
            scope.emit(i, "returning_rate", pct(both, len(earlier)), lab=lab, people=len(earlier))


def _visits(scope: Scope, people: Population) -> None:
    """P4: distinct (member, lab, day) with any activity; for a type, activity on a machine of that type.

    Visits add up over days and labs (the lab is part of what is counted), so the database counts them
    per month — distinct ``subject × 32 + day of the month`` within a lab and month — and the rest is
    sums; ``people`` is the distinct members behind them.
    """
    visit = Count(
        ExpressionWrapper(
            F("subject_id") * 32 + Cast(ExtractDay("day"), IntegerField()), output_field=BigIntegerField()
        ),
        distinct=True,
    )
    base = MemberDay.objects.filter(**scope.in_year()).annotate(m=month_start())
    monthly: dict[tuple[str, str], dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for lab, month, n in base.values_list("lab", "m").annotate(n=visit).order_by():
        monthly[scope.lab_slugs[lab], ""][month_number(month)] += n
        monthly["", ""][month_number(month)] += n
    typed = base.filter(machine__isnull=False).values_list("lab", "machine__machine_type__slug", "m")
    for lab, mtype, month, n in typed.annotate(n=visit).order_by():
        monthly[scope.lab_slugs[lab], mtype][month_number(month)] += n

    network = merge_masks((s, any_) for (s, _lab), (_u, any_) in people.by_lab.items())
    members = scope.count(((lab, ""), any_, 1) for (_s, lab), (_u, any_) in people.by_lab.items())
    members.update(scope.count((("", ""), any_, 1) for any_ in network.values()))
    members.update(people.type_people)
    keys = {(lab, "") for lab in scope.labs()} | set(monthly)
    for lab, mtype in sorted(keys):
        by_month = monthly[lab, mtype]
        for i in range(len(scope.periods)):
            bits = scope.bits(i)
            n = sum(v for m, v in by_month.items() if bits >> (m - 1) & 1)
            people_n = members.get(((lab, mtype), i), 0)
            scope.emit(i, "visits", n, lab=lab, machine_type=mtype, people=people_n)


def _trainings(scope: Scope) -> None:
    """P6 by training: certifications granted by attendance (rows that certified) and distinct trainees."""
    rows = (
        MemberDay.objects.filter(kind=TRAINING, training__isnull=False, **scope.in_year())
        .values_list("subject", "lab", "training")
        .annotate(
            mask=MonthMask(),
            cmask=MonthMask(filter=Q(certified=True)),
        )
        .order_by()
    )
    rows = [(s, scope.lab_slugs[lab], t, int(m or 0), int(c or 0)) for s, lab, t, m, c in rows]
    certs = (
        MemberDay.objects.filter(kind=TRAINING, training__isnull=False, certified=True, **scope.in_year())
        .annotate(m=month_start())
        .values_list("lab", "training", "m")
        .annotate(Count("id"))
        .order_by()
    )
    granted: dict[tuple[str, int], dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for lab, t, month, n in certs:
        granted[scope.lab_slugs[lab], t][month_number(month)] += n
        granted["", t][month_number(month)] += n
    names = dict(Training.objects.filter(pk__in={t for *_x, t, _m, _c in rows}).values_list("pk", "slug"))
    trainees, certified = {}, {}
    for cut in (lambda lab: lab, lambda lab: ""):
        merged = merge_masks(((s, cut(lab), t), m) for s, lab, t, m, _c in rows)
        trainees.update(scope.count(((lab, t), m, 1) for (_s, lab, t), m in merged.items()))
        merged = merge_masks(((s, cut(lab), t), c) for s, lab, t, _m, c in rows)
        certified.update(scope.count(((lab, t), c, 1) for (_s, lab, t), c in merged.items()))
    seen = {(lab, t) for _s, lab, t, _m, _c in rows} | {("", t) for *_x, t, _m, _c in rows}
    for lab, t in sorted(seen, key=lambda k: (k[0], names[k[1]])):
        where = {"lab": lab, "dimension": "training", "category": names[t]}
        for i in range(len(scope.periods)):
            bits = scope.bits(i)
            n = sum(v for m, v in granted[lab, t].items() if bits >> (m - 1) & 1)
            scope.emit(i, "certifications_granted", n, people=certified.get(((lab, t), i), 0), **where)
            k = trainees.get(((lab, t), i), 0)
            scope.emit(i, "trainees", k, people=k, **where)


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
    year = scope.YEAR
    for lab, training, trainees, using in sorted((scope.lab_slugs[lab], *rest) for lab, *rest in rows):
        where = {"lab": lab, "dimension": "training", "category": training}
        scope.emit(year, "trainees_using_within_90_days", using, people=using, **where)
        scope.emit(year, "training_to_use", pct(using, trainees), people=trainees, **where)
