"""REST API v1: thin views, input serializer → service or selector → output serializer.

Visibility: a member sees their own bookings; a lab manager also sees, and
may act on, the bookings of the labs they manage. Anyone else's booking is
answered with 404, so ids reveal nothing.
"""

from __future__ import annotations

import hashlib
import re

from django.conf import settings
from django.contrib.auth import authenticate
from django.core.cache import cache
from django.db.models import QuerySet
from django.utils import translation
from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.authtoken.models import Token
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import AnonRateThrottle
from rest_framework.views import APIView

from fablab.labs.models import Lab, Machine
from fablab.members import roles
from fablab.members.models import MemberProfile

from . import selectors, services
from .api_errors import IdempotencyKeyReused, InvalidCredentials, describe_codes
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
ID_PARAMETER = OpenApiParameter("id", int, OpenApiParameter.PATH)
#: Rules a new booking can break, grouped by HTTP status for the schema.
CREATE_CODES = [code for code in RULES if code not in ("not_cancellable", "not_pending", "forbidden")]


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


class LoginThrottle(AnonRateThrottle):
    """Slows down password guessing on the token endpoint."""

    scope = "token"
    rate = "20/minute"


class TokenView(APIView):
    # No authentication: a stale token in the header must not block getting a new one.
    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes = [LoginThrottle]

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
        data = _valid(TokenObtainSerializer, request.data)
        user = authenticate(request._request, username=data["username"], password=data["password"])
        if user is None or not user.is_active:
            raise InvalidCredentials()
        token, _created = Token.objects.get_or_create(user=user)
        return Response({"token": token.key})


class LabListView(MemberAPIView):
    @extend_schema(
        operation_id="labs_list",
        summary="List the labs",
        responses={200: LabSerializer(many=True), **AUTH_ERRORS},
        tags=["labs"],
    )
    def get(self, request: Request) -> Response:
        return Response(LabSerializer(Lab.objects.order_by("name"), many=True).data)


class MachineListView(MemberAPIView):
    @extend_schema(
        operation_id="machines_list",
        summary="List the machines, optionally of one lab and one type",
        parameters=[MachineFilterSerializer],
        responses={
            200: MachineSerializer(many=True),
            400: OpenApiResponse(ErrorSerializer, description=describe_codes("invalid")),
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
        return Response(MachineSerializer(machines.order_by("lab__name", "name"), many=True).data)


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
    @extend_schema(
        operation_id="bookings_list",
        summary="Your bookings (lab managers: a managed lab's bookings with ?lab=)",
        description=(
            "Without `lab`, your own bookings. With `lab`, every booking of that lab if you manage it, "
            "otherwise your own bookings there. `from`/`to` keep the bookings that overlap the range."
        ),
        parameters=[BookingFilterSerializer],
        responses={
            200: BookingSerializer(many=True),
            400: OpenApiResponse(ErrorSerializer, description=describe_codes("invalid", "invalid_range")),
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
        return Response(BookingSerializer(bookings.order_by("start", "pk"), many=True).data)

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
                    "second booking or `slot_taken`. The same key with another body is "
                    "`idempotency_key_reused`. Keys are remembered per member for a day; after that, "
                    "a retry with a key still gets your identical booking (same machine, times and "
                    "purpose) if it is active."
                ),
            )
        ],
        responses={
            201: BookingSerializer,
            400: _codes_with_status(400, CREATE_CODES, "invalid"),
            403: _codes_with_status(403, CREATE_CODES),
            409: _codes_with_status(409, CREATE_CODES, "idempotency_key_reused"),
            **AUTH_ERRORS,
        },
        tags=["bookings"],
    )
    def post(self, request: Request) -> Response:
        data = _valid(BookingCreateSerializer, request.data)
        key = _idempotency_key(request)
        if key is not None:
            replayed = _replay(request.user, key, data)
            if replayed is not None:
                return replayed
        try:
            booking = services.booking_create(
                machine=data["machine"],
                member=request.user,
                start=data["start"],
                end=data["end"],
                purpose=data["purpose"],
            )
        except BookingError as exc:
            # A retry whose first attempt won but whose answer was lost (or a twin request
            # racing it): the slot is taken by this very booking, so answer with it.
            same = _identical_booking(request.user, data) if key and exc.code == "slot_taken" else None
            if same is None:
                raise
            return _remember_and_answer(request.user, key, data, same, replayed=True)
        if key is not None:
            return _remember_and_answer(request.user, key, data, booking, replayed=False)
        return Response(BookingSerializer(booking).data, status=status.HTTP_201_CREATED)


# Idempotent creation: a client may send ``Idempotency-Key: <any unique string>`` and retry
# the same POST safely. The key is remembered per member for a day in the cache; should
# the cache have forgotten it (another process, a restart), the no-overlap rule still stops
# a second booking and the identical booking is found and returned instead.
IDEMPOTENCY_TTL = 24 * 3600
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


def _cache_key(member, key: str) -> str:
    return f"booking-idempotency:{member.pk}:{hashlib.sha256(key.encode()).hexdigest()}"


def _replay(member, key: str, data: dict) -> Response | None:
    remembered = cache.get(_cache_key(member, key))
    if remembered is None:
        return None
    if remembered["fingerprint"] != _fingerprint(data):
        raise IdempotencyKeyReused()
    booking = visible_bookings(member).filter(pk=remembered["booking"], member=member).first()
    if booking is None:
        return None
    return _answer(booking, replayed=True)


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


def _remember_and_answer(member, key: str, data: dict, booking: Booking, *, replayed: bool) -> Response:
    cache.set(
        _cache_key(member, key), {"fingerprint": _fingerprint(data), "booking": booking.pk}, IDEMPOTENCY_TTL
    )
    return _answer(booking, replayed=replayed)


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
    403: OpenApiResponse(ErrorSerializer, description=describe_codes("forbidden")),
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
