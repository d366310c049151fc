"""What each report page shows, built from one year of protected cells: the summaries, the lab
comparison, the machine tables, the breakdowns, the heatmap and the month-by-month chart data.

One call to the report service per page (:func:`fablab.reports.service.year_report`: the protected
year of the viewer's scope, or of one lab and the network): every period and level a page needs is then
looked up by the cells' keys. Nothing here computes a figure; :mod:`fablab.reports.figures` formats
the cells.
"""

from __future__ import annotations

from django.http import Http404
from django.utils import timezone
from django.utils.dates import MONTHS
from django.utils.translation import gettext as _

from . import service
from .cells import Cell, Period
from .definitions import AGE_BANDS, GENDERS, METRICS, USER_CATEGORIES
from .figures import Cells, Fig, number

#: The lab comparison's columns (overview and its printable report).
COMPARISON = (
    "net_available_hours",
    "availability",
    "booking_utilisation",
    "usage_utilisation",
    "active_makers",
    "visits",
)
#: The summary cards of the network and of a lab.
SUMMARY = (*COMPARISON, "used_hours", "new_makers", "energy")
BOOKINGS = (
    "bookings_made",
    "no_show_rate",
    "late_cancellation_rate",
    "walk_in_share",
    "booking_realisation",
    "released_hours",
    "job_completion",
    "overrun_hours",
)
PEOPLE = ("active_makers", "new_makers", "returning_rate", "visits", "median_hours_per_maker")
MACHINE_COLUMNS = (
    "net_available_hours",
    "availability",
    "booking_utilisation",
    "usage_utilisation",
    "busy_share",
    "energy",
    "energy_per_used_hour",
)
ENERGY = ("energy", "energy_per_used_hour")
TRAINING_COLUMNS = ("certifications_granted", "trainees", "training_to_use")
CATEGORY_COLUMNS = ("makers", "category_hours")
INITIATIVE_COLUMNS = ("participants", "category_hours", "declared_participants")
DEMOGRAPHIC_COLUMNS = ("makers",)
CHART_METRICS = (
    "booking_utilisation",
    "usage_utilisation",
    "net_available_hours",
    "booked_hours",
    "used_hours",
)


class BadPeriod(Exception):
    """The address names no period of the fixed grid (or one the page does not offer)."""


def period_label(period: Period) -> str:
    if period.month:
        return f"{MONTHS[period.month]} {period.year}"
    if period.quarter:
        return _("Quarter %(quarter)d %(year)d") % {"quarter": period.quarter, "year": period.year}
    return str(period.year)


def heat_period(period: Period) -> Period:
    """The heatmap exists per quarter and year: a month shows its quarter's."""
    return Period(period.year, quarter=(period.month - 1) // 3 + 1) if period.month else period


def protected_year(user, year: int, lab: str | None = None) -> list[Cell]:
    """The service's protected year; a lab outside the scope is a 404, a year off the grid a 400.

    PermissionDenied (someone who sees no reports) goes up to Django's 403 page.
    """
    try:
        return service.year_report(user, year, lab)
    except service.ReportError as error:
        if error.code == "report_lab_not_found":
            raise Http404(_("No such lab in your reports.")) from None
        raise BadPeriod(str(year)) from None


# ---------------------------------------------------------------------------------------- tables


def definitions(metrics) -> list[dict]:
    return [
        {"name": m, "label": METRICS[m].label, "ref": METRICS[m].ref, "definition": METRICS[m].definition}
        for m in dict.fromkeys(metrics)
    ]


def _row(cells: Cells, period: str, metrics, **where) -> list[Fig]:
    return [cells.fig(m, period, **where) for m in metrics]


def names_by_slug(model, slugs, **filters) -> dict:
    """``{slug: name}`` of the ``model`` rows of ``slugs``: how a category or place is shown, not its slug."""
    return dict(model.objects.filter(slug__in=set(slugs), **filters).values_list("slug", "name"))


def _category_table(cells: Cells, period: str, lab: str, dimension: str, columns, labels=None) -> dict:
    """One breakdown (user category, initiative, training, gender, age band) of a lab's period."""
    categories = cells.categories(period, dimension, lab=lab)
    if labels is not None:
        # Categories in their display order, "not declared" last; unknown ones (slugs) after them.
        order = list(labels)
        categories = sorted(categories, key=lambda c: order.index(c) if c in order else len(order))
    rows = []
    for category in categories:
        figs = _row(cells, period, columns, lab=lab, dimension=dimension, category=category)
        if all(f.value is None and not f.suppressed for f in figs):
            continue
        name = labels.get(category, category) if labels is not None else category
        rows.append({"category": category, "name": name, "figs": figs})
    coverage = None
    if dimension in ("gender", "age_band"):
        coverage = cells.fig("declared_coverage", period, lab=lab, dimension=dimension, category="")
        if coverage.value is None and not coverage.suppressed:
            coverage = None
    return {"rows": rows, "columns": definitions(columns), "coverage": coverage}


def _heatmap(cells: Cells, period: str, lab: str) -> dict | None:
    """The weekday × hour table of used hours, shaded in six steps of the busiest hour.

    Only the hours from the first to the last with any use are shown (a lab open 8–20 gets 12
    columns, not 24), so that the table fits a phone better.
    """
    figs = {
        (d, h): cells.fig("used_hours", period, lab=lab, dimension="weekday_hour", category=f"{d}-{h:02d}")
        for d in range(7)
        for h in range(24)
    }
    if all(f.value is None and not f.suppressed for f in figs.values()):
        return None
    top = max((f.shown for f in figs.values() if f.shown), default=0) or 1
    used = [h for h in range(24) if any(figs[d, h].shown for d in range(7))]
    hours = list(range(min(used), max(used) + 1)) if used else list(range(8, 20))
    weekdays = [_("Monday"), _("Tuesday"), _("Wednesday"), _("Thursday"), _("Friday")]
    weekdays += [_("Saturday"), _("Sunday")]
    rows = []
    for d, name in enumerate(weekdays):
        row = []
        for h in hours:
            fig = figs[d, h]
            shade = min(5, 1 + int(5 * fig.shown / top - 1e-9)) if fig.shown else 0
            row.append({"fig": fig, "shade": shade, "hour": h})
        rows.append({"weekday": name, "cells": row})

    def n(value: float) -> str:
        return number(value, 1 if value < 10 else 0)

    legend = [
        {
            "shade": s,
            "text": _("%(low)s to %(high)s h") % {"low": n(top * (s - 1) / 5), "high": n(top * s / 5)},
        }
        for s in range(1, 6)
    ]
    return {"hours": hours, "rows": rows, "legend": legend}


def _monthly(cells: Cells, year: int, lab: str) -> dict:
    """The lab's months of ``year`` up to the running one: utilisation and hours, for the two charts.

    A hidden or banded month is a gap (``None``): a chart never shows more than the table under it.
    """
    today = timezone.localdate()
    last = 12 if year < today.year else today.month if year == today.year else 0
    rows = []
    for m in range(1, last + 1):
        p = str(Period(year, month=m))
        rows.append({"month": MONTHS[m], "period": p, **{k: cells.fig(k, p, lab=lab) for k in CHART_METRICS}})

    def chart(unit, kind, series):
        return {
            "months": list(range(1, last + 1)),
            "unit": unit,
            "kind": kind,
            "series": [
                {"label": str(METRICS[name].label), "colour": colour, "values": [r[name].shown for r in rows]}
                for name, colour in series
            ],
        }

    return {
        "rows": rows,
        "charts": {
            "utilisation": chart(
                "%", "line", [("booking_utilisation", "#0b57a4"), ("usage_utilisation", "#b35c00")]
            ),
            "hours": chart(
                "h",
                "bars",
                [("net_available_hours", "#8a8f99"), ("booked_hours", "#0b57a4"), ("used_hours", "#2e7d46")],
            ),
        },
    }


# ---------------------------------------------------------------------------------------- pages


def lab_sections(user, period: Period, lab, *, charts: bool = True) -> dict:
    """Everything a lab's page (and its printable report) shows for ``period``."""
    from fablab.labs.models import Machine, MachineType
    from fablab.members.models import Training
    from fablab.trainings.models import Initiative

    p, slug, heat = str(period), lab.slug, heat_period(period)
    year = protected_year(user, period.year, slug)
    wanted = {p, str(heat)} | ({str(m) for m in Period.of_year(period.year) if m.month} if charts else set())
    cells = Cells(c for c in year if c.period in wanted and c.lab == slug)

    types = cells.places(p, "machine_type", lab=slug)
    type_names = names_by_slug(MachineType, [t for _l, t, _m in types])
    machines = cells.places(p, "machine", lab=slug)
    machine_names = names_by_slug(Machine, [m for _l, _t, m in machines], lab=lab)
    type_rows = [
        {"name": type_names.get(t, t), "figs": _row(cells, p, MACHINE_COLUMNS, lab=slug, machine_type=t)}
        for _l, t, _m in types
    ]
    machine_rows = [
        {
            "name": machine_names.get(m, m),
            "figs": _row(cells, p, MACHINE_COLUMNS, lab=slug, machine_type=t, machine=m),
        }
        for _l, t, m in machines
    ]
    trainings = names_by_slug(Training, cells.categories(p, "training", lab=slug))
    initiatives = names_by_slug(Initiative, cells.categories(p, "initiative", lab=slug))
    context = {
        "summary": _row(cells, p, SUMMARY, lab=slug),
        "bookings": _row(cells, p, BOOKINGS, lab=slug),
        "people": _row(cells, p, PEOPLE, lab=slug),
        "energy": _row(cells, p, ENERGY, lab=slug),
        "types": {"rows": type_rows, "columns": definitions(MACHINE_COLUMNS)},
        "machines": {"rows": machine_rows, "columns": definitions(MACHINE_COLUMNS)},
        "heatmap": _heatmap(cells, str(heat), slug),
        "heat_period": period_label(heat),
        # Training → use (P7) is a yearly figure: a quarter's table leaves its column out.
        "trainings": _category_table(
            cells,
            p,
            slug,
            "training",
            TRAINING_COLUMNS if period.grain == "year" else TRAINING_COLUMNS[:2],
            trainings,
        ),
        "user_categories": _category_table(
            cells, p, slug, "user_category", CATEGORY_COLUMNS, USER_CATEGORIES
        ),
        "initiatives": _category_table(cells, p, slug, "initiative", INITIATIVE_COLUMNS, initiatives),
        "demographics_shown": period.grain == "quarter",
        "gender": _category_table(cells, p, slug, "gender", DEMOGRAPHIC_COLUMNS, GENDERS),
        "age_band": _category_table(cells, p, slug, "age_band", DEMOGRAPHIC_COLUMNS, AGE_BANDS),
        "rows": sum(1 for c in year if c.lab == slug and c.period in (p, str(heat))),
    }
    if charts:
        monthly = _monthly(cells, period.year, slug)
        context["monthly"] = monthly
        context["monthly_charts"] = monthly["charts"]
    return context


def network_sections(user, period: Period, labs: dict) -> dict:
    """The scope's summary and the lab comparison (``labs``: the scope, ``{slug: Lab}`` by name)."""
    p = str(period)
    year = protected_year(user, period.year)
    cells = Cells(c for c in year if c.period == p and not c.machine_type)
    comparison = [{"lab": lab, "figs": _row(cells, p, COMPARISON, lab=slug)} for slug, lab in labs.items()]
    return {
        "summary": _row(cells, p, SUMMARY),
        "bookings": _row(cells, p, BOOKINGS),
        "comparison": {"rows": comparison, "columns": definitions(COMPARISON)},
        "rows": sum(1 for c in year if c.period == p and c.level in ("network", "lab")),
    }
