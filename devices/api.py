"""REST API v1 for remote commands: a lab manager writes a command, the hub publishes it.

``POST /api/v1/machines/{id}/commands/`` writes a pending :class:`~devices.models.Command`
through :func:`devices.commands.issue_command` and answers ``202`` with its id and state;
``GET /api/v1/commands/{id}/`` follows it (published, then the machine's answer). Only the
managers of the machine's lab may do either; anyone else's command answers ``404``, so ids
reveal nothing. ``GET /api/v1/alerts/?lab=<slug>`` lists a lab's open alerts (``&state=all``: also
those cleared recently) to that lab's managers. Mounted by :mod:`devices.urls`, before the booking
API's catch-all.
"""

from __future__ import annotations

import datetime as dt
import uuid

from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from fablab.booking.api import AUTH_ERRORS, NOT_FOUND, MemberAPIView, Pages, _page
from fablab.booking.api_errors import describe_codes
from fablab.booking.serializers import MAX_ID, ErrorSerializer, TextField
from fablab.labs.models import Lab, Machine
from fablab.members import roles
from firmware_bridge import protocol

from . import capabilities, commands
from .models import Alert, Command


class CommandCreateSerializer(serializers.Serializer):
    action = serializers.ChoiceField(
        choices=sorted(protocol.ACTIONS), help_text="What the machine should do."
    )


class CommandSerializer(serializers.ModelSerializer):
    issued_by = serializers.SerializerMethodField(
        help_text="The member who sent it; null for the system's commands and for an erased member."
    )

    class Meta:
        model = Command
        fields = [
            "id", "machine", "action", "source", "issued_by", "booking", "issued_at", "expires_at",
            "state", "published_at", "attempts", "result", "error_code", "error_message", "answered_at",
        ]  # fmt: skip
        read_only_fields = fields
        extra_kwargs = {
            "state": {
                "help_text": "Delivery: pending (waiting for the hub), claimed (being sent), published "
                "(the broker has it), expired (never sent: its time ran out first)."
            },
            "result": {
                "help_text": "The machine's answer: sent (none yet), ok, failed (see error_code), "
                "no_answer (none well after expires_at)."
            },
            "attempts": {"help_text": "How often a hub took it to send; more than 1 after a hub failed."},
        }

    def get_issued_by(self, command: Command) -> str | None:
        return command.issued_by.get_username() if command.issued_by is not None else None


FORBIDDEN = OpenApiResponse(ErrorSerializer, description=describe_codes("permission_denied"))


class MachineCommandsView(MemberAPIView):
    @extend_schema(
        operation_id="machines_commands_create",
        summary="Send a command to a machine (lab managers)",
        description=(
            "Writes the command and answers at once with `202` and its `id`; the hub publishes it to the "
            "machine's bridge within a few seconds. Follow it with `GET /api/v1/commands/{id}/`. A command "
            "not sent within its lifetime (30 s) ends `failed` with `error_code` `expired` and is never sent. "
            "An action the machine cannot carry out (its bridge's capabilities: a power plug has no "
            "`pause`, a machine without interlock no `enable`) is refused with `400` `invalid`, the "
            "reason under `fields.action`, and nothing is written."
        ),
        parameters=[OpenApiParameter("id", int, OpenApiParameter.PATH)],
        request=CommandCreateSerializer,
        responses={
            202: CommandSerializer,
            400: OpenApiResponse(ErrorSerializer, description=describe_codes("invalid")),
            403: FORBIDDEN,
            404: NOT_FOUND,
            **AUTH_ERRORS,
        },
        tags=["commands"],
    )
    def post(self, request: Request, pk: int) -> Response:
        machine = Machine.objects.select_related("lab").filter(pk=pk).first() if pk <= MAX_ID else None
        if machine is None:
            raise exceptions.NotFound()
        if not roles.manages_lab(request.user, machine.lab_id):
            raise exceptions.PermissionDenied(_("Only the lab's managers may send commands to its machines."))
        serializer = CommandCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            command = commands.issue_command(
                machine=machine, action=serializer.validated_data["action"], issued_by=request.user
            )
        except capabilities.CommandRefused as refused:  # nothing written; the reason is translated
            raise serializers.ValidationError({"action": [refused.message]}) from None
        return Response(CommandSerializer(command).data, status=status.HTTP_202_ACCEPTED)


class CommandDetailView(MemberAPIView):
    @extend_schema(
        operation_id="commands_retrieve",
        summary="One command and what came of it (lab managers)",
        parameters=[OpenApiParameter("id", uuid.UUID, OpenApiParameter.PATH)],
        responses={200: CommandSerializer, 404: NOT_FOUND, **AUTH_ERRORS},
        tags=["commands"],
    )
    def get(self, request: Request, pk: uuid.UUID) -> Response:
        command = Command.objects.select_related("machine", "issued_by").filter(pk=pk).first()
        if command is None or not roles.manages_lab(request.user, command.machine.lab_id):
            raise exceptions.NotFound()
        return Response(CommandSerializer(command).data)


#: How far back ``?state=all`` reaches for cleared alerts.
RECENT = dt.timedelta(days=7)


class AlertFilterSerializer(serializers.Serializer):
    lab = TextField(max_length=63, help_text="The lab's slug (required).")
    state = serializers.ChoiceField(
        choices=["open", "all"],
        default="open",
        required=False,
        help_text="`open` (default): the open alerts; `all`: also those cleared in the last 7 days.",
    )


class AlertMachineSerializer(serializers.ModelSerializer):
    class Meta:
        model = Machine
        fields = ["id", "slug", "name"]


class AlertSerializer(serializers.ModelSerializer):
    machine = AlertMachineSerializer(read_only=True)
    kind_label = serializers.CharField(
        source="get_kind_display", read_only=True, help_text="`kind`, translated."
    )
    booking = serializers.PrimaryKeyRelatedField(
        read_only=True, allow_null=True, help_text="The booking it is about (overrun: the booking run into)."
    )

    class Meta:
        model = Alert
        fields = ["id", "machine", "kind", "kind_label", "message", "raised_at", "cleared_at", "booking"]
        read_only_fields = fields
        extra_kwargs = {
            "kind": {
                "help_text": "offline, error, job_failed, silent (no telemetry), unbooked (running without a "
                "checked-in booking), overrun (running into the next booking), booked_offline (a booked "
                "machine offline at the start), interlock (the lock not in its wanted state), "
                "fault_reported (members' fault lines when finishing early; `booking` is the first one's)."
            },
            "cleared_at": {"help_text": "Null while the alert is open."},
        }


class AlertListView(MemberAPIView):
    pagination_class = Pages

    @extend_schema(
        operation_id="alerts_list",
        summary="A lab's machine alerts (lab managers)",
        description=(
            "The open alerts of the lab's machines, newest first; with `state=all` also those cleared in "
            "the last 7 days. In pages of `page_size` (default 50, at most 200). Only the lab's managers "
            "may list them."
        ),
        parameters=[AlertFilterSerializer],
        responses={
            200: AlertSerializer(many=True),
            400: OpenApiResponse(ErrorSerializer, description=describe_codes("invalid")),
            403: FORBIDDEN,
            404: OpenApiResponse(
                ErrorSerializer,
                description="No lab with this slug, or a `page` after the last one. "
                + describe_codes("not_found"),
            ),
            **AUTH_ERRORS,
        },
        tags=["alerts"],
    )
    def get(self, request: Request) -> Response:
        filters = AlertFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        lab = Lab.objects.filter(slug=filters.validated_data["lab"]).first()
        if lab is None:
            raise exceptions.NotFound()
        if not roles.manages_lab(request.user, lab):
            raise exceptions.PermissionDenied(_("Only the lab's managers may see its alerts."))
        alerts = Alert.objects.filter(machine__lab=lab).select_related("machine")
        if filters.validated_data.get("state", "open") == "all":
            alerts = alerts.filter(Q(cleared_at__isnull=True) | Q(cleared_at__gte=timezone.now() - RECENT))
        else:
            alerts = alerts.filter(cleared_at__isnull=True)
        return _page(self, request, alerts.order_by("-raised_at", "-pk"), AlertSerializer)
