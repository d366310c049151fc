"""REST API v1: a machine's care for its lab's managers (``GET /api/v1/machines/{id}/care/``).

What :func:`devices.care.summary` shows on the machine's page: run hours and jobs (last 30 days and in
total), laser-on hours where the machine reports laser power (null when InfluxDB did not answer), every
service interval with its hours used and left, the last services and the open fault members reported.
``POST /api/v1/alerts/{id}/resolve/`` closes such a fault report (:func:`devices.fault_reports.resolve`).
Anyone but the lab's managers gets ``403``; an unknown machine or fault report ``404``. Mounted by
:mod:`devices.urls`, before the booking API's catch-all.
"""

from __future__ import annotations

from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, serializers
from rest_framework.request import Request
from rest_framework.response import Response

from fablab.booking.api import AUTH_ERRORS, NOT_FOUND, MemberAPIView
from fablab.booking.serializers import MAX_ID
from fablab.labs.models import Machine
from fablab.members import roles

from . import care, fault_reports
from .api import FORBIDDEN, AlertSerializer
from .models import Alert


class UseSerializer(serializers.Serializer):
    recent_hours = serializers.FloatField(help_text="Run hours in the last 30 days, from the usage sessions.")
    recent_jobs = serializers.IntegerField(help_text="Runs started in the last 30 days.")
    total_hours = serializers.FloatField(help_text="Run hours since the machine's first session.")
    total_jobs = serializers.IntegerField(help_text="Runs since the machine's first session.")


class LaserSerializer(serializers.Serializer):
    recent = serializers.FloatField(
        allow_null=True, help_text="Laser-on hours in the last 30 days; null: unknown."
    )
    total = serializers.FloatField(allow_null=True, help_text="Laser-on hours in total; null: unknown.")


class IntervalStatusSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="interval.pk")
    name = serializers.CharField(source="interval.name")
    basis = serializers.CharField(source="interval.basis", help_text="`run` or `laser` (laser-on hours).")
    every_hours = serializers.IntegerField(source="every")
    since = serializers.DateTimeField(help_text="The last service, or when counting started.")
    used_hours = serializers.FloatField(source="used", allow_null=True, help_text="Null: unknown (InfluxDB).")
    left_hours = serializers.FloatField(source="left", allow_null=True, help_text="Negative once overdue.")
    due = serializers.BooleanField()


class RecordSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="pk")
    interval = serializers.IntegerField(source="interval_id")
    task = serializers.CharField(source="interval.name")
    at = serializers.DateTimeField()
    by = serializers.SerializerMethodField()
    note = serializers.CharField()
    hours = serializers.FloatField(help_text="Hours counted since the previous service when it was done.")

    def get_by(self, record) -> str | None:
        return record.by.get_username() if record.by is not None else None


class FaultSerializer(serializers.Serializer):
    id = serializers.IntegerField(
        source="alert_id", help_text="The alert's id: `POST /api/v1/alerts/{id}/resolve/` closes it."
    )
    raised_at = serializers.DateTimeField(help_text="When the first member reported it.")
    booking = serializers.IntegerField(
        source="booking_id", allow_null=True, help_text="The booking of the first report."
    )
    lines = serializers.ListField(
        child=serializers.CharField(),
        help_text="Each member's report: `#<booking id> <member>: <their words>`.",
    )


class CareSerializer(serializers.Serializer):
    machine = serializers.IntegerField()
    use = UseSerializer()
    laser = LaserSerializer(allow_null=True, help_text="Null when the machine reports no laser power.")
    intervals = IntervalStatusSerializer(many=True, source="statuses")
    records = RecordSerializer(many=True, help_text="The last services, newest first.")
    fault = FaultSerializer(allow_null=True, help_text="The fault members reported, while open; else null.")


class MachineCareView(MemberAPIView):
    @extend_schema(
        operation_id="machines_care_retrieve",
        summary="A machine's use and service intervals (lab managers)",
        description=(
            "Run hours and jobs from the machine's usage sessions, laser-on hours from its telemetry (GRBL "
            "in laser mode; null when unknown), each service interval with its hours used and left, the "
            "last services and the open fault members reported. See docs/machine-care.md."
        ),
        parameters=[OpenApiParameter("id", int, OpenApiParameter.PATH)],
        responses={200: CareSerializer, 403: FORBIDDEN, 404: NOT_FOUND, **AUTH_ERRORS},
        tags=["machines"],
    )
    def get(self, request: Request, pk: int) -> Response:
        machine = Machine.objects.select_related("lab").filter(pk=pk).first() if pk <= MAX_ID else None
        if machine is None:
            raise exceptions.NotFound()
        if not roles.manages_lab(request.user, machine.lab_id):
            raise exceptions.PermissionDenied(_("Only the lab's managers may see a machine's care."))
        data = care.summary(machine, timezone.now())
        return Response(CareSerializer({"machine": machine.pk, **data}).data)


class FaultResolveView(MemberAPIView):
    @extend_schema(
        operation_id="alerts_resolve",
        summary="Mark a fault reported by members as resolved (lab managers)",
        description=(
            "Closes the `fault_reported` alert `id` now and answers with it. One already closed (by "
            "another manager, by a service recorded on the machine, or by putting the machine back in "
            "service) is answered as it is. Only fault reports are closed by hand: the other alerts "
            "follow the machine's state, and their ids answer `404` here."
        ),
        request=None,
        parameters=[OpenApiParameter("id", int, OpenApiParameter.PATH)],
        responses={200: AlertSerializer, 403: FORBIDDEN, 404: NOT_FOUND, **AUTH_ERRORS},
        tags=["alerts"],
    )
    def post(self, request: Request, pk: int) -> Response:
        reports = Alert.objects.filter(kind=Alert.Kind.FAULT_REPORTED).select_related("machine")
        alert = reports.filter(pk=pk).first() if pk <= MAX_ID else None
        if alert is None:
            raise exceptions.NotFound()
        if not roles.manages_lab(request.user, alert.machine.lab_id):
            raise exceptions.PermissionDenied(_("Only the lab's managers may resolve a fault report."))
        fault_reports.resolve(alert, request.user, timezone.now())
        alert.refresh_from_db(fields=["cleared_at"])
        return Response(AlertSerializer(alert).data)
