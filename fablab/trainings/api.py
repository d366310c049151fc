"""REST API v1 of training sessions: list, schedule and edit (managers and trainers), register, attendance.

Same conventions as :mod:`fablab.booking.api`: input serializer → service → output serializer, error
bodies ``{"code", "detail"}`` (codes of ``fablab.booking.errors.RULES``), times in the lab's UTC offset.

* ``GET /api/v1/training-sessions/``: upcoming sessions (``?lab=<slug>``, ``?training=<slug>``), any member.
* ``POST /api/v1/training-sessions/``: schedule one, a manager or trainer of its lab.
* ``GET|PATCH /api/v1/training-sessions/{id}/``: read (any member), edit (manager or trainer).
* ``POST|DELETE /api/v1/training-sessions/{id}/register/``: register (a seat or the waitlist), cancel.
* ``GET|POST /api/v1/training-sessions/{id}/attendance/``: the registrants, mark one present or absent.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from fablab.booking.api import (
    AUTH_ERRORS,
    ID_PARAMETER,
    NOT_FOUND,
    PAGE_NOT_FOUND,
    MemberAPIView,
    Pages,
    _page,
    _valid,
)
from fablab.booking.api_errors import describe_codes
from fablab.booking.errors import BookingError
from fablab.booking.serializers import MAX_ID, AwareDateTimeField, ErrorSerializer, TextField, local_iso
from fablab.labs.models import Lab, Machine
from fablab.members.models import Training

from . import access, attendance, selectors, services
from .models import Initiative, Registration, TrainingSession

# ---------------------------------------------------------------------------------------- serializers


class SessionSerializer(serializers.ModelSerializer):
    training = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    lab = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    machines = serializers.PrimaryKeyRelatedField(many=True, read_only=True)
    prerequisites = serializers.SlugRelatedField(slug_field="slug", many=True, read_only=True)
    initiative = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    start = serializers.SerializerMethodField()
    end = serializers.SerializerMethodField()
    seats_left = serializers.SerializerMethodField()
    cancelled = serializers.BooleanField(read_only=True)

    class Meta:
        model = TrainingSession
        fields = [
            "id",
            "training",
            "lab",
            "machines",
            "start",
            "end",
            "seats",
            "seats_left",
            "language",
            "initiative",
            "prerequisites",
            "outside_opening_hours",
            "cancelled",
        ]

    def get_start(self, obj) -> str:
        return local_iso(obj.start, obj.lab)

    def get_end(self, obj) -> str:
        return local_iso(obj.end, obj.lab)

    def get_seats_left(self, obj) -> int:
        return selectors.seats_left(obj)


class SessionWriteSerializer(serializers.Serializer):
    """Slugs for the training, lab, prerequisites and initiative; machine ids; times with a UTC offset."""

    training = TextField(max_length=63)
    lab = TextField(max_length=63)
    machines = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=MAX_ID), max_length=50
    )
    start = AwareDateTimeField()
    end = AwareDateTimeField()
    seats = serializers.IntegerField(min_value=1, max_value=1000)
    language = serializers.ChoiceField(choices=TrainingSession.Language.choices, default="en")
    initiative = TextField(max_length=63, required=False, allow_blank=True)
    prerequisites = serializers.ListField(child=TextField(max_length=63), required=False, max_length=20)
    outside_opening_hours = serializers.BooleanField(required=False, default=False)

    def validate(self, attrs: dict) -> dict:
        out = dict(attrs)
        if "lab" in attrs:
            out["lab"] = Lab.objects.filter(slug=attrs["lab"]).first()
            if out["lab"] is None:
                raise serializers.ValidationError({"lab": ["There is no lab with this slug."]})
        if "training" in attrs:
            out["training"] = Training.objects.filter(slug=attrs["training"]).first()
            if out["training"] is None:
                raise serializers.ValidationError({"training": ["There is no training with this slug."]})
        if "machines" in attrs:
            machines = list(Machine.objects.filter(pk__in=attrs["machines"]))
            if len(machines) != len(set(attrs["machines"])):
                raise serializers.ValidationError(
                    {"machines": ["There is no machine with one of these ids."]}
                )
            out["machines"] = machines
        if "prerequisites" in attrs:
            found = list(Training.objects.filter(slug__in=attrs["prerequisites"]))
            if len(found) != len(set(attrs["prerequisites"])):
                raise serializers.ValidationError(
                    {"prerequisites": ["There is no training with one of these slugs."]}
                )
            out["prerequisites"] = found
        if attrs.get("initiative"):
            out["initiative"] = Initiative.objects.filter(slug=attrs["initiative"]).first()
            if out["initiative"] is None:
                raise serializers.ValidationError({"initiative": ["There is no initiative with this slug."]})
        elif "initiative" in attrs:
            out["initiative"] = None
        if "start" in out and "end" in out and out["end"] <= out["start"]:
            raise serializers.ValidationError({"end": ["The end must be after the start."]})
        return out


class SessionFilterSerializer(serializers.Serializer):
    lab = TextField(required=False, max_length=63)
    training = TextField(required=False, max_length=63)


class RegistrationSerializer(serializers.ModelSerializer):
    member = serializers.CharField(source="member.username", read_only=True)
    waitlist_position = serializers.SerializerMethodField()

    class Meta:
        model = Registration
        fields = ["id", "session", "member", "status", "waitlist_position", "attended"]

    def get_waitlist_position(self, obj) -> int | None:
        return services.waitlist_position(obj)


class AttendanceSerializer(serializers.Serializer):
    member = serializers.IntegerField(min_value=1, max_value=MAX_ID, help_text="The member's user id.")
    present = serializers.BooleanField()


RULE_ERRORS = OpenApiResponse(ErrorSerializer, description=describe_codes("invalid"))


def _run_session(request: Request, pk: int) -> TrainingSession:
    session = get_object_or_404(TrainingSession.objects.select_related("lab", "training"), pk=pk)
    if not access.may_run(request.user, session.lab):
        raise exceptions.PermissionDenied()
    return session


# ---------------------------------------------------------------------------------------- views


class SessionListView(MemberAPIView):
    pagination_class = Pages

    @extend_schema(
        operation_id="training_sessions_list",
        summary="Upcoming training sessions",
        parameters=[SessionFilterSerializer],
        responses={
            200: SessionSerializer(many=True),
            400: OpenApiResponse(ErrorSerializer, description=describe_codes("invalid")),
            404: PAGE_NOT_FOUND,
            **AUTH_ERRORS,
        },
        tags=["trainings"],
    )
    def get(self, request: Request) -> Response:
        params = _valid(SessionFilterSerializer, request.query_params)
        sessions = selectors.upcoming(now=timezone.now())
        if params.get("lab"):
            sessions = sessions.filter(lab__slug=params["lab"])
        if params.get("training"):
            sessions = sessions.filter(training__slug=params["training"])
        return _page(self, request, sessions, SessionSerializer)

    @extend_schema(
        operation_id="training_sessions_create",
        summary="Schedule a training session (a manager or trainer of its lab)",
        request=SessionWriteSerializer,
        responses={
            201: SessionSerializer,
            400: RULE_ERRORS,
            403: RULE_ERRORS,
            409: RULE_ERRORS,
            **AUTH_ERRORS,
        },
        tags=["trainings"],
    )
    def post(self, request: Request) -> Response:
        data = _valid(SessionWriteSerializer, request.data)
        if not access.may_run(request.user, data["lab"]):
            raise BookingError("forbidden")
        session = services.session_create(by=request.user, **data)
        return Response(SessionSerializer(session).data, status=status.HTTP_201_CREATED)


class SessionDetailView(MemberAPIView):
    @extend_schema(
        operation_id="training_sessions_retrieve",
        summary="A training session",
        parameters=[ID_PARAMETER],
        responses={200: SessionSerializer, 404: NOT_FOUND, **AUTH_ERRORS},
        tags=["trainings"],
    )
    def get(self, request: Request, pk: int) -> Response:
        session = get_object_or_404(TrainingSession.objects.select_related("lab", "training"), pk=pk)
        return Response(SessionSerializer(session).data)

    @extend_schema(
        operation_id="training_sessions_partial_update",
        summary="Edit a training session that has not started (a manager or trainer of its lab)",
        parameters=[ID_PARAMETER],
        request=SessionWriteSerializer,
        responses={
            200: SessionSerializer,
            400: RULE_ERRORS,
            403: RULE_ERRORS,
            404: NOT_FOUND,
            409: RULE_ERRORS,
        },
        tags=["trainings"],
    )
    def patch(self, request: Request, pk: int) -> Response:
        session = _run_session(request, pk)
        serializer = SessionWriteSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        changes = {k: v for k, v in serializer.validated_data.items() if k in services.EDITABLE}
        if set(serializer.validated_data) - set(services.EDITABLE) - {"language", "outside_opening_hours"}:
            raise serializers.ValidationError(
                {"training": ["The training and lab of a session cannot change."]}
            )
        session = services.session_update(session=session, by=request.user, **changes)
        return Response(SessionSerializer(session).data)


class SessionRegisterView(MemberAPIView):
    @extend_schema(
        operation_id="training_sessions_register",
        summary="Register for a session (a seat, or the waitlist when it is full)",
        parameters=[ID_PARAMETER],
        request=None,
        responses={201: RegistrationSerializer, 403: RULE_ERRORS, 404: NOT_FOUND, 409: RULE_ERRORS},
        tags=["trainings"],
    )
    def post(self, request: Request, pk: int) -> Response:
        session = get_object_or_404(TrainingSession, pk=pk)
        registration = services.register(session=session, member=request.user)
        return Response(RegistrationSerializer(registration).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        operation_id="training_sessions_unregister",
        summary="Cancel my registration (the first on the waitlist moves up)",
        parameters=[ID_PARAMETER],
        request=None,
        responses={200: RegistrationSerializer, 404: NOT_FOUND, 409: RULE_ERRORS},
        tags=["trainings"],
    )
    def delete(self, request: Request, pk: int) -> Response:
        registration = get_object_or_404(
            Registration.objects.exclude(status=Registration.Status.CANCELLED),
            session_id=pk,
            member=request.user,
        )
        registration = services.cancel_registration(registration=registration, by=request.user)
        return Response(RegistrationSerializer(registration).data)


class SessionAttendanceView(MemberAPIView):
    @extend_schema(
        operation_id="training_sessions_attendance",
        summary="The session's registrations (a manager or trainer of its lab)",
        parameters=[ID_PARAMETER],
        responses={200: RegistrationSerializer(many=True), 403: RULE_ERRORS, 404: NOT_FOUND},
        tags=["trainings"],
    )
    def get(self, request: Request, pk: int) -> Response:
        session = _run_session(request, pk)
        registrations = session.registrations.exclude(status=Registration.Status.CANCELLED).select_related(
            "member"
        )
        return Response(RegistrationSerializer(registrations, many=True).data)

    @extend_schema(
        operation_id="training_sessions_attendance_mark",
        summary="Mark a member present (grants the certification) or absent",
        parameters=[ID_PARAMETER],
        request=AttendanceSerializer,
        responses={200: RegistrationSerializer, 403: RULE_ERRORS, 404: NOT_FOUND, 409: RULE_ERRORS},
        tags=["trainings"],
    )
    def post(self, request: Request, pk: int) -> Response:
        session = _run_session(request, pk)
        data = _valid(AttendanceSerializer, request.data)
        registration = attendance.mark(
            session=session,
            member=get_object_or_404(get_user_model(), pk=data["member"]),
            present=data["present"],
            by=request.user,
        )
        return Response(RegistrationSerializer(registration).data)
