"""Web downloads for the report pages: ``/reports/export/<fmt>/?period=&level=&lab=``.

``fmt`` is ``csv``, ``csv-metadata`` (the CSV's W3C CSVW metadata, ``….csv-metadata.json``) or
``xlsx``. The same
access and cells as the pages (:func:`fablab.reports.service.report`); every download is logged
(``via="web"``). A lab outside the viewer's scope is a 404, exactly like one that does not exist.
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET

from . import exports, service

FORMATS = ("csv", "csv-metadata", "xlsx")
#: ExportLog.fmt holds at most 8 characters.
LOGGED_AS = {"csv-metadata": "csvw"}


def export_url(fmt: str, period: str, level: str, lab: str = "") -> str:
    """The download URL of one slice (for the pages' links)."""
    query = {"period": period, "level": level} | ({"lab": lab} if lab else {})
    return reverse("reports:export", args=[fmt]) + "?" + urlencode(query)


@require_GET
@login_required
def export(request: HttpRequest, fmt: str) -> HttpResponse:
    if fmt not in FORMATS:
        raise Http404
    try:
        report = service.report(
            request.user,
            request.GET.get("period", ""),
            request.GET.get("level") or "network",
            request.GET.get("lab") or None,
        )
    except service.ReportError as error:
        if error.status == 404:
            raise Http404 from None
        return HttpResponseBadRequest(error.detail, content_type="text/plain; charset=utf-8")
    period, level = str(report.period), report.level
    lab = report.lab.slug if report.lab else ""
    exports.log_export(
        request.user,
        fmt=LOGGED_AS.get(fmt, fmt),
        period=period,
        level=level,
        lab=lab,
        via="web",
        rows=len(report.cells),
    )
    if fmt == "csv":
        response = HttpResponse(exports.csv_bytes(report.cells), content_type=exports.CSV_TYPE)
        name = exports.filename(period, level, lab, ext="csv")
        # CSVW's way to find the metadata of a CSV (W3C "Model for Tabular Data", section 5.2).
        metadata = request.build_absolute_uri(export_url("csv-metadata", period, level, lab))
        response["Link"] = f'<{metadata}>; rel="describedby"; type="{exports.CSVW_TYPE}"'
    elif fmt == "csv-metadata":
        title = _("Programme report %(period)s, %(level)s") % {"period": period, "level": level}
        if lab:
            title += f", {report.lab.name}"
        metadata = exports.csvw_metadata(
            request.build_absolute_uri(export_url("csv", period, level, lab)), title=title
        )
        response = HttpResponse(
            json.dumps(metadata, ensure_ascii=False, indent=2), content_type=exports.CSVW_TYPE
        )
        name = exports.filename(period, level, lab, ext="csv-metadata.json")
    else:
        title = _("Programme report %(period)s") % {"period": period}
        response = HttpResponse(exports.xlsx_bytes(report.cells, title=title), content_type=exports.XLSX_TYPE)
        name = exports.filename(period, level, lab, ext="xlsx")
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response
