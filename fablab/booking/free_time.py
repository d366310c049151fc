"""A machine's free time: the stretches between its bookings and maintenance, within its bookable hours.

One computation for every reader of free time (:func:`for_machine`): the free slots of the week
view, the booking form and the API, and the nearest free time suggested to a member
(:func:`fablab.booking.selectors.availability_for_machine`, which adds the notice, the days-ahead
horizon and the minimum length), and the slot the waitlist offers of freed time
(:func:`fablab.booking.waitlist.offered_slot`, which adds neither notice nor horizon: a member
accepting an offer is exempt from both).

Intervals are half-open ``(start, end)`` pairs of aware datetimes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from django.utils import timezone

from fablab.labs.models import Machine, MaintenanceWindow

from .models import Booking

Interval = tuple[dt.datetime, dt.datetime]


def subtract(intervals: Iterable[Interval], busy: Iterable[Interval]) -> list[Interval]:
    """The parts of ``intervals`` outside every ``busy`` interval, in order.

    ``intervals`` are sorted and disjoint (a machine's bookable hours); ``busy`` ones come in any
    order and may overlap one another (bookings with their buffers, maintenance windows). A free
    part that only touches a busy interval is kept whole.
    """
    free = list(intervals)
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


def align(moment: dt.datetime, machine: Machine, *, up: bool) -> dt.datetime:
    """``moment`` rounded to ``machine``'s slot boundary (down, or ``up``) in lab-local wall-clock time; UTC."""
    local = timezone.localtime(moment, machine.lab.tz)
    midnight = dt.datetime.combine(local.date(), dt.time(0), tzinfo=machine.lab.tz)
    minutes = (local.replace(tzinfo=None) - midnight.replace(tzinfo=None)).total_seconds() / 60
    slot = machine.slot_minutes
    whole = int(minutes // slot) * slot
    if up and whole < minutes:
        whole += slot
    wall = midnight.replace(tzinfo=None) + dt.timedelta(minutes=whole)
    return wall.replace(tzinfo=machine.lab.tz).astimezone(dt.UTC)


def for_machine(machine: Machine, start: dt.datetime, end: dt.datetime) -> list[Interval]:
    """The stretches of ``[start, end)`` a booking of ``machine`` could lie in, on slot boundaries, in order.

    Within the machine's bookable hours (the lab's opening hours without its closures; around the
    clock, one stretch over midnight), outside its maintenance windows and its active bookings with
    the machine's buffer on both sides. The notice, the days-ahead horizon, the minimum length and
    whether the machine may be booked at all are left to the caller.
    """
    tz = machine.lab.tz
    bookable: list[Interval] = []
    day = timezone.localtime(start, tz).date()
    while dt.datetime.combine(day, dt.time(0), tzinfo=tz) < end:
        for opens, closes in machine.bookable_intervals(day):
            lo, hi = max(opens, start), min(closes, end)
            if lo < hi and bookable and bookable[-1][1] == lo:  # around the clock: one stretch over midnight
                bookable[-1] = (bookable[-1][0], hi)
            elif lo < hi:
                bookable.append((lo, hi))
        day += dt.timedelta(days=1)
    busy = [
        (b_start - machine.buffer, b_blocked)
        for b_start, b_blocked in Booking.objects.filter(
            machine=machine,
            status__in=Booking.ACTIVE,
            start__lt=end + machine.buffer,
            blocked_until__gt=start,
        ).values_list("start", "blocked_until")
    ]
    busy += list(
        MaintenanceWindow.objects.filter(machine=machine, start__lt=end, end__gt=start).values_list(
            "start", "end"
        )
    )
    free = []
    for f_start, f_end in subtract(bookable, busy):
        a_start, a_end = align(f_start, machine, up=True), align(f_end, machine, up=False)
        if a_start < a_end:
            free.append((a_start, a_end))
    return free
