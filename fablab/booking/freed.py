"""Freed time: what a cancellation, a no-show, an early finish or shortened maintenance gives back.

:func:`release` is called inside the transaction of the change that frees the time, so the
:class:`~fablab.booking.models.FreedTime` row exists exactly when the change does; after the commit
the waitlist is asked to offer it (:func:`fablab.booking.waitlist.offer_freed`), and the scheduler's
pass offers whatever is still open (a process that died between commit and offer loses nothing).

Freed time starts at the next slot boundary of the machine (lab-local time) at or after the later
of the freed start and now: nobody can be offered time that has already begun.
"""

from __future__ import annotations

import datetime as dt
import logging

from django.db import transaction
from django.utils import timezone

from fablab.labs.models import Machine

from .models import Booking, FreedTime

log = logging.getLogger(__name__)


def next_boundary(machine: Machine, moment: dt.datetime) -> dt.datetime:
    """The first slot boundary of ``machine`` at or after ``moment`` (slots count from lab-local midnight)."""
    local = timezone.localtime(moment, machine.lab.tz)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    minutes = (local - midnight).total_seconds() / 60
    slot = machine.slot_minutes
    steps = -(-minutes // slot)  # ceil
    # Wall-clock arithmetic in the lab's zone (the boundaries are wall-clock times), then to UTC.
    boundary = (midnight.replace(tzinfo=None) + dt.timedelta(minutes=steps * slot)).replace(
        tzinfo=machine.lab.tz
    )
    return boundary.astimezone(dt.UTC)


def release(
    *,
    machine: Machine,
    start: dt.datetime,
    end: dt.datetime,
    reason: str,
    now: dt.datetime,
    booking: Booking | None = None,
) -> FreedTime | None:
    """Record ``[start, end)`` of ``machine`` as freed (from the next boundary); None if nothing is left."""
    begin = next_boundary(machine, max(start, now))
    if end - begin < dt.timedelta(minutes=max(1, machine.min_duration_minutes)):
        return None  # too little left to book
    freed = FreedTime.objects.create(
        machine=machine, start=begin, end=end, reason=reason, booking=booking, created_at=now
    )
    freed_id = freed.pk

    def offer() -> None:
        try:
            from . import waitlist

            waitlist.offer_freed(freed_id, now=timezone.now())
        except Exception:  # the scheduler's pass offers it later
            log.exception("could not offer freed time %s now; the scheduler will", freed_id)

    transaction.on_commit(offer)
    return freed
