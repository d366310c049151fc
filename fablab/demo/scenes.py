"""Demo scenes for the waitlist, strikes and machine care (``seed_demo`` plays them once each).

* **A member with a strike** — ``karim`` missed a Prusa booking three days ago (a ``no_show``);
  the manager sees it on the strikes page and may waive it.
* **A machine with a service due** — the CO2 laser ran about 21 hours over the last weeks (past
  bookings, checked in and completed, each with its usage session), so "Clean lens and mirrors"
  (every 20 run hours) is due and the laser tube (every 1,000 laser-on hours) is not; the scheduler's
  care step raises the alert.
* **A waitlist offer** — ``maker`` waits for a 3D printer's time in a few days; the member who had
  booked it cancels, and the freed time is offered to ``maker`` (their bookings page shows it).

Past rows are written directly (the booking service refuses the past, rightly); everything from
now on goes through the services.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging

from django.db import transaction
from django.utils import timezone

from devices.models import ServiceInterval, UsageSession
from fablab.booking import services, waitlist
from fablab.booking.errors import BookingError
from fablab.booking.models import Booking, WaitlistEntry, WaitlistOffer
from fablab.labs.models import Machine

log = logging.getLogger(__name__)

STRIKE_MACHINE = "prusa-mk4-2"
#: The machine type of the waitlist scene (members may have the most upcoming bookings of it).
WAITLIST_TYPE = "3d-printer"
CARE_MACHINE = "co2-laser"
#: (task, every hours, basis): the first is due in the demo, the second is not.
CARE_TASKS = (
    ("Clean lens and mirrors", 20, ServiceInterval.Basis.RUN),
    ("Replace the laser tube", 1000, ServiceInterval.Basis.LASER),
)
#: Past laser bookings: days ago, and the minutes the laser ran in each.
CARE_HISTORY = tuple((days, 90) for days in range(2, 30, 2))


def _past(machine: Machine, day: dt.date, at: dt.time, minutes: int) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime.combine(day, at, tzinfo=machine.lab.tz).astimezone(dt.UTC)
    return start, start + dt.timedelta(minutes=minutes)


def past_windows(
    machines: dict[str, Machine], now: dt.datetime
) -> list[tuple[Machine, dt.datetime, dt.datetime]]:
    """The past times the scenes below write bookings at (machine, start, end + buffer), so that the demo's
    generated history (:mod:`fablab.demo.history`), written before them, leaves those times free."""
    windows = []
    if (machine := machines.get(STRIKE_MACHINE)) is not None:
        day = timezone.localdate(now, timezone=machine.lab.tz) - dt.timedelta(days=3)
        start, end = _past(machine, day, dt.time(10), 60)
        windows.append((machine, start, end + machine.buffer))
    if (machine := machines.get(CARE_MACHINE)) is not None:
        today = timezone.localdate(now, timezone=machine.lab.tz)
        for days, _minutes in CARE_HISTORY:
            start, end = _past(machine, today - dt.timedelta(days=days), dt.time(10), 120)
            windows.append((machine, start, end + machine.buffer))
    return windows


@transaction.atomic
def strike(machines: dict[str, Machine], users: dict, now: dt.datetime) -> Booking | None:
    """Karim's missed booking three days ago, unless he already has a no-show in the last 30 days."""
    member, machine = users.get("karim"), machines.get(STRIKE_MACHINE)
    if member is None or machine is None:
        return None
    if Booking.objects.filter(
        member=member, status=Booking.Status.NO_SHOW, start__gte=now - dt.timedelta(days=30)
    ).exists():
        return None
    day = timezone.localdate(now, timezone=machine.lab.tz) - dt.timedelta(days=3)
    start, end = _past(machine, day, dt.time(10), 60)
    return Booking.objects.create(
        machine=machine,
        member=member,
        start=start,
        end=end,
        blocked_until=end + machine.buffer,
        status=Booking.Status.NO_SHOW,
        purpose="Keychains",
        released_at=start + dt.timedelta(minutes=machine.no_show_grace_minutes),
    )


#: The run hours since the lens was last cleaned, in the demo: just past its 20-hour interval.
CARE_RUN_HOURS_SINCE = 21.0


@transaction.atomic
def care(machines: dict[str, Machine], users: dict, now: dt.datetime) -> int:
    """The laser's service intervals and its past use; returns how many past sessions were added.

    The intervals count from the moment the laser had run :data:`CARE_RUN_HOURS_SINCE` hours before
    now — in the scene's sessions and the generated history's alike — so the page shows about 21 run
    hours since the lens was cleaned however much history the demo holds.
    """
    machine = machines.get(CARE_MACHINE)
    if machine is None or machine.service_intervals.exists():
        return 0
    makers = [users[name] for name in ("maker", "anouk", "karim") if name in users]
    today = timezone.localdate(now, timezone=machine.lab.tz)
    added = 0
    for n, (days, minutes) in enumerate(CARE_HISTORY):
        start, end = _past(machine, today - dt.timedelta(days=days), dt.time(10), 120)
        if Booking.objects.filter(machine=machine, start__lt=end, blocked_until__gt=start).exists():
            continue
        ran_from = start + dt.timedelta(minutes=10)
        ran_to = ran_from + dt.timedelta(minutes=minutes)
        booking = Booking.objects.create(
            machine=machine,
            member=makers[n % len(makers)],
            start=start,
            end=end,
            blocked_until=end + machine.buffer,
            status=Booking.Status.COMPLETED,
            purpose="Plywood box",
            checked_in_at=start,
            check_in_via=Booking.CheckInVia.KIOSK,
            completed_at=end,
            used_minutes=minutes,
            job_outcome=UsageSession.Outcome.FINISHED,
        )
        UsageSession.objects.create(
            machine=machine,
            started_at=ran_from,
            ended_at=ran_to,
            job_id=f"demo-history-{days}",
            job_name="plywood-box.gcode",
            outcome=UsageSession.Outcome.FINISHED,
            booking=booking,
        )
        added += 1
    since = _run_hours_ago(machine, now, CARE_RUN_HOURS_SINCE)
    for name, every, basis in CARE_TASKS:
        ServiceInterval.objects.create(
            machine=machine, name=name, every_hours=every, basis=basis, counted_from=since
        )
    return added


def _run_hours_ago(machine: Machine, now: dt.datetime, hours: float) -> dt.datetime:
    """The moment after which the machine's finished sessions add up to ``hours`` (its first session if fewer)."""
    left = dt.timedelta(hours=hours)
    sessions = UsageSession.objects.filter(machine=machine, started_at__lt=now, ended_at__isnull=False)
    moment = now - dt.timedelta(days=45)
    for started, ended in sessions.order_by("-started_at").values_list("started_at", "ended_at"):
        ran = min(ended, now) - started
        if ran >= left:
            return min(ended, now) - left
        left -= ran
        moment = started
    return moment


def waitlist_offer(machines: dict[str, Machine], users: dict, now: dt.datetime) -> WaitlistOffer | None:
    """Another member (``karim``, else ``anouk`` or ``manager``: whoever the quota lets book) books a 3D
    printer in a few days, ``maker`` joins the waitlist for that time, the other member cancels, and the freed time is offered to maker (their bookings page shows it, held 15 minutes).

    Played once a day (not again while maker joined a waitlist in the last 24 hours). Goes through the
    services (booking, join, cancel, and the offer the cancellation's freed time makes on commit).
    """
    maker = users.get("maker")
    others = [users[name] for name in ("karim", "anouk", "manager") if name in users]
    if maker is None:
        return None
    if WaitlistEntry.objects.filter(member=maker, created_at__gt=now - dt.timedelta(days=1)).exists():
        return None  # played today already (whatever came of it)
    printers = [m for m in machines.values() if m.machine_type.slug == WAITLIST_TYPE and m.bookable]
    for machine, other in itertools.product(sorted(printers, key=lambda m: m.slug), others):
        for days in range(3, 10):
            day = timezone.localdate(now, timezone=machine.lab.tz) + dt.timedelta(days=days)
            start = dt.datetime.combine(day, dt.time(10), tzinfo=machine.lab.tz)
            try:
                booking = services.booking_create(
                    machine=machine, member=other, start=start, end=start + dt.timedelta(hours=1), now=now
                )
            except BookingError as exc:
                log.debug("demo: waitlist scene on %s at %s: %s", machine.slug, start, exc.code)
                continue
            try:
                entry = waitlist.join(
                    member=maker,
                    lab=machine.lab,
                    machine=machine,
                    start=booking.start,
                    end=booking.end,
                    now=now,
                )
            finally:
                services.booking_cancel(booking=booking, by=other, now=now)
            # The cancellation's commit offers the time; a pass does the same where nothing commits yet.
            waitlist.scheduled_pass(now)
            offer = WaitlistOffer.objects.filter(entry=entry, status=WaitlistOffer.Status.OPEN).first()
            if offer is None:  # maker may not take it (their quota, say): the scene is not played
                waitlist.leave(entry, by=maker, now=now)
                log.info("demo: the freed time on %s was not offered to maker", machine.slug)
            return offer
    return None
