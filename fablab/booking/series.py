"""Series of bookings: workshops and courses, and members' recurring (weekly) bookings.

Recurrence. A :class:`~fablab.booking.models.Series` keeps an RFC 5545 RRULE (python-dateutil's
``rrule``) with a lab-local wall-clock first day and start time. :func:`occurrences` expands the rule
on *naive* wall-clock datetimes and only then puts them in the lab's zone, so "every Tuesday 18:00"
stays 18:00 local across the daylight-saving changes (the UTC time moves, the wall clock does not).

Workshops (``kind`` workshop), in two steps:

1. :func:`plan` reads only: the occurrences ahead and what is in the way — a closure of the lab on a
   day the occurrence touches, and per machine member bookings (movable while pending or confirmed:
   with the nearest free time :func:`~fablab.booking.out_of_service.nearest_free_slot` suggests),
   bookings of other kinds and maintenance windows (not movable: the occurrence can only be skipped).
2. :func:`create_workshop` takes the manager's choice per conflict (:data:`SKIP` the occurrence or
   :data:`MOVE` the member's booking) and, in ONE transaction: locks the machines' rows, reads the
   conflicts again (any that the plan did not list, or a move that no longer fits, aborts everything:
   ``series_conflict``), sets the moved bookings aside, books every occurrence not skipped on every
   machine (kind workshop, no member; opening hours and the members' horizon do not apply, closures
   and the no-overlap integrity do: the exclusion constraint on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite),
   then puts each moved booking on the nearest free time of the same length on a machine of the same
   type its member may book (all the member's rules apply; none: ``series_cannot_move``, everything
   is rolled back). After the commit each moved member gets an email and the machine side is told.

Members' series (``kind`` member): :func:`create_member_series` books the occurrences already within
the machine's horizon through :func:`~fablab.booking.services.booking_create` (every rule and quota,
per occurrence); the first (the time the member picked) must pass, a later one refused is reported
and not fatal. :func:`extend_member_series` (a scheduler step) books the occurrences as they enter the
horizon. It is idempotent: each series row is locked while it is extended, ``extended_to`` records the
occurrences already tried, and a unique constraint (series, machine, start) forbids a second booking
of one occurrence — also one the member cancelled. :func:`cancel_series_from` ends a series.

Participants register for one occurrence of a workshop (:func:`register`), under a lock of the
series row, so two registrations for the last seat cannot both pass. Attendance is recorded per
occurrence (:func:`record_attendance`). The machines' usage during an occurrence is attributed to the
workshop's booking (:mod:`devices.attribution`: a confirmed workshop booking holds its machine), so
:func:`workshop_stats` counts hours and reach without naming anyone.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import logging
from collections.abc import Iterable, Mapping

from dateutil.rrule import DAILY, MONTHLY, WEEKLY, YEARLY, rrulestr
from django.db import IntegrityError, transaction
from django.db.models import Count, F, Q, Sum
from django.utils import timezone
from django.utils.translation import gettext

from fablab.labs.models import Closure, Lab, Machine, MaintenanceWindow
from fablab.members import roles

from . import services
from .errors import BookingError
from .models import NO_OVERLAP_CONSTRAINT, Booking, Series, WorkshopRegistration
from .out_of_service import Suggestion, nearest_free_slot

log = logging.getLogger(__name__)

SKIP = "skip"
MOVE = "move"
#: A series may have at most this many occurrences (a year of days, or seven years of weeks).
MAX_OCCURRENCES = 366
#: Frequencies a series may use: anything finer would overlap itself or flood the machines.
FREQUENCIES = {DAILY, WEEKLY, MONTHLY, YEARLY}
WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")


# ------------------------------------------------------------------------------------ recurrence


@dataclasses.dataclass(frozen=True)
class Recurrence:
    """An RRULE (no DTSTART) from ``first_day`` at ``start_time`` (lab-local), ``duration`` long,
    never after ``until`` (a lab-local day, inclusive; None: the rule's own COUNT or UNTIL ends it)."""

    rrule: str
    first_day: dt.date
    start_time: dt.time
    duration: dt.timedelta
    until: dt.date | None = None

    @classmethod
    def of(cls, series: Series) -> Recurrence:
        return cls(series.rrule, series.first_day, series.start_time, series.duration, series.until)


def weekly_rule(weekdays: Iterable[int], *, count: int | None = None, interval: int = 1) -> str:
    """``FREQ=WEEKLY;BYDAY=…`` for ``weekdays`` (0 = Monday), every ``interval`` weeks, ``count`` times."""
    days = sorted(set(weekdays))
    if not days or any(not 0 <= d <= 6 for d in days) or interval < 1:
        raise BookingError("series_invalid_rule")
    parts = ["FREQ=WEEKLY", f"BYDAY={','.join(WEEKDAYS[d] for d in days)}"]
    if interval > 1:
        parts.append(f"INTERVAL={interval}")
    if count:
        parts.append(f"COUNT={count}")
    return ";".join(parts)


def _rule(recurrence: Recurrence):
    text = (recurrence.rrule or "").strip()
    if text.upper().startswith("RRULE:"):
        text = text[6:]
    if not text or "\n" in text or "DTSTART" in text.upper() or len(text) > 500:
        raise BookingError("series_invalid_rule")
    dtstart = dt.datetime.combine(recurrence.first_day, recurrence.start_time)
    try:
        rule = rrulestr(text, dtstart=dtstart)
    except (ValueError, TypeError, OverflowError, KeyError, IndexError) as exc:
        raise BookingError("series_invalid_rule") from exc
    if getattr(rule, "_freq", None) not in FREQUENCIES:
        raise BookingError("series_invalid_rule")
    if recurrence.until is None and rule._until is None and rule._count is None:
        raise BookingError("series_invalid_rule")  # never ends
    return rule


def _localize(naive: dt.datetime, tz) -> dt.datetime:
    """``naive`` wall-clock time in ``tz``; a time that does not exist (spring gap) moves forward."""
    return naive.replace(tzinfo=tz).astimezone(dt.UTC).astimezone(tz)


def occurrences(recurrence: Recurrence, tz) -> list[tuple[dt.datetime, dt.datetime]]:
    """Every occurrence as aware ``(start, end)`` in ``tz``, in order.

    Expanded on naive wall-clock datetimes, then localized: the same local start every time.
    Raises :class:`BookingError` ``series_invalid_rule``, ``series_too_long`` (more than
    :data:`MAX_OCCURRENCES`) or ``invalid_range`` (a duration that is not positive).
    """
    if recurrence.duration <= dt.timedelta(0):
        raise BookingError("invalid_range")
    rule = _rule(recurrence)
    last = dt.datetime.combine(recurrence.until, dt.time.max) if recurrence.until else None
    out = []
    try:
        for naive in itertools.islice(rule, MAX_OCCURRENCES + 1):
            if last is not None and naive > last:
                break
            start = _localize(naive, tz)
            end = _localize(naive + recurrence.duration, tz)
            if end <= start:
                raise BookingError("invalid_range")
            out.append((start, end))
    except (ValueError, OverflowError) as exc:
        raise BookingError("series_invalid_rule") from exc
    if len(out) > MAX_OCCURRENCES:
        raise BookingError("series_too_long")
    for (_s1, e1), (s2, _e2) in itertools.pairwise(out):
        if s2 < e1:  # a series never overlaps itself
            raise BookingError("series_invalid_rule")
    return out


# ------------------------------------------------------------------------------------ workshops


@dataclasses.dataclass
class Conflict:
    """What is in the way of one occurrence: on one machine a booking or a maintenance window, or on
    every machine a closure of the lab (``machine`` None)."""

    occurrence: int
    #: The occurrence's start: it names the conflict, so a plan made a moment later keeps the keys.
    at: dt.datetime
    machine: Machine | None
    booking: Booking | None = None
    window: MaintenanceWindow | None = None
    closure: Closure | None = None
    #: Where the member's booking would go (a preview: :func:`create_workshop` looks again).
    suggestion: Suggestion | None = None

    @property
    def key(self) -> str:
        """Names the conflict in a resolution: ``<start, UTC>-b<booking>``, ``-m<window>`` or ``-c<closure>``."""
        when = f"{self.at.astimezone(dt.UTC):%Y%m%dT%H%MZ}"
        if self.booking is not None:
            return f"{when}-b{self.booking.pk}"
        if self.closure is not None:
            return f"{when}-c{self.closure.pk}"
        return f"{when}-m{self.window.pk}"

    @property
    def span(self) -> tuple[dt.datetime, dt.datetime]:
        """The time in the way: the booking's, the window's, or the closure's days (lab-local midnights)."""
        if self.booking is not None:
            return self.booking.start, self.booking.end
        if self.window is not None:
            return self.window.start, self.window.end
        tz = self.closure.lab.tz
        first = dt.datetime.combine(self.closure.starts_on, dt.time.min, tzinfo=tz)
        after = dt.datetime.combine(self.closure.ends_on + dt.timedelta(days=1), dt.time.min, tzinfo=tz)
        return first, after

    @property
    def movable(self) -> bool:
        """Only a member's booking that has not been checked in can be moved."""
        b = self.booking
        return b is not None and b.kind == Booking.Kind.MEMBER and b.status in Booking.CANCELLABLE


@dataclasses.dataclass
class Occurrence:
    index: int
    start: dt.datetime
    end: dt.datetime
    conflicts: list[Conflict] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Plan:
    """A workshop as the manager described it, with its occurrences ahead and their conflicts."""

    lab: Lab
    machines: list[Machine]
    recurrence: Recurrence
    title: str
    seats: int | None
    target_group: str
    now: dt.datetime
    occurrences: list[Occurrence]
    #: The programme initiative the workshop belongs to (a ``trainings.Initiative``), if any.
    initiative: object | None = None

    @property
    def conflicts(self) -> list[Conflict]:
        return [c for o in self.occurrences for c in o.conflicts]


def _closure_conflicts(index: int, lab: Lab, start: dt.datetime, end: dt.datetime) -> list[Conflict]:
    """The lab's closures on a day ``[start, end)`` touches: a workshop may run outside the opening
    hours (an evening course) but not while the lab is closed, no more than a member's booking may."""
    first = timezone.localtime(start, lab.tz).date()
    last = timezone.localtime(end - dt.timedelta(microseconds=1), lab.tz).date()
    closures = Closure.objects.filter(lab=lab, starts_on__lte=last, ends_on__gte=first).select_related("lab")
    return [Conflict(index, start, None, closure=c) for c in closures.order_by("starts_on", "pk")]


def _conflicts(
    index: int, lab: Lab, machines: list[Machine], start: dt.datetime, end: dt.datetime
) -> list[Conflict]:
    out = _closure_conflicts(index, lab, start, end)
    for machine in machines:
        blocked_until = end + machine.buffer
        bookings = (
            Booking.objects.filter(
                machine=machine, status__in=Booking.ACTIVE, start__lt=blocked_until, blocked_until__gt=start
            )
            .select_related("member", "machine__lab", "machine__machine_type")
            .order_by("start", "pk")
        )
        out += [Conflict(index, start, machine, booking=b) for b in bookings]
        windows = MaintenanceWindow.objects.filter(machine=machine, start__lt=end, end__gt=start)
        out += [Conflict(index, start, machine, window=w) for w in windows.order_by("start", "pk")]
    return out


def plan(
    *,
    lab: Lab,
    machines: Iterable[Machine],
    recurrence: Recurrence,
    title: str,
    seats: int | None = None,
    target_group: str = "",
    now: dt.datetime | None = None,
    suggest: bool = True,
    initiative=None,
) -> Plan:
    """The workshop's occurrences that start after ``now``, each with its conflicts. Writes nothing.

    ``machines`` must be machines of ``lab``. ``suggest`` adds the nearest free time for each movable
    booking (a search per conflict; the API's preview may leave it out). Raises :class:`BookingError`
    for a recurrence that cannot be used, ``series_empty`` when no occurrence lies ahead,
    ``not_bookable`` for a machine of another lab or none at all.
    """
    now = now or timezone.now()
    machines = sorted({m.pk: m for m in machines}.values(), key=lambda m: m.pk)
    if not machines or any(m.lab_id != lab.pk for m in machines):
        raise BookingError("not_bookable")
    ahead = [(s, e) for s, e in occurrences(recurrence, lab.tz) if s >= now]
    if not ahead:
        raise BookingError("series_empty")
    if ahead[-1][1] > now + services.REACH:
        raise BookingError("too_far_ahead")
    result = Plan(lab, machines, recurrence, title.strip(), seats, target_group.strip(), now, [], initiative)
    for index, (start, end) in enumerate(ahead):
        occurrence = Occurrence(index, start, end, _conflicts(index, lab, machines, start, end))
        if suggest:
            for conflict in occurrence.conflicts:
                if conflict.movable:
                    conflict.suggestion = nearest_free_slot(booking=conflict.booking, now=now)
        result.occurrences.append(occurrence)
    return result


@dataclasses.dataclass
class Moved:
    booking: Booking
    old_machine: Machine
    old_start: dt.datetime
    old_end: dt.datetime


@dataclasses.dataclass
class WorkshopResult:
    series: Series
    bookings: list[Booking]
    skipped: list[Occurrence]
    moved: list[Moved]


def _skipped(the_plan: Plan, resolutions: Mapping[str, str]) -> set[int]:
    """The occurrences skipped; raises ``series_unresolved`` for a conflict without a valid choice."""
    skipped = set()
    for conflict in the_plan.conflicts:
        choice = resolutions.get(conflict.key, SKIP if not conflict.movable else None)
        if choice not in (SKIP, MOVE) or (choice == MOVE and not conflict.movable):
            raise BookingError("series_unresolved")
        if choice == SKIP:
            skipped.add(conflict.occurrence)
    return skipped


def create_workshop(
    the_plan: Plan, resolutions: Mapping[str, str], by, *, now: dt.datetime | None = None
) -> WorkshopResult:
    """Book the planned workshop as the module describes; all or nothing.

    ``resolutions`` maps each :attr:`Conflict.key` of the plan to :data:`SKIP` or :data:`MOVE` (a
    conflict that cannot be moved may be left out: it skips its occurrence). Raises
    :class:`BookingError`: ``forbidden`` (``by`` does not manage the lab), ``series_unresolved``,
    ``series_empty`` (everything skipped), ``series_conflict`` (something the plan did not list is in
    the way now), ``series_cannot_move`` (no free time for a moved booking any more).
    """
    now = now or the_plan.now
    lab = the_plan.lab
    if not roles.manages_lab(by, lab.pk):
        raise BookingError("forbidden")
    skipped = _skipped(the_plan, resolutions)
    kept = [o for o in the_plan.occurrences if o.index not in skipped and o.start >= now]
    if not kept:
        raise BookingError("series_empty")
    allowed = {c.key: c for c in the_plan.conflicts if resolutions.get(c.key) == MOVE}
    with transaction.atomic():
        # Lock → check → write. The machines' rows serialize this with the out-of-service writes.
        machines = list(
            Machine.objects.select_for_update(of=("self",))
            .select_related("lab", "machine_type")
            .filter(pk__in=[m.pk for m in the_plan.machines])
            .order_by("pk")
        )
        if len(machines) != len(the_plan.machines):
            raise BookingError("series_conflict")
        to_move: dict[int, Booking] = {}
        for occurrence in kept:
            for conflict in _conflicts(occurrence.index, lab, machines, occurrence.start, occurrence.end):
                planned = allowed.get(conflict.key)
                if planned is None or not conflict.movable:
                    raise BookingError("series_conflict")
                b = conflict.booking
                if (b.machine_id, b.start, b.end) != (
                    planned.booking.machine_id,
                    planned.booking.start,
                    planned.booking.end,
                ):
                    raise BookingError("series_conflict")
                to_move[b.pk] = b
        series = Series.objects.create(
            kind=Series.Kind.WORKSHOP,
            title=the_plan.title,
            lab=lab,
            rrule=the_plan.recurrence.rrule,
            first_day=the_plan.recurrence.first_day,
            start_time=the_plan.recurrence.start_time,
            duration=the_plan.recurrence.duration,
            until=the_plan.recurrence.until,
            seats=the_plan.seats,
            target_group=the_plan.target_group,
            initiative=the_plan.initiative,
            created_by=by,
        )
        series.machines.set(machines)
        parked = _park(to_move)
        bookings = []
        for occurrence in kept:
            for machine in machines:
                bookings.append(_insert_workshop_booking(series, machine, occurrence, by, now))
        moved = [_move(booking, status, now) for booking, status in parked]
        _follow_up_on_commit(bookings, moved)
    skipped_occurrences = [o for o in the_plan.occurrences if o.index in skipped]
    return WorkshopResult(series=series, bookings=bookings, skipped=skipped_occurrences, moved=moved)


def _park(to_move: Mapping[int, Booking]) -> list[tuple[Booking, str]]:
    """Lock the bookings to move and set them aside (cancelled, inside this transaction only), so the
    workshop can take their time and the search for a new time does not count them."""
    parked = []
    for pk in sorted(to_move):
        booking = (
            Booking.objects.select_for_update(of=("self",))
            .select_related("member", "machine__lab", "machine__machine_type")
            .get(pk=pk)
        )
        if booking.status not in Booking.CANCELLABLE:
            raise BookingError("series_conflict")
        status = booking.status
        Booking.objects.filter(pk=pk).update(status=Booking.Status.CANCELLED)
        parked.append((booking, status))
    return parked


def _insert_workshop_booking(series: Series, machine: Machine, occurrence: Occurrence, by, now) -> Booking:
    start, end = occurrence.start.astimezone(dt.UTC), occurrence.end.astimezone(dt.UTC)
    try:
        return services.insert_booking(
            kind=Booking.Kind.WORKSHOP,
            machine=machine,
            member=None,
            title=series.title,
            start=start,
            end=end,
            blocked_until=end + machine.buffer,
            status=Booking.Status.CONFIRMED,
            series=series,
            decided_by=by,
            decided_at=now,
        )
    except IntegrityError as exc:
        if NO_OVERLAP_CONSTRAINT in str(exc):  # a booking committed since the check (PostgreSQL)
            raise BookingError("series_conflict") from exc
        raise


def _move(booking: Booking, status: str, now: dt.datetime) -> Moved:
    """Put a parked booking on the nearest free time its member may book; ``series_cannot_move`` if none."""
    suggestion = nearest_free_slot(booking=booking, now=now)
    if suggestion is None:
        raise BookingError(
            "series_cannot_move",
            gettext(
                "There is no free time to move %(member)s's booking of %(start)s to: skip that occurrence."
            )
            % {"member": booking.member, "start": _label(booking.start, booking.machine.lab)},
        )
    old = Moved(booking, booking.machine, booking.start, booking.end)
    machine = suggestion.machine
    booking.machine, booking.start, booking.end = machine, suggestion.start, suggestion.end
    booking.blocked_until = suggestion.end + machine.buffer
    booking.status = status
    try:
        with transaction.atomic():
            booking.save(update_fields=["machine", "start", "end", "blocked_until", "status", "updated_at"])
    except IntegrityError as exc:
        if NO_OVERLAP_CONSTRAINT in str(exc):
            raise BookingError("series_conflict") from exc
        raise
    return old


def _label(moment: dt.datetime, lab: Lab) -> str:
    from django.utils.formats import date_format

    return date_format(timezone.localtime(moment, lab.tz), "DATETIME_FORMAT")


def _follow_up_on_commit(bookings: list[Booking], moved: list[Moved]) -> None:
    from .signals import booking_changed

    def follow_up() -> None:
        for booking in bookings:
            booking_changed.send(
                sender=Booking, booking_id=booking.pk, machine_id=booking.machine_id, change="created"
            )
        for m in moved:
            if m.old_machine.pk != m.booking.machine_id:
                booking_changed.send(
                    sender=Booking, booking_id=m.booking.pk, machine_id=m.old_machine.pk, change="cancelled"
                )
            booking_changed.send(
                sender=Booking, booking_id=m.booking.pk, machine_id=m.booking.machine_id, change="created"
            )
            send_moved_email(m)

    transaction.on_commit(follow_up)


def send_moved_email(moved: Moved) -> bool:
    """Tell the member their booking was moved for a workshop: from when, to where. Never raises."""
    from .emails import send_member_email

    booking = moved.booking
    return send_member_email(
        booking.member,
        lab=booking.machine.lab,
        template="booking/email/moved_for_workshop.txt",
        subject=lambda: (
            gettext("Booking moved for a workshop: %(machine)s") % {"machine": booking.machine.name}
        ),
        context={"booking": booking, "moved": moved},
        what=f"the moved-for-a-workshop email for booking {booking.pk}",
    )


# ------------------------------------------------------------------------------------ members' series


@dataclasses.dataclass
class Extension:
    created: list[Booking] = dataclasses.field(default_factory=list)
    #: Occurrences the rules refused: (start, error).
    refused: list[tuple[dt.datetime, BookingError]] = dataclasses.field(default_factory=list)


def create_member_series(
    *,
    member,
    machine: Machine,
    start: dt.datetime,
    duration: dt.timedelta,
    until: dt.date,
    purpose: str = "",
    now: dt.datetime | None = None,
) -> tuple[Series, Extension]:
    """A weekly booking of ``machine`` for ``member`` from ``start`` (aware) until the day ``until``.

    The occurrences within the machine's horizon are booked now, each through
    :func:`~fablab.booking.services.booking_create`. The first (``start``) must pass: its
    :class:`BookingError` is raised and nothing is kept. A later one refused (quota, taken…) is
    reported in the :class:`Extension`; the scheduler does not try it again.
    """
    now = now or timezone.now()
    if start.tzinfo is None:
        raise ValueError("series times must be timezone-aware")
    lab = machine.lab
    local = timezone.localtime(start, lab.tz)
    if until < local.date():
        raise BookingError("invalid_range")
    recurrence = Recurrence("FREQ=WEEKLY", local.date(), local.time().replace(tzinfo=None), duration, until)
    occurrences(recurrence, lab.tz)  # a bad duration or a series too long is refused before anything
    with transaction.atomic():
        series = Series.objects.create(
            kind=Series.Kind.MEMBER,
            lab=lab,
            rrule=recurrence.rrule,
            first_day=recurrence.first_day,
            start_time=recurrence.start_time,
            duration=duration,
            until=until,
            member=member,
            purpose=purpose.strip(),
            created_by=member,
        )
        series.machines.set([machine])
        first = _book_occurrence(series, machine, start, start + duration, now)
        extension = _extend(series, now)
        extension.created.insert(0, first)
    return series, extension


def _book_occurrence(series: Series, machine: Machine, start, end, now) -> Booking:
    with transaction.atomic():
        booking = services.booking_create(
            machine=machine, member=series.member, start=start, end=end, purpose=series.purpose, now=now
        )
        Booking.objects.filter(pk=booking.pk).update(series=series)
        booking.series = series
    return booking


def _horizon(machine: Machine, now: dt.datetime) -> dt.date:
    return timezone.localtime(now, machine.lab.tz).date() + dt.timedelta(days=machine.max_days_ahead)


def _due(series: Series, machine: Machine, now: dt.datetime) -> list[tuple[dt.datetime, dt.datetime]]:
    """The occurrences not tried yet that have come within the horizon and not started."""
    last_day = _horizon(machine, now)
    tz = series.lab.tz
    return [
        (s, e)
        for s, e in occurrences(Recurrence.of(series), tz)
        if s >= now
        and (series.extended_to is None or s > series.extended_to)
        and timezone.localtime(s, tz).date() <= last_day
    ]


def _extend(series: Series, now: dt.datetime) -> Extension:
    """Book ``series``' due occurrences; the caller holds the series row's lock (or just made it)."""
    extension = Extension()
    machine = series.machines.select_related("lab").first()
    if machine is None or series.cancelled_at is not None:
        return extension
    due = _due(series, machine, now)
    for start, end in due:
        if Booking.objects.filter(series=series, machine=machine, start=start).exists():
            continue
        try:
            extension.created.append(_book_occurrence(series, machine, start, end, now))
        except BookingError as exc:
            extension.refused.append((start, exc))
    if due:
        Series.objects.filter(pk=series.pk).update(extended_to=due[-1][0])
        series.extended_to = due[-1][0]
    return extension


def extend_member_series(now: dt.datetime | None = None) -> int:
    """The scheduler's step: book the members' occurrences that came within the horizon; how many.

    Any number of schedulers may run it: each series is extended under its row's lock, re-read
    there, and an occurrence is booked at most once (``extended_to`` and the unique constraint). A
    refused occurrence is emailed to its member once (it is tried once).
    """
    now = now or timezone.now()
    today = timezone.localtime(now).date() - dt.timedelta(days=1)
    created = 0
    candidates = Series.objects.filter(kind=Series.Kind.MEMBER, cancelled_at=None, until__gte=today)
    for series in candidates.select_related("lab").prefetch_related("machines"):
        machines = list(series.machines.all())
        try:
            if not machines or not _due(series, machines[0], now):
                continue  # nothing new: no lock taken
            with transaction.atomic():
                series = (
                    Series.objects.select_for_update(of=("self",))
                    .select_related("lab", "member")
                    .get(pk=series.pk)
                )
                extension = _extend(series, now)
        except Exception:
            log.exception("could not extend booking series %s", series.pk)
            continue
        created += len(extension.created)
        if extension.refused:
            _refused_on_commit(series, machines[0], extension.refused)
    return created


def _refused_on_commit(series: Series, machine: Machine, refused) -> None:
    from .emails import send_member_email

    def send() -> None:
        send_member_email(
            series.member,
            lab=series.lab,
            template="booking/email/series_refused.txt",
            subject=lambda: gettext("Recurring booking not made: %(machine)s") % {"machine": machine.name},
            context={"series": series, "machine": machine, "refused": [(s, e.detail) for s, e in refused]},
            what=f"the refused occurrences of series {series.pk}",
        )

    transaction.on_commit(send)


def cancel_series_from(
    series: Series, from_dt: dt.datetime, by, *, now: dt.datetime | None = None
) -> list[Booking]:
    """Cancel every occurrence of ``series`` starting at or after ``from_dt``, and end the series there.

    Its member (for occurrences not started) or a manager of its lab. The series' ``until`` becomes the
    day before the first cancelled occurrence (none left: ``cancelled_at``), so the scheduler books
    no more. Each booking goes through :func:`~fablab.booking.services.booking_cancel` (its time is
    offered to the waitlist, its member told). Returns the bookings cancelled.
    """
    now = now or timezone.now()
    with transaction.atomic():
        series = Series.objects.select_for_update().select_related("lab").get(pk=series.pk)
        is_manager = roles.manages_lab(by, series.lab_id)
        if series.member_id != by.pk and not is_manager:
            raise BookingError("forbidden")
        if not is_manager and from_dt < now:
            raise BookingError("not_cancellable")
        tz = series.lab.tz
        before = [s for s, _e in occurrences(Recurrence.of(series), tz) if s < from_dt]
        if before:
            series.until = timezone.localtime(before[-1], tz).date()
        else:
            series.cancelled_at = now
        series.save(update_fields=["until", "cancelled_at"])
        cancelled = [
            services.booking_cancel(booking=b, by=by, now=now)
            for b in series.bookings.filter(start__gte=from_dt, status__in=Booking.CANCELLABLE).order_by(
                "start"
            )
        ]
    return cancelled


# ------------------------------------------------------------------------------------ participants


def _occurrence_booking(series: Series, occurrence_start: dt.datetime) -> Booking | None:
    return (
        series.bookings.filter(start=occurrence_start, kind=Booking.Kind.WORKSHOP)
        .exclude(status=Booking.Status.CANCELLED)
        .first()
    )


def register(series: Series, occurrence_start: dt.datetime, member, *, now: dt.datetime | None = None):
    """Register ``member`` for the occurrence starting at ``occurrence_start``; one click.

    Lock the series row → check (a workshop occurrence not cancelled and not over, a seat left, not
    registered yet) → write. Raises ``no_occurrence``, ``workshop_full`` or ``already_in_workshop``.
    """
    now = now or timezone.now()
    with transaction.atomic():
        series = Series.objects.select_for_update().get(pk=series.pk)
        booking = (
            _occurrence_booking(series, occurrence_start) if series.kind == Series.Kind.WORKSHOP else None
        )
        if booking is None or series.cancelled_at is not None or booking.end <= now:
            raise BookingError("no_occurrence")
        occurrence_start = booking.start
        rows = WorkshopRegistration.objects.filter(series=series, occurrence_start=occurrence_start)
        mine = rows.filter(member=member).first()
        if mine is not None and mine.status == WorkshopRegistration.Status.REGISTERED:
            raise BookingError("already_in_workshop")
        taken = rows.filter(status=WorkshopRegistration.Status.REGISTERED).count()
        if series.seats is not None and taken >= series.seats:
            raise BookingError("workshop_full")
        if mine is None:
            return WorkshopRegistration.objects.create(
                series=series, occurrence_start=occurrence_start, member=member, registered_at=now
            )
        mine.status, mine.registered_at = WorkshopRegistration.Status.REGISTERED, now
        mine.sequence += 1
        mine.save(update_fields=["status", "registered_at", "sequence"])
        return mine


def unregister(series: Series, occurrence_start: dt.datetime, member) -> bool:
    """Give the seat back; True when the member was registered."""
    return bool(
        WorkshopRegistration.objects.filter(
            series=series,
            occurrence_start=occurrence_start,
            member=member,
            status=WorkshopRegistration.Status.REGISTERED,
        ).update(status=WorkshopRegistration.Status.CANCELLED, sequence=F("sequence") + 1)
    )


def record_attendance(series: Series, occurrence_start: dt.datetime, attended: Mapping[int, bool], by) -> int:
    """Store who came to one occurrence (``{member id: came}``); a manager of the lab. How many rows."""
    if not roles.manages_lab(by, series.lab_id):
        raise BookingError("forbidden")
    changed = 0
    with transaction.atomic():
        rows = WorkshopRegistration.objects.select_for_update().filter(
            series=series, occurrence_start=occurrence_start, status=WorkshopRegistration.Status.REGISTERED
        )
        for row in rows:
            if row.member_id in attended and row.attended != attended[row.member_id]:
                row.attended = attended[row.member_id]
                row.save(update_fields=["attended"])
                changed += 1
    return changed


def occurrence_rows(series: Series) -> list[dict]:
    """One row per occurrence of a workshop: start, end, machines' bookings, registered and attended."""
    bookings = series.bookings.select_related("machine").order_by("start", "machine__name")
    counts = {
        row["occurrence_start"]: row
        for row in WorkshopRegistration.objects.filter(
            series=series, status=WorkshopRegistration.Status.REGISTERED
        )
        .values("occurrence_start")
        .annotate(registered=Count("pk"), attended=Count("pk", filter=Q(attended=True)))
    }
    out: dict[dt.datetime, dict] = {}
    for b in bookings:
        row = out.setdefault(
            b.start, {"start": b.start, "end": b.end, "bookings": [], "registered": 0, "attended": 0}
        )
        row["bookings"].append(b)
        if b.start in counts:
            row["registered"] = counts[b.start]["registered"]
            row["attended"] = counts[b.start]["attended"]
    for row in out.values():
        row["cancelled"] = all(b.status == Booking.Status.CANCELLED for b in row["bookings"])
        row["seats_left"] = None if series.seats is None else max(series.seats - row["registered"], 0)
    return list(out.values())


def workshop_stats(lab: Lab, start: dt.datetime, end: dt.datetime) -> dict:
    """Workshop hours and reach in ``lab`` over ``[start, end)``, naming nobody.

    ``booked_hours``: machine hours held by workshop occurrences; ``used_hours``: the machines' usage
    attributed to them; ``sessions``: occurrences held; ``participants``: registrations that attended;
    ``reach``: distinct people who attended at least once.
    """
    bookings = Booking.objects.filter(
        kind=Booking.Kind.WORKSHOP,
        machine__lab=lab,
        start__gte=start,
        start__lt=end,
        status__in=Booking.ACTIVE,
    )
    booked = sum(((b.end - b.start).total_seconds() for b in bookings.only("start", "end")), 0.0) / 3600
    used = (bookings.aggregate(m=Sum("used_minutes"))["m"] or 0.0) / 60
    attended = WorkshopRegistration.objects.filter(
        series__lab=lab, occurrence_start__gte=start, occurrence_start__lt=end, attended=True
    )
    return {
        "sessions": bookings.values("series_id", "start").distinct().count(),
        "booked_hours": round(booked, 2),
        "used_hours": round(used, 2),
        "participants": attended.count(),
        "reach": attended.values("member_id").distinct().count(),
    }
