"""Booking reads: free time, week views and members' bookings."""

from __future__ import annotations

import dataclasses
import datetime as dt

from django.db.models import Count, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from fablab.labs.models import Lab, Machine
from fablab.members import roles

from .models import Booking, Series, WorkshopRegistration

#: Workshop sessions a lab's page lists.
WORKSHOPS_SHOWN = 6

Interval = tuple[dt.datetime, dt.datetime]


def _subtract(free: list[Interval], busy: list[Interval]) -> list[Interval]:
    for b_start, b_end in sorted(busy):
        result = []
        for f_start, f_end in free:
            if b_end <= f_start or b_start >= f_end:
                result.append((f_start, f_end))
                continue
            if f_start < b_start:
                result.append((f_start, b_start))
            if b_end < f_end:
                result.append((b_end, f_end))
        free = result
    return free


def _align(moment: dt.datetime, machine: Machine, *, up: bool) -> dt.datetime:
    """Round to the machine's slot boundary in lab-local wall-clock time."""
    local = timezone.localtime(moment, machine.lab.tz)
    midnight = dt.datetime.combine(local.date(), dt.time(0), tzinfo=machine.lab.tz)
    minutes = (local.replace(tzinfo=None) - midnight.replace(tzinfo=None)).total_seconds() / 60
    slot = machine.slot_minutes
    whole = int(minutes // slot) * slot
    if up and whole < minutes:
        whole += slot
    wall = midnight.replace(tzinfo=None) + dt.timedelta(minutes=whole)
    return wall.replace(tzinfo=machine.lab.tz).astimezone(dt.UTC)


def availability_for_machine(
    *, machine: Machine, start: dt.datetime, end: dt.datetime, now: dt.datetime | None = None
) -> list[Interval]:
    """Free intervals of ``machine`` within ``[start, end)`` in which a booking could lie.

    Opening hours (lab-local, closures removed), maintenance windows, other
    active bookings with the machine's buffer on both sides, the notice and
    days-ahead limits are taken into account; intervals are aligned to the
    slot granularity and shorter than the minimum duration are left out.
    """
    now = now or timezone.now()
    tz = machine.lab.tz
    earliest = max(start, now + dt.timedelta(minutes=machine.min_notice_minutes))
    last_day = timezone.localtime(now, tz).date() + dt.timedelta(days=machine.max_days_ahead)
    latest = min(end, dt.datetime.combine(last_day + dt.timedelta(days=1), dt.time(0), tzinfo=tz))
    if earliest >= latest or not machine.bookable:
        return []
    free: list[Interval] = []
    day = timezone.localtime(earliest, tz).date()
    while dt.datetime.combine(day, dt.time(0), tzinfo=tz) < latest:
        for opens, closes in machine.bookable_intervals(day):
            lo, hi = max(opens, earliest), min(closes, latest)
            if lo < hi and free and free[-1][1] == lo:  # around the clock: one stretch over midnight
                free[-1] = (free[-1][0], hi)
            elif lo < hi:
                free.append((lo, hi))
        day += dt.timedelta(days=1)
    busy = [
        (b_start - machine.buffer, b_blocked)
        for b_start, b_blocked in Booking.objects.filter(
            machine=machine,
            status__in=Booking.ACTIVE,
            start__lt=latest + machine.buffer,
            blocked_until__gt=earliest,
        ).values_list("start", "blocked_until")
    ]
    busy += list(
        machine.maintenance_windows.filter(start__lt=latest, end__gt=earliest).values_list("start", "end")
    )
    minimum = dt.timedelta(minutes=machine.min_duration_minutes)
    result = []
    for f_start, f_end in _subtract(free, busy):
        a_start, a_end = _align(f_start, machine, up=True), _align(f_end, machine, up=False)
        if a_end - a_start >= minimum:
            result.append((a_start, a_end))
    return result


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
