"""REST API v1: thin views, input serializer → service or selector → output serializer.

Visibility: a member sees their own bookings; a lab manager also sees, and
may act on, the bookings of the labs they manage. Anyone else's booking is
answered with 404, so ids reveal nothing.
"""

from __future__ import annotations

import re

from django.conf import settings
from django.contrib.auth import authenticate
from django.db.models import QuerySet
from django.utils import translation
from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from fablab.labs.models import Lab, Machine
from fablab.members import roles, throttle
from fablab.members.models import MemberProfile

from . import idempotency, lifecycle, selectors, services
from .api_errors import InvalidCredentials, describe_codes
from .errors import RULES, BookingError
from .models import Booking
from .serializers import (
    MAX_ID,
    AvailabilityQuerySerializer,
    BookingCreateSerializer,
    BookingFilterSerializer,
    BookingSerializer,
    ErrorSerializer,
    IntervalSerializer,
    LabSerializer,
    MachineFilterSerializer,
    MachineSerializer,
    TextField,
    TokenObtainSerializer,
    TokenSerializer,
    local_iso,
)

AUTH_ERRORS = {
    401: OpenApiResponse(
        ErrorSerializer, description=describe_codes("not_authenticated", "authentication_failed")
    ),
}
NOT_FOUND = OpenApiResponse(ErrorSerializer, description=describe_codes("not_found"))
PAGE_NOT_FOUND = OpenApiResponse(
    ErrorSerializer, description="A `page` after the last one. " + describe_codes("not_found")
)
ID_PARAMETER = OpenApiParameter("id", int, OpenApiParameter.PATH)
#: Rules a new booking can break, grouped by HTTP status for the schema.
CREATE_CODES = [
    code
    for code in RULES
    if code not in ("not_cancellable", "not_pending", "forbidden", "check_in_too_early", "check_in_closed")
]


def _codes_with_status(status_code: int, codes: list[str], *extra: str) -> OpenApiResponse:
    chosen = [code for code in codes if RULES[code][0] == status_code]
    return OpenApiResponse(ErrorSerializer, description=describe_codes(*extra, *chosen))


def _valid(serializer_class, data) -> dict:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _check_range(params: dict) -> None:
    start, end = params.get("from"), params.get("to")
    if start is None or end is None:
        return
    if end <= start:
        raise BookingError("invalid_range", _("“to” must be after “from”."))
    if end - start > AvailabilityQuerySerializer.MAX_SPAN:
        raise BookingError(
            "invalid_range",
            _("A range may span at most %(days)s days.")
            % {"days": AvailabilityQuerySerializer.MAX_SPAN.days},
        )


class Pages(PageNumberPagination):
    """Every list of the API comes in pages: ``?page=2``, ``?page_size=`` up to 200 (default 50).

    The body is ``{"count", "next", "previous", "results"}``; ``next`` is the link to follow.
    """

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


def _page(view: APIView, request: Request, queryset, serializer_class) -> Response:
    paginator = view.pagination_class()
    page = paginator.paginate_queryset(queryset, request, view=view)
    return paginator.get_paginated_response(serializer_class(page, many=True).data)


class MemberAPIView(APIView):
    """Speaks the member's preferred language unless the request asks for one (``Accept-Language``).

    Token-authenticated requests never pass the member language middleware:
    DRF authenticates inside the view.
    """

    def initial(self, request: Request, *args, **kwargs) -> None:
        super().initial(request, *args, **kwargs)
        if (
            "HTTP_ACCEPT_LANGUAGE" not in request.META
            and settings.LANGUAGE_COOKIE_NAME not in request.COOKIES
        ):
            language = (
                MemberProfile.objects.filter(user=request.user).values_list("language", flat=True).first()
            )
            if language:
                translation.activate(language)
                request._request.LANGUAGE_CODE = language


class TokenView(APIView):
    """A new API token (django-rest-knox: only its hash is stored) for a username or email and password.

    Every call makes a new token, valid ``REST_KNOX["TOKEN_TTL"]`` (30 days by default); the member
    lists and revokes them on their profile page, and a new password revokes them all. Throttled like
    every login (:mod:`fablab.members.throttle`): checked before the password, 429 with ``Retry-After``.
    """

    # No authentication: a stale token in the header must not block getting a new one.
    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes: list = []

    @extend_schema(
        operation_id="auth_token_create",
        summary="Exchange a username and password for an API token",
        request=TokenObtainSerializer,
        responses={
            200: TokenSerializer,
            400: OpenApiResponse(
                ErrorSerializer, description=describe_codes("invalid", "invalid_credentials")
            ),
            429: OpenApiResponse(ErrorSerializer, description=describe_codes("throttled")),
        },
        auth=[],
        tags=["auth"],
    )
    def post(self, request: Request) -> Response:
        from knox.models import AuthToken

        from fablab.members.accounts import email_confirmed

        data = _valid(TokenObtainSerializer, request.data)
        try:
            throttle.check(request._request, data["username"])
        except throttle.Throttled as exc:
            raise exceptions.Throttled(wait=exc.retry_after, detail=exc.message()) from None
        # A failure is counted by the user_login_failed signal that authenticate() sends.
        user = authenticate(request._request, username=data["username"], password=data["password"])
        if user is None or not user.is_active or not email_confirmed(user):
            raise InvalidCredentials()
        throttle.note_success(request._request, data["username"])
        instance, token = AuthToken.objects.create(user=user)
        return Response({"token": token, "expiry": instance.expiry})


class LabListView(MemberAPIView):
    pagination_class = Pages

    @extend_schema(
        operation_id="labs_list",
        summary="List the labs",
        responses={200: LabSerializer(many=True), 404: PAGE_NOT_FOUND, **AUTH_ERRORS},
        tags=["labs"],
    )
    def get(self, request: Request) -> Response:
        return _page(self, request, Lab.objects.order_by("name", "pk"), LabSerializer)


class MachineListView(MemberAPIView):
    pagination_class = Pages

    @extend_schema(
        operation_id="machines_list",
        summary="List the machines, optionally of one lab and one type",
        parameters=[MachineFilterSerializer],
        responses={
            200: MachineSerializer(many=True),
            400: OpenApiResponse(ErrorSerializer, description=describe_codes("invalid")),
            404: PAGE_NOT_FOUND,
            **AUTH_ERRORS,
        },
        tags=["machines"],
    )
    def get(self, request: Request) -> Response:
        filters = _valid(MachineFilterSerializer, request.query_params)
        machines = Machine.objects.select_related("lab", "machine_type", "required_training")
        if "lab" in filters:
            machines = machines.filter(lab__slug=filters["lab"])
        if "type" in filters:
            machines = machines.filter(machine_type__slug=filters["type"])
        return _page(self, request, machines.order_by("lab__name", "name", "pk"), MachineSerializer)


def _machine(pk: int) -> Machine:
    machine = None
    if pk <= MAX_ID:
        machine = (
            Machine.objects.select_related("lab", "machine_type", "required_training").filter(pk=pk).first()
        )
    if machine is None:
        raise exceptions.NotFound()
    return machine


class MachineDetailView(MemberAPIView):
    @extend_schema(
        operation_id="machines_retrieve",
        summary="One machine",
        parameters=[ID_PARAMETER],
        responses={200: MachineSerializer, 404: NOT_FOUND, **AUTH_ERRORS},
        tags=["machines"],
    )
    def get(self, request: Request, pk: int) -> Response:
        return Response(MachineSerializer(_machine(pk)).data)


class AvailabilityView(MemberAPIView):
    @extend_schema(
        operation_id="machines_availability",
        summary="Free time of a machine",
        description=(
            "The intervals within [from, to) in which a booking of this machine could lie: inside opening "
            "hours, outside maintenance, other bookings (with the machine's buffer), notice and days-ahead "
            "limits, aligned to the slot granularity. Times use the lab's UTC offset. The range may span "
            f"at most {AvailabilityQuerySerializer.MAX_SPAN.days} days. In a query string, write `+` as `%2B`."
        ),
        parameters=[ID_PARAMETER, AvailabilityQuerySerializer],
        responses={
            200: IntervalSerializer(many=True),
            400: OpenApiResponse(ErrorSerializer, description=describe_codes("invalid", "invalid_range")),
            404: NOT_FOUND,
            **AUTH_ERRORS,
        },
        tags=["machines"],
    )
    def get(self, request: Request, pk: int) -> Response:
        machine = _machine(pk)
        params = _valid(AvailabilityQuerySerializer, request.query_params)
        _check_range(params)
        free = selectors.availability_for_machine(machine=machine, start=params["from"], end=params["to"])
        lab = machine.lab
        return Response([{"start": local_iso(start, lab), "end": local_iso(end, lab)} for start, end in free])


def visible_bookings(user) -> QuerySet[Booking]:
    """Bookings ``user`` may see: their own, and every booking of the labs they manage."""
    return roles.bookings_in_full(user, Booking.objects.select_related("machine", "machine__lab", "member"))


def _booking(request: Request, pk: int) -> Booking:
    booking = visible_bookings(request.user).filter(pk=pk).first() if pk <= MAX_ID else None
    if booking is None:
        raise exceptions.NotFound()
    return booking


class BookingListView(MemberAPIView):
    pagination_class = Pages

    @extend_schema(
        operation_id="bookings_list",
        summary="Your bookings (lab managers: a managed lab's bookings with ?lab=)",
        description=(
            "Without `lab`, your own bookings. With `lab`, every booking of that lab if you manage it, "
            "otherwise your own bookings there. `from`/`to` keep the bookings that overlap the range. "
            "In pages of `page_size` (default 50, at most 200), oldest first; follow `next`."
        ),
        parameters=[BookingFilterSerializer],
        responses={
            200: BookingSerializer(many=True),
            400: OpenApiResponse(ErrorSerializer, description=describe_codes("invalid", "invalid_range")),
            404: PAGE_NOT_FOUND,
            **AUTH_ERRORS,
        },
        tags=["bookings"],
    )
    def get(self, request: Request) -> Response:
        filters = _valid(BookingFilterSerializer, request.query_params)
        _check_range(filters)
        bookings = visible_bookings(request.user)
        if "lab" in filters:
            bookings = bookings.filter(machine__lab__slug=filters["lab"])
            lab = Lab.objects.filter(slug=filters["lab"]).first()
            if lab is None or not roles.manages_lab(request.user, lab):
                bookings = bookings.filter(member=request.user)
        else:
            bookings = bookings.filter(member=request.user)
        if "machine" in filters:
            bookings = bookings.filter(machine_id=filters["machine"])
        if "status" in filters:
            bookings = bookings.filter(status=filters["status"])
        if "from" in filters:
            bookings = bookings.filter(end__gt=filters["from"])
        if "to" in filters:
            bookings = bookings.filter(start__lt=filters["to"])
        return _page(self, request, bookings.order_by("start", "pk"), BookingSerializer)

    @extend_schema(
        operation_id="bookings_create",
        summary="Book a machine",
        description=(
            "Creates a `confirmed` booking, or a `pending` one on machines that need a lab manager's "
            "approval. Every booking rule has its own error code."
        ),
        request=BookingCreateSerializer,
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                str,
                OpenApiParameter.HEADER,
                description=(
                    "Optional. Retrying a POST with the same key (and the same body) returns the booking "
                    "the first attempt made, with the header `Idempotent-Replayed: true`, instead of a "
                    "second booking or a 409. The same key with another body is "
                    "`idempotency_key_reused`; while the first request with the key is still being "
                    "handled, a retry gets `idempotency_key_in_flight`. A refused request gives its key "
                    "back. Keys are remembered per member for a day, by every server process; after "
                    "that, a retry with a key still gets your identical booking (same machine, times "
                    "and purpose) if it is active."
                ),
            )
        ],
        responses={
            201: BookingSerializer,
            400: _codes_with_status(400, CREATE_CODES, "invalid"),
            403: _codes_with_status(403, CREATE_CODES),
            409: _codes_with_status(409, CREATE_CODES, "idempotency_key_reused", "idempotency_key_in_flight"),
            **AUTH_ERRORS,
        },
        tags=["bookings"],
    )
    def post(self, request: Request) -> Response:
        data = _valid(BookingCreateSerializer, request.data)
        key = _idempotency_key(request)
        if key is None:
            return Response(BookingSerializer(_create(request, data)).data, status=status.HTTP_201_CREATED)
        earlier = idempotency.begin(request.user, key, idempotency.fingerprint(_fingerprint(data)))
        if earlier is not None:
            return _answer(earlier, replayed=True)
        # This request holds the key: record what it made, or give the key back.
        try:
            booking = _create(request, data)
        except BookingError as exc:
            # A retry whose first attempt won but whose answer was lost, after the key was
            # forgotten: the time is taken by this very booking, so answer with it.
            same = (
                _identical_booking(request.user, data)
                if exc.code in ("already_booked_by_you", "slot_taken")
                else None
            )
            if same is None:
                idempotency.abandon(request.user, key)
                raise
            idempotency.finish(request.user, key, same)
            return _answer(same, replayed=True)
        except BaseException:
            idempotency.abandon(request.user, key)
            raise
        idempotency.finish(request.user, key, booking)
        return _answer(booking, replayed=False)


def _create(request: Request, data: dict) -> Booking:
    return services.booking_create(
        machine=data["machine"],
        member=request.user,
        start=data["start"],
        end=data["end"],
        purpose=data["purpose"],
    )


# Idempotent creation: a client may send ``Idempotency-Key: <any unique string>`` and retry
# the same POST safely. Keys live in the database (fablab.booking.idempotency), shared by
# every server process, for a day; after that the no-overlap rule still stops a second
# booking and the identical booking is found and returned instead.
IDEMPOTENCY_KEY_PATTERN = re.compile(r"^[\x21-\x7e]{1,255}$")


def _idempotency_key(request: Request) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not IDEMPOTENCY_KEY_PATTERN.match(key):
        raise serializers.ValidationError(
            {"Idempotency-Key": [_("Use 1 to 255 visible ASCII characters, without spaces.")]}
        )
    return key


def _fingerprint(data: dict) -> list:
    return [data["machine"].pk, data["start"].isoformat(), data["end"].isoformat(), data["purpose"]]


def _identical_booking(member, data: dict) -> Booking | None:
    return (
        Booking.objects.select_related("machine", "machine__lab", "member")
        .filter(
            member=member,
            machine=data["machine"],
            start=data["start"],
            end=data["end"],
            purpose=data["purpose"],
            status__in=Booking.ACTIVE,
        )
        .first()
    )


def _answer(booking: Booking, *, replayed: bool) -> Response:
    response = Response(BookingSerializer(booking).data, status=status.HTTP_201_CREATED)
    if replayed:
        response["Idempotent-Replayed"] = "true"
    return response


class BookingDetailView(MemberAPIView):
    @extend_schema(
        operation_id="bookings_retrieve",
        summary="One booking",
        parameters=[ID_PARAMETER],
        responses={200: BookingSerializer, 404: NOT_FOUND, **AUTH_ERRORS},
        tags=["bookings"],
    )
    def get(self, request: Request, pk: int) -> Response:
        return Response(BookingSerializer(_booking(request, pk)).data)


class BookingCancelView(MemberAPIView):
    @extend_schema(
        operation_id="bookings_cancel",
        summary="Cancel a booking (its member, before it starts; or a manager of its lab)",
        request=None,
        parameters=[ID_PARAMETER],
        responses={
            200: BookingSerializer,
            404: NOT_FOUND,
            409: OpenApiResponse(ErrorSerializer, description=describe_codes("not_cancellable")),
            **AUTH_ERRORS,
        },
        tags=["bookings"],
    )
    def post(self, request: Request, pk: int) -> Response:
        booking = services.booking_cancel(booking=_booking(request, pk), by=request.user)
        return Response(BookingSerializer(booking).data)


#: What a check-in can answer besides the booking: the rules of ``lifecycle.check_in``.
CHECK_IN_CODES = [
    "forbidden",
    "not_certified",
    "certification_expired",
    "check_in_too_early",
    "check_in_closed",
]


class BookingCheckInView(MemberAPIView):
    @extend_schema(
        operation_id="bookings_check_in",
        summary="Check a booking in (its member, or a manager of its lab)",
        description=(
            "Allowed from `check_in_opens_at` (a window before the start) until `check_in_closes_at` "
            "(the no-show deadline, never after the end; the end when the machine was unavailable at "
            "the start). The member's certification is checked again now. Checking in a booking that is already "
            "checked in changes nothing and returns it. Without a body."
        ),
        request=None,
        parameters=[ID_PARAMETER],
        responses={
            200: BookingSerializer,
            403: _codes_with_status(403, CHECK_IN_CODES),
            404: NOT_FOUND,
            409: _codes_with_status(409, CHECK_IN_CODES),
            **AUTH_ERRORS,
        },
        tags=["bookings"],
    )
    def post(self, request: Request, pk: int) -> Response:
        booking = lifecycle.check_in(
            booking=_booking(request, pk), by=request.user, via=Booking.CheckInVia.API
        )
        return Response(BookingSerializer(booking).data)


class BookingFinishSerializer(serializers.Serializer):
    fault = TextField(
        required=False,
        allow_blank=True,
        max_length=lifecycle.FAULT_MAX,
        default="",
        help_text="Optional: one line about a fault of the machine (at most 300 characters); it raises "
        "an alert for the lab's managers. Line breaks become spaces.",
    )

    def validate_fault(self, value: str) -> str:
        return lifecycle.one_line(value)


#: What finishing can answer besides the booking: the rules of ``lifecycle.finish``.
FINISH_CODES = ["forbidden", "not_checked_in"]


class BookingFinishView(MemberAPIView):
    @extend_schema(
        operation_id="bookings_finish",
        summary="I'm done: finish a checked-in booking early (its member, or a manager of its lab)",
        description=(
            "The booking becomes `completed` and the machine is locked (with the end action `finish`, "
            "once a job still running has ended). The rest of its time, from the "
            "machine's next slot boundary, is given back (`released_at`; `start` and `end` stay as "
            "booked) and offered to the waitlist. Finishing a booking that is already completed "
            "changes nothing and returns it (a fault line given then is kept if none was). Body "
            'optional: `{"fault": "the nozzle is clogged"}`.'
        ),
        request=BookingFinishSerializer,
        parameters=[ID_PARAMETER],
        responses={
            200: BookingSerializer,
            400: OpenApiResponse(ErrorSerializer, description=describe_codes("invalid")),
            403: _codes_with_status(403, FINISH_CODES),
            404: NOT_FOUND,
            409: _codes_with_status(409, FINISH_CODES),
            **AUTH_ERRORS,
        },
        tags=["bookings"],
    )
    def post(self, request: Request, pk: int) -> Response:
        booking = _booking(request, pk)
        data = _valid(BookingFinishSerializer, request.data)
        via = Booking.CheckInVia.API if booking.member_id == request.user.pk else Booking.CheckInVia.MANAGER
        booking = lifecycle.finish(booking=booking, by=request.user, via=via, fault=data["fault"])
        return Response(BookingSerializer(booking).data)


class _DecisionView(MemberAPIView):
    approve = True

    def post(self, request: Request, pk: int) -> Response:
        # Someone who manages no lab can approve nothing: refuse before looking the id up.
        if not roles.manages_any_lab(request.user):
            raise BookingError("forbidden")
        booking = _booking(request, pk)
        decide = services.booking_approve if self.approve else services.booking_decline
        return Response(BookingSerializer(decide(booking=booking, by=request.user)).data)


DECISION_RESPONSES = {
    200: BookingSerializer,
    403: OpenApiResponse(
        ErrorSerializer,
        description=describe_codes("forbidden")
        + " Approving also checks the member's certification again: "
        + describe_codes("not_certified", "certification_expired"),
    ),
    404: NOT_FOUND,
    409: OpenApiResponse(ErrorSerializer, description=describe_codes("not_pending")),
    **AUTH_ERRORS,
}


class BookingApproveView(_DecisionView):
    approve = True

    @extend_schema(
        operation_id="bookings_approve",
        summary="Approve a pending booking (managers of its lab)",
        request=None,
        parameters=[ID_PARAMETER],
        responses=DECISION_RESPONSES,
        tags=["bookings"],
    )
    def post(self, request: Request, pk: int) -> Response:
        return super().post(request, pk)


class BookingDeclineView(_DecisionView):
    approve = False

    @extend_schema(
        operation_id="bookings_decline",
        summary="Decline a pending booking (managers of its lab); its time is free again",
        request=None,
        parameters=[ID_PARAMETER],
        responses=DECISION_RESPONSES,
        tags=["bookings"],
    )
    def post(self, request: Request, pk: int) -> Response:
        return super().post(request, pk)


@extend_schema(exclude=True)
class NotFoundView(APIView):
    """Any other path under /api/v1/: a JSON 404 rather than an HTML page (or a slash redirect)."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    def initial(self, request: Request, *args, **kwargs) -> None:
        raise exceptions.NotFound()
