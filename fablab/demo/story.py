"""The demo's story in bookings: today's and tomorrow's, over the labs' open hours.

:func:`seed_days` (called by ``seed_demo``) books the demo makers (:data:`MAKERS`) on every bookable
machine, a few times a day, through :func:`fablab.booking.services.booking_create` (so every rule
holds: a refused slot is skipped), plus one training session (``kind=training``, a title, no member)
on an interlocked laser. :func:`book_slot` is what ``run_demo_makers`` uses to keep booking ahead.

Idempotent: a machine that already has a demo maker's booking on a day gets none more that day, and
the training session is made once per day.
"""

from __future__ import annotations

import datetime as dt
import logging

from django.db.models import Q
from django.utils import timezone

from fablab.booking.errors import BookingError
from fablab.booking.models import Booking
from fablab.booking.services import booking_create
from fablab.labs.models import Machine

log = logging.getLogger(__name__)

#: The simulated makers, in the order they take turns.
MAKERS = ("maker", "anouk", "karim", "newbie")
#: What the demo makers book machines for.
PURPOSES = ("Phone stand", "Name tags", "Gift box", "Drone frame", "Bike light mount", "Chess pieces")
TRAINING_TITLE = "Laser cutter safety: hands-on session"
TRAINING_MACHINE = "epilog-laser"
#: Bookings per machine and day, their length and the gap between them (minutes).
PER_DAY, LENGTH_MIN, GAP_MIN = 3, 60, 60


def next_slot(machine: Machine, moment: dt.datetime) -> dt.datetime:
    """The first start of one of ``machine``'s slots at or after ``moment`` (slots from midnight, lab time)."""
    local = moment.astimezone(machine.lab.tz)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    step = machine.slot_minutes * 60
    seconds = (local - midnight).total_seconds()
    slots = -(-int(seconds) // step)  # rounded up
    return (midnight + dt.timedelta(seconds=slots * step)).astimezone(dt.UTC)


def book_slot(
    machine: Machine, makers: list, start: dt.datetime, minutes: int, purpose: str
) -> Booking | None:
    """Book ``machine`` from ``start`` for the first of ``makers`` the rules allow; None if none may."""
    minutes = max(minutes, machine.min_duration_minutes)
    for member in makers:
        try:
            return booking_create(
                machine=machine,
                member=member,
                start=start,
                end=start + dt.timedelta(minutes=minutes),
                purpose=purpose,
            )
        except BookingError as exc:
            log.debug("demo: %s for %s at %s refused: %s", machine.slug, member, start, exc.code)
    return None


def _demo_booked(machine: Machine, since: dt.datetime, until: dt.datetime) -> bool:
    return Booking.objects.filter(
        machine=machine, member__username__in=MAKERS, start__gte=since, start__lt=until
    ).exists()


def seed_days(
    machines: dict[str, Machine], users: dict, *, trainer=None, now: dt.datetime | None = None
) -> int:
    """Book today's rest and tomorrow for the demo makers; returns how many bookings were made."""
    now = now or timezone.now()
    makers = [users[name] for name in MAKERS if name in users]
    made = 0
    for index, machine in enumerate(sorted(machines.values(), key=lambda m: m.slug)):
        if not machine.bookable or machine.approval_required:
            continue
        today = timezone.localdate(now, timezone=machine.lab.tz)
        for day in (today, today + dt.timedelta(days=1)):
            intervals = machine.lab.opening_intervals(day)
            if not intervals:
                continue
            if _demo_booked(machine, intervals[0][0], intervals[-1][1]):
                continue
            # Machines start at staggered times, so the board does not change all at once.
            start = next_slot(machine, max(intervals[0][0], now) + dt.timedelta(minutes=5 + 15 * (index % 4)))
            turn = index
            for _n in range(PER_DAY):
                if not any(
                    s <= start and start + dt.timedelta(minutes=LENGTH_MIN) <= e for s, e in intervals
                ):
                    break
                order = makers[turn % len(makers) :] + makers[: turn % len(makers)]
                booking = book_slot(machine, order, start, LENGTH_MIN, PURPOSES[turn % len(PURPOSES)])
                made += booking is not None
                turn += 1
                start = next_slot(machine, start + dt.timedelta(minutes=LENGTH_MIN + GAP_MIN))
    if TRAINING_MACHINE in machines:
        made += _training(machines[TRAINING_MACHINE], now, trainer) is not None
    return made


def _training(machine: Machine, now: dt.datetime, trainer) -> Booking | None:
    """Tomorrow's (or the next open day's) training session from 14:00, two hours, if the laser is free."""
    tz = machine.lab.tz
    for days in range(1, 8):
        day = timezone.localdate(now, timezone=tz) + dt.timedelta(days=days)
        start = dt.datetime.combine(day, dt.time(14), tzinfo=tz).astimezone(dt.UTC)
        end = start + dt.timedelta(hours=2)
        if not any(s <= start and end <= e for s, e in machine.lab.opening_intervals(day)):
            continue
        if (
            Booking.objects.filter(machine=machine, kind=Booking.Kind.TRAINING, title=TRAINING_TITLE)
            .filter(start__date__gte=start.date() - dt.timedelta(days=7), end__gt=now)
            .exists()
        ):
            return None
        overlap = Booking.objects.filter(machine=machine, status__in=Booking.ACTIVE).filter(
            Q(start__lt=end + machine.buffer) & Q(blocked_until__gt=start)
        )
        if overlap.exists():
            continue
        return Booking.objects.create(
            machine=machine,
            kind=Booking.Kind.TRAINING,
            member=None,
            title=TRAINING_TITLE,
            start=start,
            end=end,
            blocked_until=end + machine.buffer,
            status=Booking.Status.CONFIRMED,
            decided_by=trainer,
        )
    return None
