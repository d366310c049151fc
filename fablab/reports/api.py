"""``GET /api/v1/reports/``: the programme reports as tidy rows (JSON), or as the CSV or XLSX file.

The same answer as the pages and the web downloads, through :func:`fablab.reports.service.report`: an
officer's token sees the labs of their programmes only, a manager's their labs; every figure went
through the disclosure control. Every call is logged (``ExportLog``, ``via="api"``).

``format`` is this endpoint's own parameter (``json``, ``csv``, ``xlsx``), not DRF's renderer
override: the view speaks JSON for every error, whatever file was asked for.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.request import Request
from rest_framework.response import Response

from fablab.booking.api import AUTH_ERRORS, MemberAPIView
from fablab.booking.api_errors import describe_codes
from fablab.booking.serializers import ErrorSerializer

from . import exports, service
from .cells import LEVELS

FORMATS = ("json", "csv", "xlsx")


class ReportRefused(exceptions.APIException):
    """A :class:`~fablab.reports.service.ReportError` as an API answer (its status, code and message)."""

    def __init__(self, error: service.ReportError) -> None:
        self.status_code = error.status
        super().__init__(detail=error.detail, code=error.code)


class _NoFormatOverride:
    URL_FORMAT_OVERRIDE = None


class FormatIsOurs(DefaultContentNegotiation):
    """Content negotiation that leaves ``?format=`` to the view (it names a file, not a renderer)."""

    settings = _NoFormatOverride


class ProgrammeReportRowSerializer(serializers.Serializer):
    period = serializers.CharField(help_text="2026, 2026-Q3 or 2026-07.")
    lab = serializers.CharField(allow_blank=True, help_text="Lab slug; empty at network level.")
    machine_type = serializers.CharField(allow_blank=True)
    machine = serializers.CharField(allow_blank=True)
    dimension = serializers.CharField(
        allow_blank=True, help_text="The table's one breakdown; empty for a total."
    )
    category = serializers.CharField(allow_blank=True)
    metric = serializers.CharField()
    value = serializers.FloatField(allow_null=True, help_text="Empty when suppressed (obs_status c).")
    unit = serializers.CharField()
    obs_status = serializers.CharField(
        allow_blank=True, help_text="c suppressed, p provisional (running period), e estimated."
    )


class ProgrammeReportSerializer(serializers.Serializer):
    period = serializers.CharField()
    level = serializers.ChoiceField(choices=LEVELS)
    lab = serializers.CharField(allow_null=True, help_text="The lab asked for, or null.")
    labs = serializers.ListField(
        child=serializers.CharField(), help_text="The labs you may see (the network)."
    )
    generated_at = serializers.DateTimeField()
    rows = ProgrammeReportRowSerializer(many=True)


PARAMETERS = [
    OpenApiParameter(
        "period",
        str,
        required=True,
        pattern=r"^\d{4}(-Q[1-4]|-(0[1-9]|1[0-2]))?$",
        description="A calendar year (`2026`), quarter (`2026-Q3`) or month (`2026-07`). No free date ranges.",
    ),
    OpenApiParameter(
        "level", str, enum=list(LEVELS), default="network", description="The level of the rows."
    ),
    OpenApiParameter("lab", str, description="A lab slug: only that lab's rows (ignored at network level)."),
    OpenApiParameter("format", str, enum=list(FORMATS), default="json", description="JSON rows or a file."),
]


class ReportView(MemberAPIView):
    content_negotiation_class = FormatIsOurs

    @extend_schema(
        operation_id="reports_retrieve",
        summary="The programme report of one period and level, as tidy rows or a file",
        description=(
            "Officers see the labs of their programmes, lab managers their labs. Every figure went "
            "through the disclosure control: a suppressed value is empty with `obs_status` `c`."
        ),
        parameters=PARAMETERS,
        responses={
            (200, "application/json"): ProgrammeReportSerializer,
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="The tidy CSV (UTF-8)."),
            (200, exports.XLSX_TYPE): OpenApiResponse(OpenApiTypes.BINARY, description="The XLSX workbook."),
            (400, "application/json"): OpenApiResponse(
                ErrorSerializer,
                description=describe_codes("report_period_invalid", "report_level_invalid", "invalid"),
            ),
            **{(status, "application/json"): answer for status, answer in AUTH_ERRORS.items()},
            (403, "application/json"): OpenApiResponse(
                ErrorSerializer,
                description="Not an officer, manager or administrator. "
                + describe_codes("permission_denied"),
            ),
            (404, "application/json"): OpenApiResponse(
                ErrorSerializer, description=describe_codes("report_lab_not_found")
            ),
        },
        tags=["reports"],
    )
    def get(self, request: Request) -> Response | HttpResponse:
        params = request.query_params
        fmt = params.get("format") or "json"
        if fmt not in FORMATS:
            raise exceptions.ValidationError({"format": [f"Choose one of {', '.join(FORMATS)}."]})
        lab = params.get("lab") or None
        try:
            report = service.report(
                request.user, params.get("period") or "", params.get("level") or "network", lab
            )
        except PermissionDenied:
            raise exceptions.PermissionDenied() from None
        except service.ReportError as error:
            raise ReportRefused(error) from None
        lab_slug = report.lab.slug if report.lab else ""
        exports.log_export(
            request.user,
            fmt=fmt,
            period=str(report.period),
            level=report.level,
            lab=lab_slug,
            via="api",
            rows=len(report.cells),
        )
        name = exports.filename(str(report.period), report.level, lab_slug, ext=fmt)
        if fmt == "csv":
            return _file(exports.csv_bytes(report.cells), exports.CSV_TYPE, name)
        if fmt == "xlsx":
            return _file(exports.xlsx_bytes(report.cells), exports.XLSX_TYPE, name)
        return Response(
            {
                "period": str(report.period),
                "level": report.level,
                "lab": lab_slug or None,
                "labs": [scope_lab.slug for scope_lab in report.labs],
                "generated_at": report.generated_at,
                "rows": report.rows(),
            }
        )


def _file(content: bytes, content_type: str, name: str) -> HttpResponse:
    response = HttpResponse(content, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response
