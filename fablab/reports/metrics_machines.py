"""Machine metrics (M1–M12 and the hours held for trainings, workshops and maintenance) and the weekday ×
hour heatmap, from the :class:`~fablab.reports.models.MachineDay` rollup.

Every figure is a sum of rollup fields, or a ratio of two such sums computed *after* summing (an
average of daily percentages would weigh a short day like a long one). The database sums each machine's
days per month in one query; months add up to quarters and the year, machines to their type (within
the lab), types to the lab and labs to the network, all in exact arithmetic before anything is rounded.
"""

from __future__ import annotations

from collections import defaultdict

from django.db.models import FloatField, IntegerField, Max, Sum
from django.db.models.fields.json import KT
from django.db.models.functions import Cast, Coalesce, ExtractIsoWeekDay

from .definitions import METRICS, PERCENT, RATIOS, Ratio
from .metrics_grid import Scope, month_number, month_start, pct, quarter_number, quarter_start, ratio
from .models import MachineDay

#: The MachineDay fields a period adds up (hours and counts).
FIELDS = (
    "open_h",
    "plan_down_h",
    "unpl_down_h",
    "booked_h",
    "released_h",
    "used_h",
    "busy_h",
    "realised_h",
    "walk_in_h",
    "overrun_h",
    "training_h",
    "workshop_h",
    "maintenance_h",
    "energy_kwh",
    "energy_used_h",
    "bookings_made",
    "bookings_kept",
    "no_shows",
    "late_cancels",
    "jobs_with_outcome",
    "jobs_finished",
)
_I = {name: i for i, name in enumerate(FIELDS)}


def _net(s) -> float:
    return s[_I["open_h"]] - s[_I["plan_down_h"]]


def _f(name):
    return lambda s: s[_I[name]]


#: metric name → its value from a period's sums (REPORTS.md's formulas; ``None`` on a zero denominator).
#: The percentages follow from :data:`~fablab.reports.definitions.RATIOS`, below.
FORMULAS = {
    "open_hours": _f("open_h"),
    "planned_downtime_hours": _f("plan_down_h"),
    "net_available_hours": _net,
    "unplanned_downtime_hours": _f("unpl_down_h"),
    "booked_hours": _f("booked_h"),
    "released_hours": _f("released_h"),
    "used_hours": _f("used_h"),
    "busy_hours": _f("busy_h"),
    "realised_hours": _f("realised_h"),
    "bookings_kept": _f("bookings_kept"),
    "no_shows": _f("no_shows"),
    "bookings_made": _f("bookings_made"),
    "late_cancellations": _f("late_cancels"),
    "walk_in_hours": _f("walk_in_h"),
    "jobs_with_outcome": _f("jobs_with_outcome"),
    "jobs_finished": _f("jobs_finished"),
    "overrun_hours": _f("overrun_h"),
    # No session with a meter reading: no energy figure (not 0 kWh, which would claim a measurement).
    "energy": lambda s: s[_I["energy_kwh"]] if s[_I["energy_used_h"]] > 0 else None,
    # Its whole, the hours of the sessions with a meter reading, is no published figure.
    "energy_per_used_hour": lambda s: ratio(s[_I["energy_kwh"]], s[_I["energy_used_h"]]),
    "training_hours": _f("training_h"),
    "workshop_hours": _f("workshop_h"),
    "maintenance_hours": _f("maintenance_h"),
}


def _percentage(r: Ratio):
    """A percentage's formula from the formulas of its part and whole (after summing, like theirs)."""
    part, whole = FORMULAS[r.part], FORMULAS[r.whole]
    if r.complement:
        return lambda s: pct(whole(s) - part(s), whole(s))
    return lambda s: pct(part(s), whole(s))


FORMULAS.update(
    {
        name: _percentage(r)
        for name, r in RATIOS.items()
        if METRICS[name].unit == PERCENT and r.part in FORMULAS and r.whole in FORMULAS
    }
)
#: In the order of the definitions, so that every output lists them the same way.
MACHINE_METRICS = [name for name in METRICS if name in FORMULAS]


def _add(into: list[float], values) -> None:
    for i, v in enumerate(values):
        into[i] += v


def machine_cells(scope: Scope, machines: dict[int, tuple[str, str, str]], users: dict) -> None:
    """Emit the machine table of the year: network, lab, type within the lab and machine.

    ``machines`` maps a machine id to its ``(lab, type, machine)`` slugs; ``users`` maps a cell's
    ``(lab, type, machine)`` key and period to its distinct users: members with a ``use`` day on the
    cell's machines (see :func:`fablab.reports.metrics_people.population`).
    """
    rows = (
        MachineDay.objects.filter(**scope.in_year("machine__"))
        .annotate(m=month_start())
        .values_list("machine", "m")
        .annotate(
            *(Sum(name) for name in FIELDS),
            flag=Max(Cast("around_the_clock", IntegerField())),
        )
        .order_by()
    )
    # key (lab, type, machine) → month → sums; the flag per machine and month.
    monthly: dict[tuple, dict[int, list[float]]] = defaultdict(
        lambda: defaultdict(lambda: [0.0] * len(FIELDS))
    )
    flags: dict[tuple, set[int]] = defaultdict(set)
    for machine_id, month, *values in rows:
        if machine_id not in machines:
            continue
        month = month_number(month)
        lab, mtype, slug = machines[machine_id]
        *sums, flag = values
        sums = [float(v or 0) for v in sums]
        for key in ((lab, mtype, slug), (lab, mtype, ""), (lab, "", ""), ("", "", "")):
            _add(monthly[key][month], sums)
        if flag:
            flags[lab, mtype, slug].add(month)
    for lab in scope.lab_slugs.values():  # every lab of the scope has a row, even without machine days
        monthly[lab, "", ""]
    monthly["", "", ""]

    for key in sorted(monthly):
        by_month = monthly[key]
        lab, mtype, slug = key
        level = "machine" if slug else "machine_type" if mtype else "lab" if lab else "network"
        flagged_months = flags.get(key, ())
        for i in range(len(scope.periods)):
            bits = scope.bits(i)
            sums = [0.0] * len(FIELDS)
            for m, values in by_month.items():
                if bits >> (m - 1) & 1:
                    _add(sums, values)
            where = {"lab": lab, "machine_type": mtype, "machine": slug, "users": users.get((key, i), 0)}
            for name in MACHINE_METRICS:
                if scope.allowed(name, level, i):
                    scope.emit(i, name, FORMULAS[name](sums), **where)
            if slug:
                flagged = any(bits >> (m - 1) & 1 for m in flagged_months)
                scope.emit(i, "bookable_around_the_clock", int(flagged), **where)


def heatmap_cells(scope: Scope, users: dict) -> None:
    """Used hours by local weekday (Monday = 0) and hour, per lab and for the network, per quarter and year."""
    hours = {f"h{h}": Coalesce(Sum(Cast(KT(f"used_by_hour__{h}"), FloatField())), 0.0) for h in range(24)}
    rows = (
        MachineDay.objects.filter(**scope.in_year("machine__"), used_h__gt=0)
        .annotate(q=quarter_start(), wd=Cast(ExtractIsoWeekDay("day"), IntegerField()))
        .values("machine__lab", "q", "wd")
        .annotate(**hours)
        .order_by()
    )
    grid: dict[tuple[str, int], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for row in rows:
        lab = scope.lab_slugs[row["machine__lab"]]
        row["q"] = quarter_number(row["q"])
        for h in range(24):
            category = f"{row['wd'] - 1}-{h:02d}"
            value = float(row[f"h{h}"] or 0)
            for key in ((lab, row["q"]), ("", row["q"])):
                grid[key][category] += value
    labs = scope.labs()
    categories = [f"{wd}-{h:02d}" for wd in range(7) for h in range(24)]
    for lab in labs:
        for i in scope.coarse:
            period = scope.periods[i]
            quarters = [period.quarter] if period.quarter else [1, 2, 3, 4]
            n_users = users.get(((lab, "", ""), i), 0)
            for category in categories:
                value = sum(grid[lab, q].get(category, 0.0) for q in quarters if (lab, q) in grid)
                scope.emit(
                    i,
                    "used_hours",
                    value,
                    lab=lab,
                    dimension="weekday_hour",
                    category=category,
                    users=n_users,
                )
