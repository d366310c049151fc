"""Booking reads: free time, week views and members' bookings."""

from __future__ import annotations

import dataclasses
import datetime as dt

from django.db.models import Count, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from fablab.labs.models import Lab, Machine
from fablab.members import roles

from . import free_time
from .free_time import Interval
from .models import Booking, Series, WorkshopRegistration

#: Workshop sessions a lab's page lists.
WORKSHOPS_SHOWN = 6


def availability_for_machine(
    *, machine: Machine, start: dt.datetime, end: dt.datetime, now: dt.datetime | None = None
) -> list[Interval]:
    """Free intervals of ``machine`` within ``[start, end)`` in which a booking could lie.

    The machine's free time (:func:`fablab.booking.free_time.for_machine`: opening hours,
    closures, maintenance windows, other active bookings with the buffer, slot boundaries) within
    the notice and days-ahead limits; intervals shorter than the minimum duration are left out.
    """
    now = now or timezone.now()
    tz = machine.lab.tz
    earliest = max(start, now + dt.timedelta(minutes=machine.min_notice_minutes))
    last_day = timezone.localtime(now, tz).date() + dt.timedelta(days=machine.max_days_ahead)
    latest = min(end, dt.datetime.combine(last_day + dt.timedelta(days=1), dt.time(0), tzinfo=tz))
    if earliest >= latest or not machine.bookable:
        return []
    minimum = dt.timedelta(minutes=machine.min_duration_minutes)
    return [(a, b) for a, b in free_time.for_machine(machine, earliest, latest) if b - a >= minimum]


def next_free_slot(machine: Machine, now: dt.datetime | None = None) -> dt.datetime | None:
    """Start of the first free time a booking of the minimum duration fits in."""
    now = now or timezone.now()
    horizon = now + dt.timedelta(days=machine.max_days_ahead + 1)
    free = availability_for_machine(machine=machine, start=now, end=horizon, now=now)
    return free[0][0] if free else None


@dataclasses.dataclass
class Slot:
    start: dt.datetime
    end: dt.datetime
    state: str  # free | booked | mine | closed | maintenance | past
    booking: Booking | None = None


@dataclasses.dataclass
class Day:
    date: dt.date
    slots: list[Slot]


def machine_week(
    *, machine: Machine, monday: dt.date, member=None, now: dt.datetime | None = None
) -> list[Day]:
    """The week's slots of a machine for the week view, lab-local.

    Other people's bookings are only ``booked``; the member's own are ``mine``.
    Slots span the lab's opening hours of each day.
    """
    now = now or timezone.now()
    tz = machine.lab.tz
    week_start = dt.datetime.combine(monday, dt.time(0), tzinfo=tz)
    week_end = dt.datetime.combine(monday + dt.timedelta(days=7), dt.time(0), tzinfo=tz)
    free = availability_for_machine(machine=machine, start=week_start, end=week_end, now=now)
    bookings = list(
        Booking.objects.filter(
            machine=machine, status__in=Booking.ACTIVE, start__lt=week_end, end__gt=week_start
        ).only("id", "start", "end", "member_id", "status")
    )
    windows = list(machine.maintenance_windows.filter(start__lt=week_end, end__gt=week_start))
    step = dt.timedelta(minutes=machine.slot_minutes)
    days = []
    for offset in range(7):
        day = monday + dt.timedelta(days=offset)
        slots = []
        for opens, closes in machine.bookable_intervals(day):
            moment = opens
            while moment + step <= closes:
                slot_end = moment + step
                slots.append(_slot_state(moment, slot_end, free, bookings, windows, member, now))
                moment = slot_end
        days.append(Day(date=day, slots=slots))
    return days


def _slot_state(start, end, free, bookings, windows, member, now) -> Slot:
    for booking in bookings:
        if booking.start < end and booking.end > start:
            mine = member is not None and booking.member_id == member.pk
            return Slot(start, end, "mine" if mine else "booked", booking if mine else None)
    if any(w.start < end and w.end > start for w in windows):
        return Slot(start, end, "maintenance")
    if start < now:
        return Slot(start, end, "past")
    if any(f_start <= start and end <= f_end for f_start, f_end in free):
        return Slot(start, end, "free")
    return Slot(start, end, "closed")


def bookings_for_member(member) -> QuerySet[Booking]:
    return Booking.objects.filter(member=member).select_related("machine", "machine__lab").order_by("start")


def upcoming_and_past(member, now: dt.datetime | None = None) -> tuple[list[Booking], list[Booking]]:
    now = now or timezone.now()
    bookings = list(bookings_for_member(member))
    upcoming = [b for b in bookings if b.end > now]
    past = sorted((b for b in bookings if b.end <= now), key=lambda b: b.start, reverse=True)
    return upcoming, past


def pending_for_manager(user) -> QuerySet[Booking]:
    """Bookings awaiting approval in the labs ``user`` manages (none for anyone else)."""
    qs = Booking.objects.filter(status=Booking.Status.PENDING).select_related(
        "machine", "machine__lab", "member"
    )
    return roles.managed_bookings(user, qs).order_by("start")


def upcoming_workshops(lab: Lab, *, now: dt.datetime, limit: int = WORKSHOPS_SHOWN) -> list[dict]:
    """The next sessions (occurrences) of ``lab``'s workshops and courses, soonest first; two queries.

    A session is a start of a workshop series that is not cancelled, with at least one booking not
    cancelled (a session books each of the workshop's machines) and not over yet. Each comes with
    its series (``workshop``, initiative joined) and ``seats_left`` (None: no limit). Nobody is named.
    """
    registered = (
        WorkshopRegistration.objects.filter(
            series=OuterRef("series_id"),
            occurrence_start=OuterRef("start"),
            status=WorkshopRegistration.Status.REGISTERED,
        )
        .order_by()
        .values("series")
        .annotate(n=Count("pk"))
        .values("n")
    )
    sessions = list(
        Booking.objects.filter(
            kind=Booking.Kind.WORKSHOP,
            series__lab=lab,
            series__kind=Series.Kind.WORKSHOP,
            series__cancelled_at=None,
            end__gt=now,
        )
        .exclude(status=Booking.Status.CANCELLED)
        .values("series_id", "start", "end")
        .annotate(registered=Coalesce(Subquery(registered), 0))
        .order_by("start", "series_id")
        .distinct()[:limit]
    )
    if not sessions:
        return []
    workshops = Series.objects.select_related("initiative").in_bulk({s["series_id"] for s in sessions})
    out = []
    for session in sessions:
        workshop = workshops[session["series_id"]]
        seats_left = None if workshop.seats is None else max(workshop.seats - session["registered"], 0)
        out.append(
            {"workshop": workshop, "start": session["start"], "end": session["end"], "seats_left": seats_left}
        )
    return out
