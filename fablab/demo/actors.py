"""The demo's simulated makers: they check in, start jobs, now and then stay away or walk in.

``manage.py run_demo_makers`` calls :meth:`Makers.run_pass` every few seconds. One pass:

1. **Check-ins.** Every confirmed booking of a demo maker (:data:`fablab.demo.story.MAKERS`) whose
   check-in window is open is checked in at a moment of its own within the window (kiosk or page),
   through :func:`fablab.booking.lifecycle.check_in`, the way the member would. One booking in
   :data:`NO_SHOW_ONE_IN` is a no-show: nobody comes, and the scheduler releases it. Both choices are
   drawn from the booking's id, so they stay the same from pass to pass and across restarts.
2. **Jobs.** A minute after a check-in (and not before the booking starts) the maker starts a job
   on the machine: a request for the machine's simulator (:mod:`firmware_bridge.simulators.demo_control`),
   which runs it as the machine would — and refuses it, like the hardware, if the interlock has the
   machine disabled. Now and then a job runs past the booking's end (an overrun).
3. **Walk-ins.** About once every :attr:`Makers.walk_in_every_s`, someone starts a job on an idle,
   online machine that nobody booked (not an interlocked one: it would refuse), which the hub
   reports as unbooked use where the machine does not allow walk-ins.
4. **Booking ahead.** Every few minutes, a machine with nothing booked in the next hours gets a
   new booking for a demo maker (:func:`fablab.demo.story.book_slot`, i.e. ``booking_create``),
   so the story goes on for hours.

No server process imports this module; the tests drive :meth:`Makers.run_pass` with a fixed seed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
from pathlib import Path

from django.contrib.auth import get_user_model

from devices.models import MachineLink, MachineStatus
from fablab.booking import lifecycle
from fablab.booking.errors import BookingError
from fablab.booking.models import Booking
from fablab.demo import story
from fablab.labs.models import Machine
from firmware_bridge.simulators import demo_control

#: One member booking in this many is a no-show.
NO_SHOW_ONE_IN = 6
#: One job in this many runs past the booking's end.
OVERRUN_ONE_IN = 8
#: A job starts this long after the check-in.
JOB_AFTER = dt.timedelta(minutes=1)


def _draw(booking_id: int, what: str) -> random.Random:
    """A generator seeded by the booking and the choice: the same answer on every pass."""
    return random.Random(f"{what}-{booking_id}")


def is_no_show(booking_id: int) -> bool:
    return _draw(booking_id, "no-show").randrange(NO_SHOW_ONE_IN) == 0


@dataclasses.dataclass
class Makers:
    """The demo's makers. ``control``: the simulators' control directory; ``rng``: walk-ins and jobs."""

    control: Path
    rng: random.Random = dataclasses.field(default_factory=random.Random)
    pass_s: float = 5.0
    walk_in_every_s: float = 1800.0
    book_ahead_every: dt.timedelta = dt.timedelta(minutes=5)
    ahead: dt.timedelta = dt.timedelta(hours=3)
    #: Bookings a job was started for (by this process), and when.
    started: dict[int, dt.datetime] = dataclasses.field(default_factory=dict)
    #: Bookings whose check-in was refused (e.g. the maker is not certified): not tried again.
    refused: set[int] = dataclasses.field(default_factory=set)
    booked_ahead_at: dt.datetime | None = None

    def run_pass(self, now: dt.datetime) -> list[str]:
        """One round of the story at ``now``; returns what happened, one line per event (the caller
        writes them: ``run_demo_makers`` prints them with their time)."""
        events = self.check_in(now) + self.start_jobs(now) + self.walk_in(now)
        if self.booked_ahead_at is None or now - self.booked_ahead_at >= self.book_ahead_every:
            self.booked_ahead_at = now
            events += self.book_ahead(now)
        return events

    # ------------------------------------------------------------------ check-ins

    def check_in(self, now: dt.datetime) -> list[str]:
        events = []
        due = (
            Booking.objects.filter(
                kind=Booking.Kind.MEMBER,
                status=Booking.Status.CONFIRMED,
                member__username__in=story.MAKERS,
                start__lte=now + dt.timedelta(hours=1),
                end__gt=now,
            )
            .exclude(pk__in=self.refused)
            .select_related("machine__lab", "member")
        )
        for booking in due:
            if is_no_show(booking.pk):
                continue
            opens = lifecycle.check_in_opens(booking)
            draw = _draw(booking.pk, "check-in")
            # Somewhere in the window, before the start.
            at = opens + (booking.start - opens) * draw.random()
            if now < at:
                continue
            via = draw.choice((Booking.CheckInVia.KIOSK, Booking.CheckInVia.PAGE))
            try:
                lifecycle.check_in(booking=booking, by=booking.member, via=via, now=now)
            except BookingError as exc:
                self.refused.add(booking.pk)
                events.append(f"{booking.member} could not check in on {booking.machine.slug}: {exc.code}")
                continue
            events.append(f"{booking.member} checked in on {booking.machine.slug} ({via})")
        return events

    # ----------------------------------------------------------------------- jobs

    def start_jobs(self, now: dt.datetime) -> list[str]:
        events = []
        checked_in = Booking.objects.filter(
            status=Booking.Status.CHECKED_IN,
            member__username__in=story.MAKERS,
            start__lte=now,
            end__gt=now,
            checked_in_at__lte=now - JOB_AFTER,
        ).select_related("machine", "member")
        for booking in checked_in:
            if booking.pk in self.started or not self._idle(booking.machine):
                continue
            left = (booking.end - now).total_seconds()
            if _draw(booking.pk, "overrun").randrange(OVERRUN_ONE_IN) == 0:
                seconds = left + self.rng.uniform(3, 10) * 60
            else:
                seconds = max(60.0, min(left - 120, self.rng.uniform(10, 35) * 60))
            name = f"{story.PURPOSES[booking.pk % len(story.PURPOSES)].lower().replace(' ', '-')}.gcode"
            self._request(booking.machine, seconds, name)
            self.started[booking.pk] = now
            events.append(
                f"{booking.member} started {name} on {booking.machine.slug} ({seconds / 60:.0f} min)"
            )
        return events

    def walk_in(self, now: dt.datetime) -> list[str]:
        if self.rng.random() >= self.pass_s / self.walk_in_every_s:
            return []
        soon = now + dt.timedelta(minutes=45)
        booked = Booking.objects.filter(status__in=Booking.HOLDING, start__lt=soon, end__gt=now).values(
            "machine_id"
        )
        interlocked = MachineLink.objects.filter(interlock=True).values("machine_id")
        idle = MachineStatus.objects.filter(online=True, state="idle").values("machine_id")
        candidates = [
            m
            for m in Machine.objects.filter(pk__in=idle)
            .exclude(pk__in=booked)
            .exclude(pk__in=interlocked)
            .select_related("lab")
            .order_by("slug")
            if any(s <= now < e for s, e in m.lab.opening_intervals(now.astimezone(m.lab.tz).date()))
        ]
        if not candidates:
            return []
        machine = self.rng.choice(candidates)
        seconds = self.rng.uniform(5, 15) * 60
        self._request(machine, seconds, "walk-in.gcode")
        return [f"a walk-in started a job on {machine.slug} ({seconds / 60:.0f} min, no booking)"]

    def _idle(self, machine: Machine) -> bool:
        status = MachineStatus.objects.filter(machine=machine).first()
        return status is None or status.state in ("idle", "offline")

    def _request(self, machine: Machine, seconds: float, name: str) -> None:
        demo_control.request_job(self.control, machine.slug, seconds=seconds, name=name)

    # ------------------------------------------------------------- booking ahead

    def book_ahead(self, now: dt.datetime) -> list[str]:
        """Give each machine with nothing booked in the next :attr:`ahead` a booking soon."""
        events = []
        makers = list(get_user_model().objects.filter(username__in=story.MAKERS, is_active=True))
        busy = Booking.objects.filter(
            status__in=Booking.HOLDING, start__lt=now + self.ahead, end__gt=now
        ).values("machine_id")
        for machine in (
            Machine.objects.filter(bookable=True, approval_required=False)
            .exclude(pk__in=busy)
            .select_related("lab", "machine_type", "required_training")
            .order_by("slug")
        ):
            start = story.next_slot(machine, now + dt.timedelta(minutes=self.rng.uniform(20, 90)))
            self.rng.shuffle(makers)
            purpose = self.rng.choice(story.PURPOSES)
            booking = story.book_slot(machine, makers, start, self.rng.choice((30, 60, 90)), purpose)
            if booking is not None:
                local = booking.start.astimezone(machine.lab.tz)
                events.append(f"{booking.member} booked {machine.slug} at {local:%H:%M}")
        return events
