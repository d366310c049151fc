"""The report pages of programme officers and lab managers: the scope's overview, one lab, the printable
report, and where an officer lands after logging in.

Every figure on these pages comes from :mod:`fablab.reports.service`, the one entry point that decides
who sees which labs and that hands out only cells the disclosure control has protected — for managers
too (their operational pages, not these, show individual bookings). The pages add no figure of their
own: :mod:`fablab.reports.page_sections` picks the cells each page shows and
:mod:`fablab.reports.figures` formats them, with the counts beside each percentage.

Periods are the fixed grid only (a calendar year, quarter or month, picked from selects); anything else
in the address is a 400. The default is the last complete quarter, the period a programme reports on.
Access: anonymous → log-in page; someone who sees no reports → 403 (the service's PermissionDenied); a
lab outside the viewer's scope → 404, whether it exists or not.
"""

from __future__ import annotations

import datetime as dt

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
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
from .models import ExportLog, MachineDay
from .page_sections import (
    BOOKINGS,
    PEOPLE,
    SUMMARY,
    BadPeriod,
    definitions,
    lab_sections,
    network_sections,
    period_label,
)

EXPORT_FORMATS = (("csv", "CSV"), ("csv-metadata", "CSVW"), ("xlsx", "XLSX"))


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


# ---------------------------------------------------------------------------------------- access


def scope_labs(user) -> dict:
    """``{slug: Lab}`` of the labs the viewer's reports cover, by name; nobody's labs → 403."""
    labs = {lab.slug: lab for lab in service.visible_labs(user)}
    if not labs:
        raise PermissionDenied
    return labs


def lab_in_scope(user, slug: str):
    """The viewer's lab ``slug``: 404 for a lab outside the scope as for one that does not exist."""
    lab = scope_labs(user).get(slug)
    if lab is None:
        raise Http404(_("No such lab in your reports."))
    return lab


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


# ---------------------------------------------------------------------------------------- views


def landing_url(user) -> str | None:
    """Where log-in sends ``user`` when no ``next`` was asked for: a programme officer to their reports.

    Network administrators and lab managers keep landing on the labs (their daily, operational pages)
    and reach the reports from the navigation; ``None`` leaves the log-in page's default.
    """
    if roles.overseen_labs(user).exists() and not roles.is_network_admin(user):
        return reverse("report_pages:index")
    return None


def _on_the_grid(request, url: str):
    """The picker's ``?year=&part=`` as the page's one address, ``?period=``."""
    period = chosen_period(request)
    return redirect(f"{url}?{urlencode({'period': str(period)})}")


@login_required
def index(request):
    """The viewer's scope: the network summary and one row per lab."""
    labs = scope_labs(request.user)
    try:
        if "year" in request.GET and "period" not in request.GET:
            return _on_the_grid(request, reverse("report_pages:index"))
        period = chosen_period(request)
        sections = network_sections(request.user, period, labs)
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
    }
    return render(request, "reports/index.html", context)


@login_required
def lab_report(request, lab: str):
    """One lab of the viewer's scope: its figures, charts and tables for the chosen period."""
    lab_obj = lab_in_scope(request.user, lab)
    try:
        if "year" in request.GET and "period" not in request.GET:
            return _on_the_grid(request, reverse("report_pages:lab", kwargs={"lab": lab}))
        period = chosen_period(request)
        sections = lab_sections(request.user, period, lab_obj)
    except BadPeriod:
        return _bad_period(request, "reports/lab.html", lab=lab_obj)
    query = urlencode({"period": str(period), "lab": lab})
    context = {
        "lab": lab_obj,
        "period": period,
        "period_label": period_label(period),
        "picker": picker(period),
        "downloads": export_links(period, "lab", lab),
        "machine_downloads": export_links(period, "machine", lab),
        "print_url": f"{reverse('report_pages:print')}?{query}",
        "printable": period.grain != "month",
        **sections,
    }
    return render(request, "reports/lab.html", context)


@login_required
def print_report(request):
    """The printable report of a lab or of the whole scope, for a quarter or a year; logged as an export."""
    slug = request.GET.get("lab", "")
    labs = scope_labs(request.user)
    lab_obj = labs.get(slug) if slug else None
    if slug and lab_obj is None:
        raise Http404(_("No such lab in your reports."))
    try:
        period = chosen_period(request, grains=("year", "quarter"))
        if lab_obj is not None:
            sections = lab_sections(request.user, period, lab_obj, charts=False)
        else:
            sections = network_sections(request.user, period, labs)
    except BadPeriod:
        grid = picker(last_complete_quarter(timezone.localdate()), grains=("year", "quarter"))
        return _bad_period(request, "reports/print.html", lab=lab_obj, picker=grid)
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
        "definitions": definitions(SUMMARY + BOOKINGS + (PEOPLE if lab_obj else ())),
    }
    return render(request, "reports/print.html", context)
