"""The report pages of programme officers and lab managers: the scope's overview, one lab, the printable
report, and where an officer lands after logging in.

Every figure on these pages comes from :func:`fablab.reports.service.report`, the one entry point that
decides who sees which labs and that hands out only cells the disclosure control has protected — for
managers too (their operational pages, not these, show individual bookings). The pages add no figure
of their own; :mod:`fablab.reports.figures` formats the cells and puts the counts beside each
percentage.

Periods are the fixed grid only (a calendar year, quarter or month, picked from selects); anything else
in the address is a 400. The default is the last complete quarter, the period a programme reports on.
Access: anonymous → log-in page; someone who sees no reports → 403 (the service's PermissionDenied); a
lab outside the viewer's scope → 404, whether it exists or not.
"""

from __future__ import annotations

import datetime as dt

from django.contrib.auth.decorators import login_required
from django.db.models import Min
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.dates import MONTHS
from django.utils.http import urlencode
from django.utils.translation import gettext as _

from fablab.members import roles

from . import service
from .cells import Period
from .definitions import AGE_BANDS, GENDERS, METRICS, USER_CATEGORIES
from .figures import Cells, Fig, number
from .models import ExportLog, MachineDay

#: The lab comparison's columns (pages 1 and print).
COMPARISON = (
    "net_available_hours",
    "availability",
    "booking_utilisation",
    "usage_utilisation",
    "active_makers",
    "visits",
)
#: The summary cards of the network and of a lab.
SUMMARY = (*COMPARISON, "used_hours", "new_makers", "trainees", "energy")
BOOKINGS = (
    "bookings_made",
    "no_show_rate",
    "late_cancellation_rate",
    "walk_in_share",
    "booking_realisation",
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
EXPORT_FORMATS = (("csv", "CSV"), ("csv-metadata", "CSVW"), ("xlsx", "XLSX"))


class BadPeriod(Exception):
    """The address names no period of the fixed grid (or one the page does not offer)."""


# ---------------------------------------------------------------------------------------- periods


def last_complete_quarter(today: dt.date) -> Period:
    quarter = (today.month - 1) // 3 + 1
    return Period(today.year - 1, quarter=4) if quarter == 1 else Period(today.year, quarter=quarter - 1)


def chosen_period(request, grains=("year", "quarter", "month")) -> Period:
    """``?period=2026-Q3``, or the picker's ``?year=2026&part=Q3`` (``part`` empty: the whole year)."""
    text = request.GET.get("period")
    if text is None and "year" in request.GET:
        part = request.GET.get("part", "")
        text = f"{request.GET['year']}-{part}" if part else request.GET["year"]
    if text is None:
        return last_complete_quarter(timezone.localdate())
    try:
        period = Period.parse(text)
    except ValueError:
        raise BadPeriod(text) from None
    if period.grain not in grains:
        raise BadPeriod(text)
    return period


def picker(period: Period, grains=("year", "quarter", "month")) -> dict:
    """The year / quarter / month selects: years from the first rollup to this year."""
    today = timezone.localdate()
    first = MachineDay.objects.aggregate(first=Min("day"))["first"]
    years = list(range(min(first.year if first else today.year, period.year), today.year + 1))
    if period.year > today.year:
        years.append(period.year)
    part = f"Q{period.quarter}" if period.quarter else f"{period.month:02d}" if period.month else ""
    parts = [("", _("Whole year"))]
    quarters = [(f"Q{q}", _("Quarter %(number)d") % {"number": q}) for q in range(1, 5)]
    months = [(f"{m:02d}", MONTHS[m]) for m in range(1, 13)]
    return {
        "years": sorted(years, reverse=True),
        "year": period.year,
        "part": part,
        "whole_year": parts,
        "quarters": quarters if "quarter" in grains else [],
        "months": months if "month" in grains else [],
    }


def period_label(period: Period) -> str:
    if period.month:
        return f"{MONTHS[period.month]} {period.year}"
    if period.quarter:
        return _("Quarter %(quarter)d %(year)d") % {"quarter": period.quarter, "year": period.year}
    return str(period.year)


# ---------------------------------------------------------------------------------------- access


def _report(request, period: Period | str, level: str, lab: str | None = None):
    """The service's report; its "lab not found" is a 404, a bad period or level a 400 (BadPeriod).

    PermissionDenied (someone who sees no reports) goes up to Django's 403 page.
    """
    try:
        return service.report(request.user, str(period), level, lab=lab)
    except service.ReportError as error:
        if error.code == "report_lab_not_found":
            raise Http404(_("No such lab in your reports.")) from None
        raise BadPeriod(str(period)) from None


def _scope_labs(request) -> dict:
    """``{slug: Lab}`` of the labs the viewer's reports cover, by name."""
    return {lab.slug: lab for lab in service.visible_labs(request.user)}


def export_links(period: Period, level: str, lab: str = "") -> list[dict]:
    """Links to the CSV, CSVW metadata and XLSX downloads of this slice (the export views log them)."""
    query = {"period": str(period), "level": level}
    if lab:
        query["lab"] = lab
    links = []
    for fmt, label in EXPORT_FORMATS:
        try:
            url = reverse("reports:export", kwargs={"fmt": fmt})
        except NoReverseMatch:
            continue
        links.append({"fmt": fmt, "label": label, "url": f"{url}?{urlencode(query)}"})
    return links


def _bad_period(request, template: str = "reports/index.html", **context):
    context.setdefault("picker", picker(last_complete_quarter(timezone.localdate())))
    context["error"] = _("Choose a calendar year, quarter or month from the lists.")
    return render(request, template, context, status=400)


# ---------------------------------------------------------------------------------------- tables


def _definitions(metrics) -> list[dict]:
    return [
        {"name": m, "label": METRICS[m].label, "ref": METRICS[m].ref, "definition": METRICS[m].definition}
        for m in dict.fromkeys(metrics)
    ]


def _row(cells: Cells, period: str, metrics, **where) -> list[Fig]:
    return [cells.fig(m, period, **where) for m in metrics]


def _names(model, slugs, **filters) -> dict:
    return dict(model.objects.filter(slug__in=set(slugs), **filters).values_list("slug", "name"))


def _category_table(cells: Cells, period: str, lab: str, dimension: str, columns, labels=None) -> dict:
    """One breakdown (user category, initiative, training, gender, age band) of a lab's period."""
    categories = cells.categories(period, dimension, lab=lab)
    if labels is not None:
        # Declared categories in their display order, "not declared" last.
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
    return {"rows": rows, "columns": _definitions(columns), "coverage": coverage}


def _heatmap(cells: Cells, period: str, lab: str) -> dict | None:
    """The weekday × hour table of used hours, shaded in six steps of the busiest hour."""
    values = {}
    for key, cell in cells.by_key.items():
        if key[0] == period and key[1] == lab and key[4] == "weekday_hour" and key[6] == "used_hours":
            values[cell.category] = cell
    if not values:
        return None
    shown = [c.value for c in values.values() if c.value is not None and not c.suppressed]
    top = max(shown, default=0) or 1
    used_hours = [
        h
        for h in range(24)
        if any((values.get(f"{d}-{h:02d}") and values[f"{d}-{h:02d}"].value) for d in range(7))
    ]
    hours = list(range(min(used_hours), max(used_hours) + 1)) if used_hours else list(range(8, 20))
    weekdays = [_("Monday"), _("Tuesday"), _("Wednesday"), _("Thursday"), _("Friday")]
    weekdays += [_("Saturday"), _("Sunday")]
    rows = []
    for d, name in enumerate(weekdays):
        row = []
        for h in hours:
            cell = values.get(f"{d}-{h:02d}")
            fig = cells.fig("used_hours", period, lab=lab, dimension="weekday_hour", category=f"{d}-{h:02d}")
            shade = 0 if cell is None or not fig.shown else min(5, 1 + int(5 * fig.shown / top - 1e-9))
            row.append({"fig": fig, "shade": shade, "hour": h})
        rows.append({"weekday": name, "cells": row})
    steps = [
        {
            "shade": s,
            "text": _("%(low)s to %(high)s h") % {"low": _n(top * (s - 1) / 5), "high": _n(top * s / 5)},
        }
        for s in range(1, 6)
    ]
    return {"hours": hours, "rows": rows, "legend": steps}


def _n(value: float) -> str:
    return number(value, 1 if value < 10 else 0)


def _monthly(request, year: int, lab: str) -> dict:
    """The lab's months of ``year`` (up to the running one): utilisation and hours, for the two charts."""
    today = timezone.localdate()
    last = 12 if year < today.year else today.month if year == today.year else 0
    try:
        cells = Cells(service.year_report(request.user, year, lab))
    except service.ReportError:
        raise Http404(_("No such lab in your reports.")) from None
    months, rows = [], []
    for m in range(1, last + 1):
        p = str(Period(year, month=m))
        figs = {
            name: cells.fig(name, p, lab=lab)
            for name in (
                "booking_utilisation",
                "usage_utilisation",
                "net_available_hours",
                "booked_hours",
                "used_hours",
            )
        }
        months.append(str(MONTHS[m]))
        rows.append({"month": MONTHS[m], "period": p, **figs})

    def series(name, colour):
        return {
            "label": str(METRICS[name].label),
            "colour": colour,
            "values": [r[name].shown for r in rows],
        }

    numbers = list(range(1, last + 1))
    return {
        "rows": rows,
        "utilisation": {
            "months": numbers,
            "labels": months,
            "unit": "%",
            "kind": "line",
            "series": [series("booking_utilisation", "#0b57a4"), series("usage_utilisation", "#b35c00")],
        },
        "hours": {
            "months": numbers,
            "labels": months,
            "unit": "h",
            "kind": "bars",
            "series": [
                series("net_available_hours", "#8a8f99"),
                series("booked_hours", "#0b57a4"),
                series("used_hours", "#2e7d46"),
            ],
        },
    }


def lab_sections(request, period: Period, lab, *, charts: bool = True) -> dict:
    """Everything a lab's page (and its printable report) shows for ``period``."""
    p, slug = str(period), lab.slug
    lab_cells = Cells(_report(request, period, "lab", slug).cells)
    type_cells = Cells(_report(request, period, "machine_type", slug).cells)
    machine_cells = Cells(_report(request, period, "machine", slug).cells)
    from fablab.labs.models import Machine, MachineType
    from fablab.members.models import Training
    from fablab.trainings.models import Initiative

    types = type_cells.places(p, "machine_type", lab=slug)
    type_names = _names(MachineType, [t for _l, t, _m in types])
    machines = machine_cells.places(p, "machine", lab=slug)
    machine_names = _names(Machine, [m for _l, _t, m in machines], lab=lab)
    type_rows = [
        {"name": type_names.get(t, t), "figs": _row(type_cells, p, MACHINE_COLUMNS, lab=slug, machine_type=t)}
        for _l, t, _m in types
    ]
    machine_rows = [
        {
            "name": machine_names.get(m, m),
            "type": type_names.get(t, t),
            "figs": _row(machine_cells, p, MACHINE_COLUMNS, lab=slug, machine_type=t, machine=m),
        }
        for _l, t, m in machines
    ]
    # The heatmap exists per quarter and year: a month shows its quarter's.
    heat_period = Period(period.year, quarter=(period.month - 1) // 3 + 1) if period.month else period
    heat_cells = (
        lab_cells if heat_period == period else Cells(_report(request, heat_period, "lab", slug).cells)
    )
    trainings = _names(Training, lab_cells.categories(p, "training", lab=slug))
    initiatives = _names(Initiative, lab_cells.categories(p, "initiative", lab=slug))
    context = {
        "summary": _row(lab_cells, p, SUMMARY, lab=slug),
        "bookings": _row(lab_cells, p, BOOKINGS, lab=slug),
        "people": _row(lab_cells, p, PEOPLE, lab=slug),
        "energy": _row(lab_cells, p, ENERGY, lab=slug),
        "types": {"rows": type_rows, "columns": _definitions(MACHINE_COLUMNS)},
        "machines": {"rows": machine_rows, "columns": _definitions(MACHINE_COLUMNS)},
        "heatmap": _heatmap(heat_cells, str(heat_period), slug),
        "heat_period": period_label(heat_period),
        "trainings": _category_table(lab_cells, p, slug, "training", TRAINING_COLUMNS, trainings),
        "user_categories": _category_table(
            lab_cells, p, slug, "user_category", CATEGORY_COLUMNS, USER_CATEGORIES
        ),
        "initiatives": _category_table(lab_cells, p, slug, "initiative", INITIATIVE_COLUMNS, initiatives),
        "demographics_shown": period.grain == "quarter",
        "gender": _category_table(lab_cells, p, slug, "gender", DEMOGRAPHIC_COLUMNS, GENDERS),
        "age_band": _category_table(lab_cells, p, slug, "age_band", DEMOGRAPHIC_COLUMNS, AGE_BANDS),
        "rows": len(lab_cells) + len(type_cells) + len(machine_cells),
    }
    if charts:
        monthly = _monthly(request, period.year, slug)
        context["monthly"] = monthly
        context["monthly_charts"] = {"utilisation": monthly["utilisation"], "hours": monthly["hours"]}
    return context


def network_sections(request, period: Period) -> dict:
    """The scope's summary and the lab comparison."""
    p = str(period)
    network = Cells(_report(request, period, "network").cells)
    labs_cells = Cells(_report(request, period, "lab").cells)
    labs = _scope_labs(request)
    comparison = [
        {"lab": lab, "figs": _row(labs_cells, p, COMPARISON, lab=slug)} for slug, lab in labs.items()
    ]
    return {
        "summary": _row(network, p, SUMMARY),
        "bookings": _row(network, p, BOOKINGS),
        "comparison": {"rows": comparison, "columns": _definitions(COMPARISON)},
        "rows": len(network) + len(labs_cells),
    }


# ---------------------------------------------------------------------------------------- views


def landing_url(user) -> str | None:
    """Where log-in sends ``user`` when no ``next`` was asked for: a programme officer to their reports.

    Network administrators and lab managers keep landing on the labs (their daily, operational pages)
    and reach the reports from the navigation; ``None`` leaves the log-in page's default.
    """
    if roles.overseen_labs(user).exists() and not roles.is_network_admin(user):
        return reverse("report_pages:index")
    return None


@login_required
def index(request):
    """The viewer's scope: the network summary and one row per lab."""
    try:
        period = chosen_period(request)
        if "year" in request.GET and "period" not in request.GET:
            return redirect(f"{reverse('report_pages:index')}?{urlencode({'period': str(period)})}")
        sections = network_sections(request, period)
    except BadPeriod:
        return _bad_period(request)
    context = {
        "period": period,
        "period_label": period_label(period),
        "picker": picker(period),
        "downloads": export_links(period, "network"),
        "lab_downloads": export_links(period, "lab"),
        "print_url": f"{reverse('report_pages:print')}?{urlencode({'period': str(period)})}",
        "printable": period.grain != "month",
        **sections,
        "definitions": _definitions(SUMMARY + BOOKINGS),
    }
    return render(request, "reports/index.html", context)


@login_required
def lab_report(request, lab: str):
    """One lab of the viewer's scope: its figures, charts and tables for the chosen period."""
    labs = _scope_labs(request)
    if lab not in labs:
        # The service would say the same (report_lab_not_found); asking it first keeps PermissionDenied
        # (someone who sees no reports at all) a 403 rather than a 404.
        _report(request, last_complete_quarter(timezone.localdate()), "lab", lab)
        raise Http404(_("No such lab in your reports."))
    lab_obj = labs[lab]
    try:
        period = chosen_period(request)
        if "year" in request.GET and "period" not in request.GET:
            url = reverse("report_pages:lab", kwargs={"lab": lab})
            return redirect(f"{url}?{urlencode({'period': str(period)})}")
        sections = lab_sections(request, period, lab_obj)
    except BadPeriod:
        return _bad_period(request, "reports/lab.html", lab=lab_obj)
    context = {
        "lab": lab_obj,
        "period": period,
        "period_label": period_label(period),
        "picker": picker(period),
        "downloads": export_links(period, "lab", lab),
        "machine_downloads": export_links(period, "machine", lab),
        "print_url": f"{reverse('report_pages:print')}?{urlencode({'period': str(period), 'lab': lab})}",
        "printable": period.grain != "month",
        **sections,
        "definitions": _definitions(SUMMARY + BOOKINGS + PEOPLE),
    }
    return render(request, "reports/lab.html", context)


@login_required
def print_report(request):
    """The printable report of a lab or of the whole scope, for a quarter or a year; logged as an export."""
    slug = request.GET.get("lab", "")
    lab_obj = None
    if slug:
        labs = _scope_labs(request)
        if slug not in labs:
            _report(request, last_complete_quarter(timezone.localdate()), "lab", slug)
            raise Http404(_("No such lab in your reports."))
        lab_obj = labs[slug]
    try:
        period = chosen_period(request, grains=("year", "quarter"))
        if lab_obj is not None:
            sections = lab_sections(request, period, lab_obj, charts=False)
        else:
            sections = network_sections(request, period)
    except BadPeriod:
        return _bad_period(
            request,
            "reports/print.html",
            lab=lab_obj,
            picker=picker(last_complete_quarter(timezone.localdate()), grains=("year", "quarter")),
        )
    ExportLog.objects.create(
        user=request.user,
        fmt="print",
        period=str(period),
        level="lab" if lab_obj else "network",
        lab=slug,
        via="web",
        rows=sections["rows"],
    )
    context = {
        "lab": lab_obj,
        "period": period,
        "period_label": period_label(period),
        "generated_at": timezone.now(),
        "printing": True,
        **sections,
        "definitions": _definitions(SUMMARY + BOOKINGS + (PEOPLE if lab_obj else ())),
    }
    return render(request, "reports/print.html", context)
