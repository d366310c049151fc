"""Input and output serializers of the REST API v1.

Input serializers only check shapes and types; the booking rules live in
``services``. Output times are ISO 8601 with the offset of the lab's time zone.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from fablab.labs.models import Lab, Machine

from . import lifecycle
from .models import Booking

#: Largest primary key the database can hold; bigger ids are simply not found.
MAX_ID = 2**63 - 1
#: Datetimes outside these years are refused before they reach date arithmetic.
YEAR_RANGE = (2000, 2999)


def encodable(value: str) -> None:
    """Refuse strings the database cannot store (lone UTF-16 surrogates from JSON escapes)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise serializers.ValidationError(_("This text contains characters that are not allowed.")) from None


class TextField(serializers.CharField):
    """A CharField that also refuses unencodable text (NUL bytes are refused by DRF already)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.validators.append(encodable)


@extend_schema_field(OpenApiTypes.DATETIME)
class AwareDateTimeField(serializers.Field):
    """An ISO 8601 date and time that must carry a UTC offset (or ``Z``); returned in UTC.

    With ``query=True`` a ``+`` that a query string turned into a space
    (``…T08:00:00 01:00``) is read back as ``+``.
    """

    default_error_messages = {
        "invalid": _("Use an ISO 8601 date and time with a UTC offset, e.g. 2026-03-02T09:00:00+01:00."),
        "naive": _("Give the UTC offset too (e.g. +01:00 or Z): a time without one is ambiguous."),
        "range": _("Use a date between the years %(first)s and %(last)s."),
    }

    def __init__(self, *, query: bool = False, **kwargs: Any) -> None:
        self.query = query
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> dt.datetime:
        if not isinstance(data, str) or len(data) > 64:
            self.fail("invalid")
        text = data.strip()
        if self.query:
            text = re.sub(r"(T[0-9:.]+) (\d\d(:?\d\d)?)$", r"\1+\2", text)
        try:
            parsed = parse_datetime(text)
        except ValueError:
            parsed = None
        if parsed is None:
            self.fail("invalid")
        if parsed.tzinfo is None or parsed.utcoffset() is None:
            self.fail("naive")
        first, last = YEAR_RANGE
        try:
            value = parsed.astimezone(dt.UTC)
        except OverflowError:
            value = None
        if value is None or not first <= value.year <= last:
            raise serializers.ValidationError(self.error_messages["range"] % {"first": first, "last": last})
        return value

    def to_representation(self, value: dt.datetime) -> str:
        return value.isoformat()


def local_iso(moment: dt.datetime, lab: Lab) -> str:
    return timezone.localtime(moment, lab.tz).isoformat()


class ErrorSerializer(serializers.Serializer):
    """The body of every 4xx response."""

    code = serializers.CharField(help_text="Machine-readable; see the list of codes in the API guide.")
    detail = serializers.CharField(help_text="A human-readable message in the request's language.")
    fields = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="For invalid input: the messages per field.",
    )


# Authentication


class TokenObtainSerializer(serializers.Serializer):
    username = TextField(max_length=150)
    password = TextField(max_length=4096, trim_whitespace=False, style={"input_type": "password"})


class TokenSerializer(serializers.Serializer):
    token = serializers.CharField(help_text="Send it as `Authorization: Token <token>`.")
    expiry = serializers.DateTimeField(help_text="When the token stops working (30 days by default).")


# Labs and machines


class LabSerializer(serializers.ModelSerializer):
    class Meta:
        model = Lab
        fields = ["id", "slug", "name", "time_zone", "address"]


class MachineSerializer(serializers.ModelSerializer):
    lab = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    type = serializers.SlugRelatedField(source="machine_type", slug_field="slug", read_only=True)
    type_name = serializers.CharField(source="machine_type.name", read_only=True)
    required_training = serializers.SlugRelatedField(slug_field="slug", read_only=True, allow_null=True)

    class Meta:
        model = Machine
        fields = [
            "id",
            "slug",
            "lab",
            "type",
            "type_name",
            "name",
            "model",
            "bookable",
            "required_training",
            "approval_required",
            "slot_minutes",
            "min_duration_minutes",
            "max_duration_minutes",
            "min_notice_minutes",
            "max_days_ahead",
            "buffer_minutes",
        ]


class MachineFilterSerializer(serializers.Serializer):
    lab = TextField(required=False, max_length=63, help_text="Only this lab's machines (its slug).")
    type = TextField(required=False, max_length=63, help_text="Only machines of this type (its slug).")


class RangeQuerySerializer(serializers.Serializer):
    """``from`` and ``to`` (reserved words in Python, hence ``get_fields``)."""

    #: Longest range one request may ask for.
    MAX_SPAN = dt.timedelta(days=62)
    required_range = True

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        required = self.required_range
        fields["from"] = AwareDateTimeField(
            query=True, required=required, help_text="Start of the range, ISO 8601 with offset."
        )
        fields["to"] = AwareDateTimeField(
            query=True, required=required, help_text="End of the range, ISO 8601 with offset."
        )
        return fields


class AvailabilityQuerySerializer(RangeQuerySerializer):
    pass


class IntervalSerializer(serializers.Serializer):
    start = serializers.DateTimeField(help_text="ISO 8601 with the lab's UTC offset.")
    end = serializers.DateTimeField(help_text="ISO 8601 with the lab's UTC offset.")


# Bookings


class BookingFilterSerializer(RangeQuerySerializer):
    required_range = False

    lab = TextField(
        required=False,
        max_length=63,
        help_text="A lab's slug. Lab managers get every booking of a lab they manage; "
        "everyone else only their own bookings there.",
    )
    machine = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID)
    status = serializers.ChoiceField(required=False, choices=Booking.Status.choices)


class BookingCreateSerializer(serializers.Serializer):
    machine = serializers.IntegerField(min_value=1, max_value=MAX_ID, help_text="The machine's id.")
    start = AwareDateTimeField(help_text="ISO 8601 with a UTC offset, e.g. 2026-03-02T09:00:00+01:00.")
    end = AwareDateTimeField(help_text="ISO 8601 with a UTC offset.")
    purpose = TextField(required=False, allow_blank=True, max_length=300, default="")

    def validate_machine(self, value: int) -> Machine:
        machine = Machine.objects.select_related("lab").filter(pk=value).first()
        if machine is None:
            raise serializers.ValidationError(_("There is no machine with this id."))
        return machine


class BookingSerializer(serializers.ModelSerializer):
    """A booking as its member or a manager of its lab sees it; every time in the lab's UTC offset.

    ``member`` is null for the kinds that are no member's (training, workshop, maintenance). The
    check-in window (``check_in_opens_at`` to ``check_in_closes_at``) is null for those kinds too.
    The usage fields are attributed from the machine's sessions and grow while the booking runs.
    """

    machine_slug = serializers.CharField(source="machine.slug", read_only=True)
    machine_name = serializers.CharField(source="machine.name", read_only=True)
    lab = serializers.CharField(source="machine.lab.slug", read_only=True, help_text="The lab's slug.")
    member = serializers.CharField(
        source="member.get_username",
        read_only=True,
        allow_null=True,
        help_text="The member's username; null for a training, a workshop or maintenance.",
    )
    start = serializers.SerializerMethodField()
    end = serializers.SerializerMethodField()
    checked_in_at = serializers.SerializerMethodField()
    released_at = serializers.SerializerMethodField(
        help_text="A no-show's time stopped holding the machine here; `start` and `end` stay as booked."
    )
    completed_at = serializers.SerializerMethodField()
    check_in_opens_at = serializers.SerializerMethodField(
        help_text="From here the booking may be checked in (null for kinds without check-in)."
    )
    check_in_closes_at = serializers.SerializerMethodField(
        help_text="The no-show deadline (never after the end), or the end when the machine was "
        "unavailable at the start."
    )
    used_minutes = serializers.FloatField(
        read_only=True, help_text="Minutes the machine ran for this booking."
    )
    overrun_minutes = serializers.FloatField(
        read_only=True, help_text="Minutes it ran past the booking's end."
    )
    energy_wh = serializers.FloatField(
        read_only=True, allow_null=True, help_text="Energy used, in watt-hours (null when not measured)."
    )
    job_outcome = serializers.CharField(
        read_only=True,
        help_text="How the last job ended: `finished`, `failed`, `cancelled`, `interrupted` (or empty).",
    )

    class Meta:
        model = Booking
        fields = [
            "id",
            "kind",
            "machine",
            "machine_slug",
            "machine_name",
            "lab",
            "member",
            "title",
            "start",
            "end",
            "status",
            "purpose",
            "cancel_reason",
            "created_at",
            "check_in_opens_at",
            "check_in_closes_at",
            "checked_in_at",
            "check_in_via",
            "unavailable",
            "released_at",
            "completed_at",
            "used_minutes",
            "overrun_minutes",
            "energy_wh",
            "job_outcome",
        ]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.DATETIME)
    def get_start(self, booking: Booking) -> str:
        return local_iso(booking.start, booking.machine.lab)

    @extend_schema_field(OpenApiTypes.DATETIME)
    def get_end(self, booking: Booking) -> str:
        return local_iso(booking.end, booking.machine.lab)

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_checked_in_at(self, booking: Booking) -> str | None:
        return _local_or_none(booking.checked_in_at, booking)

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_released_at(self, booking: Booking) -> str | None:
        return _local_or_none(booking.released_at, booking)

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_completed_at(self, booking: Booking) -> str | None:
        return _local_or_none(booking.completed_at, booking)

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_check_in_opens_at(self, booking: Booking) -> str | None:
        if not booking.is_member_booking:
            return None
        return local_iso(lifecycle.check_in_opens(booking), booking.machine.lab)

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_check_in_closes_at(self, booking: Booking) -> str | None:
        if not booking.is_member_booking:
            return None
        return local_iso(lifecycle.check_in_closes(booking), booking.machine.lab)


def _local_or_none(moment: dt.datetime | None, booking: Booking) -> str | None:
    return None if moment is None else local_iso(moment, booking.machine.lab)
