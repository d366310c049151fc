"""The machines' side of the demo history: member bookings, usage sessions, status history, downtime.

:mod:`fablab.demo.history` decides who the members are and what holds the machines (training sessions,
workshops, maintenance); this module fills the rest of each machine's time, one sweep per machine over
the whole history:

* the machine's bookable time is its lab's opening hours (around the clock for a machine flagged so),
  minus what is held; a booking starts at a slot with a probability that follows a weekly pattern (busy
  evenings and Saturdays), a summer dip and the lab's growth over the period;
* each booking ends as it would have: completed (checked in, with its usage sessions attributed to it,
  sometimes an overrun or an early finish), a no-show (released after the grace), or cancelled (early
  or late, by the member);
* sessions without a booking (walk-ins) fall in the gaps of the machines that allow them; now and then
  a machine drops offline for an hour; the status history (``StateChange``) follows the sessions.

The rows are built in memory and written by the caller with ``bulk_create``; nothing here goes through
the booking services, which rightly refuse the past. The rows keep the booking integrity (no two
holding bookings of a machine overlap, buffer included) and attribution's contract (a session belongs to
the booking whose window contains its start; a walk-in lies outside every booking window).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
from collections import defaultdict

from devices.models import UsageSession
from fablab.booking.models import Booking
from fablab.labs.models import Machine

MIN = dt.timedelta(minutes=1)
DAY = dt.timedelta(days=1)

#: Probability that a booking starts at a free slot, at the busiest hour of a normal week.
BASE = {"3d-printer": 0.2, "laser-cutter": 0.34, "cnc": 0.17, "other": 0.05}
#: Booking lengths (minutes) and their weights, per machine type (clipped to the machine's policy).
LENGTHS = {
    "3d-printer": ((60, 90, 120, 180, 240, 360, 480), (2, 2, 4, 4, 3, 1, 1)),
    "laser-cutter": ((30, 60, 90, 120, 180), (3, 5, 3, 2, 1)),
    "cnc": ((60, 120, 180, 240), (2, 4, 3, 1)),
    "other": ((60, 120), (1, 1)),
}
#: Monday … Sunday.
WEEKDAY = (0.75, 0.9, 1.0, 1.0, 0.85, 1.45, 0.6)
#: By local hour 0–23: quiet mornings, busy evenings; night hours only matter for around-the-clock printers.
HOUR = (
    *(0.0,) * 7,
    *(0.25, 0.35, 0.55, 0.7, 0.75, 0.6, 0.6, 0.8, 0.85, 0.9, 1.1),  # 07:00–17:59
    *(1.35, 1.4, 1.25, 0.9, 0.5, 0.15),  # 18:00–23:59
)
#: By month: a summer dip, a quiet December.
SEASON = (0.95, 1.0, 1.05, 1.0, 0.95, 0.85, 0.55, 0.45, 1.1, 1.1, 1.05, 0.8)
#: Average power while running (W), for the machines with a power plug.
POWER_W = {"3d-printer": 110, "laser-cutter": 480, "cnc": 750, "other": 200}
PURPOSES = (
    "Phone stand",
    "Name tags",
    "Gift box",
    "Drone frame",
    "Bike light mount",
    "Chess pieces",
    "Plant pot",
    "Raspberry Pi case",
    "Wooden earrings",
    "Cable clips",
    "Shelf brackets",
    "Board game inserts",
    "Replacement knob",
    "Lamp shade",
    "Prototype housing",
)
OUTCOMES = (("finished", 86), ("failed", 7), ("cancelled", 5), ("interrupted", 2))


@dataclasses.dataclass
class Rows:
    """What the sweep made, to be written with ``bulk_create`` (bookings first: sessions point at them)."""

    #: Member bookings cancelled by a manager when their machine broke down.
    cancelled: list[Booking] = dataclasses.field(default_factory=list)
    sessions: list[UsageSession] = dataclasses.field(default_factory=list)
    #: Per machine id: (when, state) events, in any order (sorted when written).
    states: dict[int, list[tuple[dt.datetime, str]]] = dataclasses.field(
        default_factory=lambda: defaultdict(list)
    )
    energy: dict[int, float] = dataclasses.field(default_factory=lambda: defaultdict(float))


def subtract(intervals: list[tuple], holes: list[tuple]) -> list[tuple]:
    """``intervals`` minus ``holes`` (both sorted, non-overlapping lists of (start, end))."""
    out, j = [], 0
    holes = sorted(holes)
    for start, end in intervals:
        cur = start
        while j < len(holes) and holes[j][1] <= cur:
            j += 1
        k = j
        while k < len(holes) and holes[k][0] < end:
            if holes[k][0] > cur:
                out.append((cur, holes[k][0]))
            cur = max(cur, holes[k][1])
            k += 1
        if cur < end:
            out.append((cur, end))
    return out


def merge(intervals: list[tuple]) -> list[tuple]:
    out: list[list] = []
    for start, end in sorted(intervals):
        if out and start <= out[-1][1]:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([start, end])
    return [tuple(i) for i in out]


def windows(machine: Machine, first_day: dt.date, last_day: dt.date, around_the_clock: bool) -> list[tuple]:
    """The machine's bookable time over the days, as merged UTC intervals (closures excluded)."""
    lab, out, day = machine.lab, [], first_day
    while day <= last_day:
        intervals = lab.opening_intervals(day)
        if around_the_clock and intervals:  # a closure day stays closed
            start = dt.datetime.combine(day, dt.time(), tzinfo=lab.tz).astimezone(dt.UTC)
            end = dt.datetime.combine(day + DAY, dt.time(), tzinfo=lab.tz).astimezone(dt.UTC)
            intervals = [(start, end)]
        out.extend(intervals)
        day += DAY
    return merge(out)


def outcome(rng: random.Random) -> str:
    return rng.choices([o for o, _w in OUTCOMES], weights=[w for _o, w in OUTCOMES])[0]


class Sweep:
    """Fills one machine's free time with member bookings; ``pick(machine, start, end)`` names the member."""

    def __init__(
        self, rng: random.Random, rows: Rows, first_day: dt.date, last_day: dt.date, pick, plugs: set
    ):
        self.rng, self.rows, self.pick, self.plugs = rng, rows, pick, plugs
        self.first_day, self.days = first_day, (last_day - first_day).days + 1

    def demand(self, machine: Machine, at: dt.datetime) -> float:
        local = at.astimezone(machine.lab.tz)
        growth = 0.6 + 0.4 * (local.date() - self.first_day).days / self.days
        return (
            BASE.get(machine.machine_type.slug, 0.05)
            * WEEKDAY[local.weekday()]
            * HOUR[local.hour]
            * SEASON[local.month - 1]
            * growth
        )

    def run(self, machine: Machine, free: list[tuple], held: list[Booking]) -> list[Booking]:
        """Book ``machine`` over ``free``; make the sessions of its bookings and of ``held`` ones; returns its bookings."""
        rng, slot, buffer = self.rng, dt.timedelta(minutes=machine.slot_minutes), machine.buffer
        lengths, weights = LENGTHS.get(machine.machine_type.slug, LENGTHS["other"])
        made: list[Booking] = []
        for start, end in free:
            t = start
            while t + dt.timedelta(minutes=machine.min_duration_minutes) + buffer <= end:
                if rng.random() >= self.demand(machine, t):
                    t += slot
                    continue
                minutes = rng.choices(lengths, weights=weights)[0]
                minutes = max(machine.min_duration_minutes, min(minutes, machine.max_duration_minutes))
                room = int((end - buffer - t) / slot) * machine.slot_minutes
                minutes = min(minutes, room)
                if minutes < machine.min_duration_minutes:
                    break
                b_end = t + dt.timedelta(minutes=minutes)
                member = self.pick(machine, t, b_end)
                if member is None:
                    t += slot
                    continue
                booking = self.booking(machine, member, t, b_end)
                made.append(booking)
                if booking.status == Booking.Status.CANCELLED:
                    t += slot  # the time is free again for someone else
                else:
                    t = start + -(-(b_end + buffer - start) // slot) * slot
        self.sessions(machine, made, held)
        return made

    def booking(self, machine: Machine, member, start: dt.datetime, end: dt.datetime) -> Booking:
        rng = self.rng
        booking = Booking(
            kind=Booking.Kind.MEMBER,
            machine=machine,
            member=member,
            start=start,
            end=end,
            blocked_until=end + machine.buffer,
            purpose=rng.choice(PURPOSES),
        )
        if machine.approval_required:
            booking.decided_at = start - dt.timedelta(days=2, hours=rng.randint(0, 20))
        draw = rng.random()
        if draw < 0.07:  # cancelled well ahead
            booking.status = Booking.Status.CANCELLED
            booking.cancelled_at = start - dt.timedelta(hours=rng.uniform(26, 70))
            booking.cancel_reason, booking.cancelled_by = Booking.CancelReason.MEMBER, member
        elif draw < 0.10:  # cancelled the same day
            booking.status = Booking.Status.CANCELLED
            booking.cancelled_at = start - dt.timedelta(hours=rng.uniform(0.5, 20))
            booking.cancel_reason, booking.cancelled_by = Booking.CancelReason.MEMBER, member
        elif draw < 0.17:
            booking.status = Booking.Status.NO_SHOW
            booking.released_at = start + dt.timedelta(minutes=machine.no_show_grace_minutes)
        else:
            booking.status = Booking.Status.COMPLETED
            early = min(machine.check_in_window_minutes, 12)
            booking.checked_in_at = start - dt.timedelta(minutes=rng.uniform(0, early))
            booking.checked_in_by = member
            booking.check_in_via = rng.choice(
                (
                    Booking.CheckInVia.KIOSK,
                    Booking.CheckInVia.KIOSK,
                    Booking.CheckInVia.PAGE,
                    Booking.CheckInVia.API,
                )
            )
            booking.completed_at = end
        return booking

    # --------------------------------------------------------------------------------------- sessions

    def sessions(self, machine: Machine, bookings: list[Booking], held: list[Booking]) -> None:
        """The sessions of the completed bookings and of the held ones (training, workshop, maintenance),
        then walk-ins and offline spells in the gaps, and the status history of it all."""
        holding = sorted(
            [b for b in bookings if b.status == Booking.Status.COMPLETED] + held, key=lambda b: b.start
        )
        starts = [min(b.start, b.checked_in_at or b.start) for b in holding]
        busy: list[tuple] = []  # what a walk-in or an offline spell must keep clear of
        for b in bookings:
            if b.status == Booking.Status.NO_SHOW:
                busy.append((b.start - 20 * MIN, b.end + 10 * MIN))
        for i, booking in enumerate(holding):
            next_start = starts[i + 1] if i + 1 < len(holding) else None
            last_end = self.booking_sessions(machine, booking, next_start)
            busy.append((starts[i] - 20 * MIN, max(booking.end, last_end) + 15 * MIN))
        self.gaps(machine, merge(busy), holding)

    def booking_sessions(
        self, machine: Machine, booking: Booking, next_start: dt.datetime | None
    ) -> dt.datetime:
        """One or two jobs inside the booking (sometimes past its end); fills the booking's usage fields."""
        rng, kind = self.rng, machine.machine_type.slug
        opened = max(booking.start, booking.checked_in_at or booking.start) + dt.timedelta(
            minutes=rng.uniform(2, 8)
        )
        span = (booking.end - opened).total_seconds()
        if span < 300:
            return booking.end
        jobs = 1 if kind == "3d-printer" or rng.random() < 0.6 else 2
        share = rng.uniform(0.45, 0.92) if booking.kind == Booking.Kind.MEMBER else rng.uniform(0.3, 0.6)
        each = span * share / jobs
        t, made = opened, []
        for n in range(jobs):
            end = t + dt.timedelta(seconds=each)
            if n == jobs - 1 and booking.kind == Booking.Kind.MEMBER and rng.random() < 1 / 8:
                late = rng.uniform(3, 25) if machine.effective_end_action == "finish" else rng.uniform(0.5, 4)
                overrun_end = booking.end + dt.timedelta(minutes=late)
                if next_start is None or overrun_end + 25 * MIN <= next_start:
                    end = overrun_end
            made.append(self.session(machine, t, end, outcome(rng), booking))
            t = end + dt.timedelta(minutes=rng.uniform(3, 10))
        last = made[-1].ended_at
        if (
            booking.kind == Booking.Kind.MEMBER
            and last < booking.end - 20 * MIN
            and rng.random() < 0.3  # "I'm done": the rest of the time is released
        ):
            booking.released_at = booking.completed_at = booking.blocked_until = last + dt.timedelta(
                minutes=rng.uniform(2, 8)
            )
        booking.used_minutes = round(sum((s.ended_at - s.started_at).total_seconds() for s in made) / 60, 2)
        booking.overrun_minutes = round(
            sum(max((s.ended_at - max(s.started_at, booking.end)).total_seconds(), 0) for s in made) / 60, 2
        )
        energies = [s.energy_wh for s in made if s.energy_wh is not None]
        booking.energy_wh = round(sum(energies), 3) if energies else None
        booking.job_outcome = made[-1].outcome
        return last

    def session(self, machine: Machine, start, end, result: str, booking: Booking | None) -> UsageSession:
        rng, rows = self.rng, self.rows
        hours = (end - start).total_seconds() / 3600
        energy = start_wh = None
        if machine.pk in self.plugs:
            start_wh = round(rows.energy[machine.pk], 1)
            energy = round(POWER_W.get(machine.machine_type.slug, 200) * hours * rng.uniform(0.8, 1.2), 1)
            rows.energy[machine.pk] += energy
        n = len(rows.sessions)
        name = (booking.purpose or booking.title or "job") if booking is not None else "walk-in"
        session = UsageSession(
            machine=machine,
            started_at=start,
            ended_at=end,
            job_id=f"hist-{machine.pk}-{n}",
            job_name=f"{name.lower().replace(' ', '-')}.gcode",
            outcome=result,
            energy_wh_start=start_wh,
            energy_wh=energy,
            booking=booking,
            walk_in=booking is None,
        )
        rows.sessions.append(session)
        states = rows.states[machine.pk]
        states.append((start, "running"))
        if machine.machine_type.slug != "3d-printer" and hours > 0.4 and rng.random() < 0.5:
            pause = start + (end - start) * rng.uniform(0.3, 0.6)  # setting up the next sheet
            states += [(pause, "idle"), (pause + dt.timedelta(minutes=rng.uniform(3, 10)), "running")]
        if result == "failed":
            states += [(end, "error"), (end + dt.timedelta(minutes=rng.uniform(2, 8)), "idle")]
        else:
            states.append((end, "idle"))
        return session

    def gaps(self, machine: Machine, busy: list[tuple], holding: list[Booking]) -> None:
        """Walk-ins (where allowed) and a few offline spells in the opening hours nobody books."""
        rng, lab = self.rng, machine.lab
        day, open_time = self.first_day, []
        for _ in range(self.days):
            open_time.extend(lab.opening_intervals(day))
            day += DAY
        free = [(s, e) for s, e in subtract(open_time, busy) if e - s >= 40 * MIN]
        # About one offline spell (the bridge lost its network, say) per machine and 40 days.
        long_gaps = sum(e - s >= 90 * MIN for s, e in free)
        offline = self.days / 40 / max(long_gaps, 1)
        for start, end in free:
            room = end - start
            if machine.walk_ins_allowed and rng.random() < 0.3:
                length = dt.timedelta(minutes=rng.uniform(10, min(40, room / MIN - 10)))
                at = start + (room - length) * rng.random()
                self.session(machine, at, at + length, outcome(rng), None)
            elif room >= 90 * MIN and rng.random() < offline:
                at = start + dt.timedelta(minutes=rng.uniform(5, 20))
                back = at + dt.timedelta(minutes=rng.uniform(25, min(150, room / MIN - 30)))
                self.rows.states[machine.pk] += [(at, "offline"), (back, "idle")]
