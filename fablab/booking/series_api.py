"""REST API v1 of series: ``GET /api/v1/series/`` lists the member's own recurring bookings and, for a
lab manager, the workshops of the labs they manage; ``POST`` (managers) previews a workshop's
occurrences and conflicts (``preview``: true, the default; nothing is written) or books it with a
choice per conflict (``resolutions``: ``{key: "skip"|"move"}``), all or nothing.

Same conventions as :mod:`fablab.booking.api`: input serializer → service → output, error bodies
``{"code", "detail"}``, times in the lab's UTC offset. Participants are never named here.
"""

from __future__ import annotations

import datetime as dt

from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from fablab.labs.models import Lab, Machine
from fablab.members import roles

from . import series
from .api import AUTH_ERRORS, PAGE_NOT_FOUND, MemberAPIView, Pages, _page, _valid
from .api_errors import describe_codes
from .errors import RULES, BookingError
from .models import Series
from .serializers import MAX_ID, ErrorSerializer, TextField, local_iso

WORKSHOP_CODES = [
    "forbidden",
    "not_bookable",
    "too_far_ahead",
    "invalid_range",
    *(code for code in RULES if code.startswith("series_")),
]


class SeriesSerializer(serializers.ModelSerializer):
    lab = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    machines = serializers.PrimaryKeyRelatedField(many=True, read_only=True)
    duration_minutes = serializers.SerializerMethodField()

    class Meta:
        model = Series
        fields = [
            "id", "kind", "title", "lab", "machines", "rrule", "first_day", "start_time",
            "duration_minutes", "until", "seats", "target_group", "cancelled_at",
        ]  # fmt: skip
        read_only_fields = fields

    def get_duration_minutes(self, obj: Series) -> int:
        return int(obj.duration.total_seconds() // 60)


class WorkshopInputSerializer(serializers.Serializer):
    lab = TextField(max_length=63, help_text="The lab's slug.")
    title = TextField(max_length=200)
    machines = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=MAX_ID), min_length=1, max_length=50
    )
    rrule = TextField(max_length=500, help_text="RFC 5545 RRULE without DTSTART, e.g. FREQ=WEEKLY;BYDAY=TU.")
    first_day = serializers.DateField(help_text="Lab-local first day.")
    start_time = serializers.TimeField(help_text="Lab-local wall-clock start of every occurrence.")
    duration_minutes = serializers.IntegerField(min_value=15, max_value=24 * 60)
    until = serializers.DateField(required=False, allow_null=True, help_text="Last day (lab-local).")
    seats = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=1000)
    target_group = TextField(required=False, max_length=200, default="")
    preview = serializers.BooleanField(default=True, help_text="True: list the conflicts, write nothing.")
    resolutions = serializers.DictField(
        child=serializers.ChoiceField(choices=[series.SKIP, series.MOVE]), required=False, default=dict
    )

    def validate(self, attrs: dict) -> dict:
        lab = Lab.objects.filter(slug=attrs["lab"]).first()
        if lab is None:
            raise serializers.ValidationError({"lab": [_("There is no lab with this slug.")]})
        machines = list(Machine.objects.filter(pk__in=attrs["machines"], lab=lab).select_related("lab"))
        if len(machines) != len(set(attrs["machines"])):
            raise serializers.ValidationError({"machines": [_("Every machine must belong to the lab.")]})
        return {**attrs, "lab": lab, "machines": machines}


def _conflict_what(conflict: series.Conflict) -> str:
    """``closure`` (the lab, every machine), ``maintenance`` or the kind of the booking in the way."""
    if conflict.closure is not None:
        return "closure"
    return "maintenance" if conflict.window else conflict.booking.kind


def _plan_json(the_plan: series.Plan) -> dict:
    lab = the_plan.lab
    return {
        "occurrences": [
            {
                "start": local_iso(o.start, lab),
                "end": local_iso(o.end, lab),
                "conflicts": [
                    {
                        "key": c.key,
                        "machine": c.machine.pk if c.machine else None,
                        "what": _conflict_what(c),
                        "start": local_iso(c.span[0], lab),
                        "end": local_iso(c.span[1], lab),
                        "movable": c.movable,
                    }
                    for c in o.conflicts
                ],
            }
            for o in the_plan.occurrences
        ]
    }


class SeriesListView(MemberAPIView):
    pagination_class = Pages

    @extend_schema(
        operation_id="series_list",
        summary="Your recurring bookings, and (lab managers) the workshops of your labs",
        responses={200: SeriesSerializer(many=True), 404: PAGE_NOT_FOUND, **AUTH_ERRORS},
        tags=["series"],
    )
    def get(self, request: Request) -> Response:
        rows = Series.objects.filter(
            Q(kind=Series.Kind.MEMBER, member=request.user)
            | Q(kind=Series.Kind.WORKSHOP, lab__in=roles.managed_labs(request.user))
        )
        return _page(
            self, request, rows.prefetch_related("machines").order_by("-created_at", "-pk"), SeriesSerializer
        )

    @extend_schema(
        operation_id="series_workshop_create",
        summary="Preview (default) or book a workshop or course (lab managers)",
        description=(
            "With `preview` true: the occurrences ahead and their conflicts, each with a `key`. Then send "
            "the same body with `preview` false and `resolutions` (`skip` or `move` per key; a conflict "
            "that cannot be moved may be left out, it skips its occurrence)."
        ),
        request=WorkshopInputSerializer,
        responses={
            200: OpenApiResponse(description="The plan (preview)."),
            201: SeriesSerializer,
            400: OpenApiResponse(ErrorSerializer, description=describe_codes("invalid", *WORKSHOP_CODES)),
            403: OpenApiResponse(ErrorSerializer, description=describe_codes("forbidden")),
            409: OpenApiResponse(
                ErrorSerializer, description=describe_codes("series_conflict", "series_cannot_move")
            ),
            **AUTH_ERRORS,
        },
        tags=["series"],
    )
    def post(self, request: Request) -> Response:
        data = _valid(WorkshopInputSerializer, request.data)
        if not roles.manages_lab(request.user, data["lab"].pk):
            raise BookingError("forbidden")
        now = timezone.now()
        recurrence = series.Recurrence(
            data["rrule"],
            data["first_day"],
            data["start_time"],
            dt.timedelta(minutes=data["duration_minutes"]),
            until=data.get("until"),
        )
        the_plan = series.plan(
            lab=data["lab"],
            machines=data["machines"],
            recurrence=recurrence,
            title=data["title"],
            seats=data.get("seats"),
            target_group=data.get("target_group", ""),
            now=now,
            suggest=False,
        )
        if data["preview"]:
            return Response(_plan_json(the_plan))
        result = series.create_workshop(the_plan, data["resolutions"], request.user, now=now)
        return Response(SeriesSerializer(result.series).data, status=status.HTTP_201_CREATED)
