"""REST API v1 for remote commands: a lab manager writes a command, the hub publishes it.

``POST /api/v1/machines/{id}/commands/`` writes a pending :class:`~devices.models.Command`
through :func:`devices.commands.issue_command` and answers ``202`` with its id and state;
``GET /api/v1/commands/{id}/`` follows it (published, then the machine's answer). Only the
managers of the machine's lab may do either; anyone else's command answers ``404``, so ids
reveal nothing. Mounted by :mod:`devices.urls`, before the booking API's catch-all.
"""

from __future__ import annotations

import uuid

from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from fablab.booking.api import AUTH_ERRORS, NOT_FOUND, MemberAPIView
from fablab.booking.api_errors import describe_codes
from fablab.booking.serializers import MAX_ID, ErrorSerializer
from fablab.labs.models import Machine
from fablab.members import roles
from firmware_bridge import protocol

from . import capabilities, commands
from .models import Command


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
