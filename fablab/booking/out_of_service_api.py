"""REST API for lab managers: put a machine out of service, and back in service.

``POST /api/v1/machines/{id}/out-of-service/`` ``{"kind": "planned"|"breakdown", "until": <ISO 8601
with offset>, "reason": ""}`` and ``POST /api/v1/machines/{id}/back-in-service/`` (no body). The work
is :mod:`fablab.booking.out_of_service`'s. Someone who manages no lab gets 403 ``forbidden``
before the id is looked up; a machine of a lab the caller does not manage is 404, like an unknown one.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from fablab.labs.models import Machine, MaintenanceWindow
from fablab.members import roles

from . import out_of_service
from .api import AUTH_ERRORS, ID_PARAMETER, NOT_FOUND, MemberAPIView
from .api_errors import describe_codes
from .errors import BookingError
from .serializers import MAX_ID, AwareDateTimeField, ErrorSerializer, TextField, local_iso


class OutOfServiceSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(
        choices=MaintenanceWindow.Kind.choices,
        help_text="`planned` (maintenance: planned downtime) or `breakdown` (unplanned downtime).",
    )
    until = AwareDateTimeField(help_text="ISO 8601 with a UTC offset; after now.")
    reason = TextField(required=False, allow_blank=True, max_length=200, default="")


class WindowSerializer(serializers.Serializer):
    """A maintenance window, its times in the lab's UTC offset."""

    id = serializers.IntegerField()
    machine = serializers.IntegerField(source="machine_id")
    kind = serializers.CharField()
    start = serializers.SerializerMethodField()
    end = serializers.SerializerMethodField()
    reason = serializers.CharField()

    def get_start(self, window: MaintenanceWindow) -> str:
        return local_iso(window.start, window.machine.lab)

    def get_end(self, window: MaintenanceWindow) -> str:
        return local_iso(window.end, window.machine.lab)


class OutOfServiceResultSerializer(serializers.Serializer):
    window = WindowSerializer()
    cancelled = serializers.ListField(
        child=serializers.IntegerField(), help_text="Ids of the member bookings cancelled (members emailed)."
    )
    sessions_cancelled = serializers.ListField(
        child=serializers.IntegerField(),
        help_text="Ids of the training and workshop bookings cancelled: tell their participants.",
    )
    kept = serializers.ListField(
        child=serializers.IntegerField(),
        help_text="Ids of the bookings under way that stay (checked in, or a session under way).",
    )


def _managed_machine(request: Request, pk: int) -> Machine:
    if not roles.manages_any_lab(request.user):
        raise BookingError("forbidden")
    machine = (
        Machine.objects.select_related("lab", "machine_type").filter(pk=pk).first() if pk <= MAX_ID else None
    )
    if machine is None or not roles.manages_lab(request.user, machine.lab_id):
        raise exceptions.NotFound()
    return machine


class MachineOutOfServiceView(MemberAPIView):
    @extend_schema(
        operation_id="machines_out_of_service",
        summary="Put a machine out of service from now until a moment (managers of its lab)",
        description=(
            "Pending and confirmed bookings in that time are cancelled (`cancel_reason` `out_of_service`) "
            "and their members emailed with the nearest free time they may book instead; checked-in "
            "bookings stay. A window of the same kind under way is extended (or shortened) instead of "
            "a new one; one of the other kind ends now. New bookings in the window get "
            "`machine_out_of_service`."
        ),
        request=OutOfServiceSerializer,
        parameters=[ID_PARAMETER],
        responses={
            201: OutOfServiceResultSerializer,
            400: OpenApiResponse(
                ErrorSerializer, description=describe_codes("invalid", "invalid_range", "too_far_ahead")
            ),
            403: OpenApiResponse(ErrorSerializer, description=describe_codes("forbidden")),
            404: NOT_FOUND,
            **AUTH_ERRORS,
        },
        tags=["machines"],
    )
    def post(self, request: Request, pk: int) -> Response:
        machine = _managed_machine(request, pk)
        serializer = OutOfServiceSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        result = out_of_service.put_out_of_service(
            machine=machine, kind=data["kind"], until=data["until"], reason=data["reason"], by=request.user
        )
        body = {
            "window": WindowSerializer(result.window).data,
            "cancelled": [b.pk for b in result.hits.cancelled],
            "sessions_cancelled": [b.pk for b in result.hits.sessions],
            "kept": [b.pk for b in result.hits.kept],
        }
        return Response(body, status=status.HTTP_201_CREATED)


class MachineBackInServiceView(MemberAPIView):
    @extend_schema(
        operation_id="machines_back_in_service",
        summary="End the machine's out-of-service time now (managers of its lab)",
        description=(
            "Every maintenance window under way ends now; the rest of its time is free again and "
            "offered to the waitlist. Without a body. `invalid_range` when the machine is not out of "
            "service now."
        ),
        request=None,
        parameters=[ID_PARAMETER],
        responses={
            200: WindowSerializer(many=True),
            400: OpenApiResponse(ErrorSerializer, description=describe_codes("invalid_range")),
            403: OpenApiResponse(ErrorSerializer, description=describe_codes("forbidden")),
            404: NOT_FOUND,
            **AUTH_ERRORS,
        },
        tags=["machines"],
    )
    def post(self, request: Request, pk: int) -> Response:
        machine = _managed_machine(request, pk)
        windows = out_of_service.back_in_service_machine(machine=machine, by=request.user)
        return Response(WindowSerializer(windows, many=True).data)
