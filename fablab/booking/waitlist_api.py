"""REST API v1 of the waitlist: a member's own entries, joining and leaving, an offer's accept and decline.

Same conventions as :mod:`fablab.booking.api`: input serializer → service → output serializer, error
bodies ``{"code", "detail"}``, times in the lab's UTC offset. A member sees only their own entries;
anyone else's entry is answered 404, so ids reveal nothing (lab managers included: the waitlist is the
member's own business).
"""

from __future__ import annotations

from django.db.models import QuerySet
from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from fablab.labs.models import Lab, Machine, MachineType

from . import waitlist
from .api import AUTH_ERRORS, ID_PARAMETER, NOT_FOUND, PAGE_NOT_FOUND, MemberAPIView, Pages, _page, _valid
from .api_errors import describe_codes
from .errors import RULES
from .models import WaitlistEntry, WaitlistOffer
from .serializers import MAX_ID, AwareDateTimeField, BookingSerializer, ErrorSerializer, TextField, local_iso

# ---------------------------------------------------------------------------------------- serializers


class WaitlistJoinSerializer(serializers.Serializer):
    """Either ``machine``, or ``machine_type`` with ``lab``; and a window."""

    machine = serializers.IntegerField(
        required=False, min_value=1, max_value=MAX_ID, help_text="Wait for this machine (its id)."
    )
    machine_type = TextField(
        required=False, max_length=63, help_text="Or wait for any machine of this type (its slug) in `lab`."
    )
    lab = TextField(required=False, max_length=63, help_text="With `machine_type`: the lab's slug.")
    start = AwareDateTimeField(help_text="Start of the window, ISO 8601 with a UTC offset.")
    end = AwareDateTimeField(help_text="End of the window, ISO 8601 with a UTC offset.")

    def validate(self, attrs: dict) -> dict:
        has_machine, has_type = "machine" in attrs, bool(attrs.get("machine_type"))
        if has_machine == has_type:
            raise serializers.ValidationError(_("Give either a machine or a machine type (with its lab)."))
        if has_machine:
            machine = (
                Machine.objects.select_related("lab", "machine_type").filter(pk=attrs["machine"]).first()
            )
            if machine is None:
                raise serializers.ValidationError({"machine": [_("There is no machine with this id.")]})
            return {**attrs, "machine": machine, "machine_type": None, "lab": machine.lab}
        if not attrs.get("lab"):
            raise serializers.ValidationError({"lab": [_("Give the lab of the machine type.")]})
        lab = Lab.objects.filter(slug=attrs["lab"]).first()
        if lab is None:
            raise serializers.ValidationError({"lab": [_("There is no lab with this slug.")]})
        machine_type = MachineType.objects.filter(slug=attrs["machine_type"]).first()
        if machine_type is None:
            raise serializers.ValidationError(
                {"machine_type": [_("There is no machine type with this slug.")]}
            )
        return {**attrs, "machine": None, "machine_type": machine_type, "lab": lab}


class WaitlistFilterSerializer(serializers.Serializer):
    status = serializers.ChoiceField(
        required=False, choices=WaitlistEntry.Status.choices, help_text="Only entries in this state."
    )


class WaitlistOfferSerializer(serializers.ModelSerializer):
    """Freed time held for the member until ``expires_at``; accept it before then."""

    machine_slug = serializers.CharField(source="machine.slug", read_only=True)
    machine_name = serializers.CharField(source="machine.name", read_only=True)
    start = serializers.SerializerMethodField()
    end = serializers.SerializerMethodField()
    offered_at = serializers.SerializerMethodField()
    expires_at = serializers.SerializerMethodField(
        help_text="The hold ends here; then the time goes to the next."
    )

    class Meta:
        model = WaitlistOffer
        fields = [
            "id",
            "machine",
            "machine_slug",
            "machine_name",
            "start",
            "end",
            "offered_at",
            "expires_at",
            "status",
        ]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.DATETIME)
    def get_start(self, offer: WaitlistOffer) -> str:
        return local_iso(offer.start, offer.machine.lab)

    @extend_schema_field(OpenApiTypes.DATETIME)
    def get_end(self, offer: WaitlistOffer) -> str:
        return local_iso(offer.end, offer.machine.lab)

    @extend_schema_field(OpenApiTypes.DATETIME)
    def get_offered_at(self, offer: WaitlistOffer) -> str:
        return local_iso(offer.offered_at, offer.machine.lab)

    @extend_schema_field(OpenApiTypes.DATETIME)
    def get_expires_at(self, offer: WaitlistOffer) -> str:
        return local_iso(offer.expires_at, offer.machine.lab)


class WaitlistEntrySerializer(serializers.ModelSerializer):
    """A member's wait for a machine (``machine``) or any machine of a type in a lab (``machine_type``)."""

    lab = serializers.CharField(source="lab.slug", read_only=True, help_text="The lab's slug.")
    machine_slug = serializers.CharField(source="machine.slug", read_only=True, allow_null=True)
    machine_type = serializers.SlugRelatedField(slug_field="slug", read_only=True, allow_null=True)
    start = serializers.SerializerMethodField()
    end = serializers.SerializerMethodField()
    created_at = serializers.SerializerMethodField()
    offer = serializers.SerializerMethodField(help_text="The offer held for this entry now, if any.")

    class Meta:
        model = WaitlistEntry
        fields = [
            "id",
            "lab",
            "machine",
            "machine_slug",
            "machine_type",
            "start",
            "end",
            "status",
            "created_at",
            "offer",
        ]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.DATETIME)
    def get_start(self, entry: WaitlistEntry) -> str:
        return local_iso(entry.start, entry.lab)

    @extend_schema_field(OpenApiTypes.DATETIME)
    def get_end(self, entry: WaitlistEntry) -> str:
        return local_iso(entry.end, entry.lab)

    @extend_schema_field(OpenApiTypes.DATETIME)
    def get_created_at(self, entry: WaitlistEntry) -> str:
        return local_iso(entry.created_at, entry.lab)

    @extend_schema_field(WaitlistOfferSerializer(allow_null=True))
    def get_offer(self, entry: WaitlistEntry) -> dict | None:
        offers = getattr(entry, "open_offers", None)
        if offers is None:
            offers = list(
                entry.offers.filter(status=WaitlistOffer.Status.OPEN).select_related("machine__lab")
            )
        return WaitlistOfferSerializer(offers[0]).data if offers else None


# ---------------------------------------------------------------------------------------------- views

#: What joining can answer besides ``invalid``.
JOIN_CODES = [
    "invalid_range",
    "in_past",
    "too_far_ahead",
    "not_bookable",
    "not_certified",
    "certification_expired",
    "already_waiting",
]
#: What accepting can answer: the offer's state, and every rule a waitlist booking still obeys.
ACCEPT_CODES = ["offer_not_open"] + [
    code
    for code in RULES
    if code
    not in (
        "too_soon",
        "not_cancellable",
        "not_pending",
        "forbidden",
        "check_in_too_early",
        "check_in_closed",
        "not_checked_in",
        "offer_not_open",
        "already_waiting",
        "not_waivable",
    )
]


def _with_status(status_code: int, codes: list[str], *extra: str) -> OpenApiResponse:
    chosen = [code for code in codes if RULES[code][0] == status_code]
    return OpenApiResponse(ErrorSerializer, description=describe_codes(*extra, *chosen))


def _entries(request: Request) -> QuerySet[WaitlistEntry]:
    return waitlist.entries_for(request.user)


def _entry(request: Request, pk: int) -> WaitlistEntry:
    entry = _entries(request).filter(pk=pk).first() if pk <= MAX_ID else None
    if entry is None:
        raise exceptions.NotFound()
    return entry


def _fresh(entry: WaitlistEntry) -> WaitlistEntry:
    return waitlist.entries_for(entry.member_id).get(pk=entry.pk)


class WaitlistListView(MemberAPIView):
    pagination_class = Pages

    @extend_schema(
        operation_id="waitlist_list",
        summary="Your waitlist entries, each with the offer held for it",
        description="Oldest first, in pages like every list; `status` keeps the entries in one state.",
        parameters=[WaitlistFilterSerializer],
        responses={
            200: WaitlistEntrySerializer(many=True),
            400: OpenApiResponse(ErrorSerializer, description=describe_codes("invalid")),
            404: PAGE_NOT_FOUND,
            **AUTH_ERRORS,
        },
        tags=["waitlist"],
    )
    def get(self, request: Request) -> Response:
        filters = _valid(WaitlistFilterSerializer, request.query_params)
        entries = _entries(request)
        if "status" in filters:
            entries = entries.filter(status=filters["status"])
        return _page(self, request, entries.order_by("created_at", "pk"), WaitlistEntrySerializer)

    @extend_schema(
        operation_id="waitlist_join",
        summary="Join the waitlist for a machine, or any machine of a type in a lab, within a window",
        description=(
            "When time within the window frees up (a cancellation, a no-show, an early finish, maintenance "
            "ended early), the first waiting member who may book it gets an offer, held for the lab's hold "
            "time (15 minutes by default); accept it with `POST /api/v1/waitlist/{id}/accept/`."
        ),
        request=WaitlistJoinSerializer,
        responses={
            201: WaitlistEntrySerializer,
            400: _with_status(400, JOIN_CODES, "invalid"),
            403: _with_status(403, JOIN_CODES),
            409: _with_status(409, JOIN_CODES),
            **AUTH_ERRORS,
        },
        tags=["waitlist"],
    )
    def post(self, request: Request) -> Response:
        data = _valid(WaitlistJoinSerializer, request.data)
        entry = waitlist.join(
            member=request.user,
            lab=data["lab"],
            machine=data["machine"],
            machine_type=data["machine_type"],
            start=data["start"],
            end=data["end"],
        )
        return Response(WaitlistEntrySerializer(_fresh(entry)).data, status=status.HTTP_201_CREATED)


class WaitlistDetailView(MemberAPIView):
    @extend_schema(
        operation_id="waitlist_retrieve",
        summary="One of your waitlist entries",
        parameters=[ID_PARAMETER],
        responses={200: WaitlistEntrySerializer, 404: NOT_FOUND, **AUTH_ERRORS},
        tags=["waitlist"],
    )
    def get(self, request: Request, pk: int) -> Response:
        return Response(WaitlistEntrySerializer(_entry(request, pk)).data)

    @extend_schema(
        operation_id="waitlist_leave",
        summary="Leave the waitlist (an offer held for the entry goes to the next member)",
        description="Leaving an entry that no longer waits changes nothing.",
        parameters=[ID_PARAMETER],
        responses={204: None, 404: NOT_FOUND, **AUTH_ERRORS},
        tags=["waitlist"],
    )
    def delete(self, request: Request, pk: int) -> Response:
        waitlist.leave(_entry(request, pk), by=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class WaitlistAcceptView(MemberAPIView):
    @extend_schema(
        operation_id="waitlist_accept",
        summary="Accept the offer held for the entry: book its time",
        description=(
            "Books the offered time without the machine's notice, days-ahead or approval rules; "
            "certification, blocks for missed bookings, quotas and overlaps apply as for any booking. "
            "An offer does not stop others from booking the time directly: if someone did, the answer is "
            "`slot_taken` and the offer is void. Any refusal but a quota's voids the offer and passes "
            "the time to the next member; within the hold, a quota can be freed and the offer accepted."
        ),
        request=None,
        parameters=[ID_PARAMETER],
        responses={
            201: BookingSerializer,
            400: _with_status(400, ACCEPT_CODES),
            403: _with_status(403, ACCEPT_CODES),
            404: NOT_FOUND,
            409: _with_status(409, ACCEPT_CODES),
            **AUTH_ERRORS,
        },
        tags=["waitlist"],
    )
    def post(self, request: Request, pk: int) -> Response:
        booking = waitlist.accept(_entry(request, pk), by=request.user)
        return Response(BookingSerializer(booking).data, status=status.HTTP_201_CREATED)


class WaitlistDeclineView(MemberAPIView):
    @extend_schema(
        operation_id="waitlist_decline",
        summary="Decline the offer held for the entry; the entry keeps waiting for other time",
        request=None,
        parameters=[ID_PARAMETER],
        responses={
            200: WaitlistEntrySerializer,
            404: NOT_FOUND,
            409: OpenApiResponse(ErrorSerializer, description=describe_codes("offer_not_open")),
            **AUTH_ERRORS,
        },
        tags=["waitlist"],
    )
    def post(self, request: Request, pk: int) -> Response:
        entry = _entry(request, pk)
        waitlist.decline(entry, by=request.user)
        return Response(WaitlistEntrySerializer(_fresh(entry)).data)
