"""A year (or any number of days) of plausible past activity in the demo: ``seed_demo --history-days N``.

What it makes, before today's demo scenes (every row ends before today, lab time):

* 150–190 members ``hist-0001``… with unusable passwords (nobody logs in as them); about 60 % agreed to
  programme statistics and declared some of gender, birth year or age band, and user category; teenagers
  declare the "Young makers" initiative, some women "Women in tech";
* training sessions (every week or two per training and lab) with registrations, attendance and the
  certifications attendance grants, so that a member uses a machine only once certified for it;
* workshops (:class:`~fablab.booking.models.Series` with their occurrences' bookings and attended
  registrations), two tagged with the programme's initiatives;
* planned maintenance windows, two breakdowns, monthly maintenance bookings;
* member bookings, usage sessions, walk-ins and the status history (:mod:`fablab.demo.history_machines`).

**The booking services are bypassed on purpose**: they refuse the past, rightly. The rows are written
with ``bulk_create`` (tens of thousands in seconds) and keep what the services guarantee: no two holding
bookings of a machine overlap (buffer included), sessions are attributed as :mod:`devices.attribution`
would, bookings carry the usage attribution derives from their sessions.

Deterministic: the same ``seed`` and ``now`` give the same rows. Generated once: nothing is made when
``hist-`` members exist. The history ends the day before the first booking, session or status change
already in the database (on a fresh database: yesterday), and leaves free the past times the demo's
scenes write (:func:`fablab.demo.scenes.past_windows`). Raw telemetry (InfluxDB) is not written: the
demo writes none for the past either (its simulated bridges send live telemetry only); the reports read
the daily rollups, which :func:`roll_up` builds for the whole history.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
import time
from collections import Counter, defaultdict

from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import F, Min
from django.utils import timezone

from devices.models import PowerPlug, StateChange, UsageSession
from fablab.booking.models import Booking, Series, WorkshopRegistration
from fablab.demo import history_people as people_mod
from fablab.demo import scenes
from fablab.demo.history_machines import DAY, MIN, Rows, Sweep, merge, subtract, windows
from fablab.labs.models import Closure, Machine, MaintenanceWindow
from fablab.trainings.models import Initiative, Registration, TrainingSession

PREFIX = people_mod.PREFIX
T = dt.time

#: training, machine, weekday, start, hours, every n weeks, in week n, seats, initiative tag (every 4th)
TRAINING_PLAN = (
    ("3d-printing", "prusa-mk4-1", 5, T(10), 2, 2, 0, 6, None),
    ("3d-printing", "ultimaker-s3", 5, T(10, 30), 2, 2, 1, 6, "young-makers"),
    ("laser-safety", "epilog-laser", 2, T(18), 2, 2, 0, 6, "women-in-tech"),
    ("laser-safety", "diode-laser", 3, T(18), 2, 2, 1, 6, None),
    ("cnc-safety", "cnc-router", 5, T(14), 3, 4, 1, 4, None),
    ("cnc-safety", "shapeoko", 5, T(12, 30), 3, 4, 3, 4, None),
)
#: (en, nl, fr), machines, weekday, start, minutes, every n weeks (0: first of the month), initiative,
#: seats, target group, whether it pauses in July and August.
WORKSHOPS = (
    (
        ("Young makers lab", "Jonge makers lab", "Atelier jeunes makers"),
        ("ultimaker-s3", "diode-laser"),
        2, T(14), 150, 1, "young-makers", 10, "12–17", True,
    ),
    (
        ("Women in tech: laser evening", "Women in tech: laseravond", "Women in tech : soirée laser"),
        ("co2-laser", "epilog-laser"),
        3, T(18, 30), 150, 2, "women-in-tech", 8, "", True,
    ),
    (("Repair café", "Repair café", "Repair café"), ("prusa-mk4-1", "prusa-mk4-2"), 6, T(14), 180, 0, None, 12, "", False),
)  # fmt: skip
RRULE_DAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
#: machine, when (share of the history), days, reason
BREAKDOWNS = (
    ("shapeoko", 0.45, 4, "Spindle bearing failure"),
    ("co2-laser", 0.78, 2, "Laser tube misfiring"),
)
MAINTENANCE_TITLE = "Calibration and belt check"


def exists() -> bool:
    return get_user_model().objects.filter(username__startswith=PREFIX).exists()


def last_day(now: dt.datetime, tz) -> dt.date:
    """Yesterday (lab time), or the day before the first booking, session or status change already there."""
    firsts = [
        Booking.objects.aggregate(m=Min("start"))["m"],
        UsageSession.objects.aggregate(m=Min("started_at"))["m"],
        StateChange.objects.aggregate(m=Min("at"))["m"],
    ]
    day = timezone.localdate(now, timezone=tz)
    for first in filter(None, firsts):
        day = min(day, timezone.localdate(first, timezone=tz))
    return day - DAY


@dataclasses.dataclass
class Held:
    """What holds the machines before member bookings fill the rest: intervals and the bookings among them."""

    spans: dict[int, list] = dataclasses.field(default_factory=lambda: defaultdict(list))
    bookings: dict[int, list[Booking]] = dataclasses.field(default_factory=lambda: defaultdict(list))

    def free(self, machine: Machine, start: dt.datetime, end: dt.datetime) -> bool:
        until = end + machine.buffer
        return all(e <= start or until <= s for s, e in self.spans[machine.pk])

    def hold(self, machine: Machine, start: dt.datetime, end: dt.datetime, booking: Booking | None = None):
        self.spans[machine.pk].append((start, end + machine.buffer))
        if booking is not None:
            self.bookings[machine.pk].append(booking)


def _open(machine: Machine, start: dt.datetime, end: dt.datetime) -> bool:
    day = timezone.localdate(start, timezone=machine.lab.tz)
    return any(s <= start and end <= e for s, e in machine.lab.opening_intervals(day))


def _at(machine: Machine, day: dt.date, at: dt.time) -> dt.datetime:
    return dt.datetime.combine(day, at, tzinfo=machine.lab.tz).astimezone(dt.UTC)


def _holding(machine, kind, start, end, title, manager, series=None) -> Booking:
    return Booking(
        kind=kind,
        machine=machine,
        title=title,
        start=start,
        end=end,
        blocked_until=end + machine.buffer,
        status=Booking.Status.COMPLETED,
        decided_by=manager,
        series=series,
    )


def generate(days: int, seed: int = 12, now: dt.datetime | None = None, *, rollups: bool = True) -> dict:
    """Write ``days`` days of history ending yesterday; returns what was made (``skipped`` if nothing)."""
    now = now or timezone.now()
    if days <= 0 or exists():
        return {"skipped": True}
    machines = list(
        Machine.objects.select_related("lab", "machine_type", "required_training").order_by(
            "lab__slug", "slug"
        )
    )
    if not machines:
        return {"skipped": True}
    started = time.monotonic()
    end_day = last_day(now, machines[0].lab.tz)
    first_day = end_day - dt.timedelta(days=days - 1)
    rng = random.Random(seed)
    with transaction.atomic():
        _closures({m.lab for m in machines}, first_day, end_day)
        # Fresh labs: their cached closures now include the past winters.
        machines = list(
            Machine.objects.select_related("lab", "machine_type", "required_training").order_by(
                "lab__slug", "slug"
            )
        )
        by_slug = {m.slug: m for m in machines}
        manager = get_user_model().objects.filter(username="manager").first()
        initiatives = {i.slug: i for i in Initiative.objects.all()}
        crowd = people_mod.make(rng, first_day, end_day, machines, initiatives, now)
        held, rows = Held(), Rows()
        for machine, start, end in scenes.past_windows(by_slug, now):
            held.spans[machine.pk].append((start, end))
        summary: dict = {}
        windows_made = _downtime(rng, machines, held, rows, first_day, end_day, manager, crowd)
        sessions = _trainings(rng, by_slug, held, first_day, end_day, manager, initiatives)
        crowd.train(sessions)
        for session in sessions:  # the sessions somebody came to ran jobs; the others were cancelled
            if crowd.registrations.get(id(session)):
                held.bookings[session.demo_machine.pk].append(session.demo_hold)
            else:
                _cancel(session)
        series = _workshops(rng, by_slug, held, first_day, end_day, manager, initiatives, crowd)
        _maintenance(machines, held, first_day, end_day, manager)
        plugs = set(PowerPlug.objects.values_list("machine_id", flat=True))
        sweep = Sweep(rng, rows, first_day, end_day, crowd.pick, plugs)
        member_bookings = []
        for machine in machines:
            spans = merge(held.spans[machine.pk])
            free = subtract(windows(machine, first_day, end_day, machine.bookable_around_the_clock), spans)
            member_bookings += sweep.run(machine, free, held.bookings[machine.pk])
            first = _at(machine, first_day, T(0))
            rows.states[machine.pk].append((first, "idle"))
        # Written in dependency order: bookings, then what points at them.
        held_bookings = [b for bs in held.bookings.values() for b in bs]
        held_bookings += [s.demo_hold for s in sessions if s.cancelled_at is not None]
        for s in series:
            s.save()  # a few rows; their bookings need the ids
        for b in held_bookings:
            b.series_id = b.series.pk if b.series is not None else None
        Booking.objects.bulk_create(held_bookings + member_bookings + rows.cancelled, batch_size=2000)
        _backdate(member_bookings + rows.cancelled)
        for s in series:
            s.machines.set(s.demo_machines)
        summary["training_sessions"] = _write_trainings(sessions, crowd, manager)
        summary["workshop_registrations"] = _write_workshops(series, crowd)
        for session in rows.sessions:
            session.booking_id = session.booking.pk if session.booking is not None else None
        UsageSession.objects.bulk_create(rows.sessions, batch_size=2000)
        summary["state_changes"] = _write_states(rows.states)
        MaintenanceWindow.objects.bulk_create(windows_made)
    statuses = Counter(b.status for b in member_bookings + rows.cancelled)
    summary.update(
        first_day=first_day,
        last_day=end_day,
        members=len(crowd.people),
        member_bookings=len(member_bookings) + len(rows.cancelled),
        completed=statuses[Booking.Status.COMPLETED],
        no_shows=statuses[Booking.Status.NO_SHOW],
        cancelled=statuses[Booking.Status.CANCELLED],
        sessions=len(rows.sessions),
        walk_ins=sum(s.walk_in for s in rows.sessions),
        workshops=len(series),
        maintenance_windows=len(windows_made),
        seconds=round(time.monotonic() - started, 1),
    )
    if rollups:
        summary["rollup"] = roll_up(first_day, end_day)
    return dict(summary)


def roll_up(first_day: dt.date, last: dt.date) -> dict | None:
    """Build the report rollups of the history's days (None while the rollup module is not there)."""
    try:
        from fablab.reports import rollup
    except ImportError:
        return None
    return rollup.rebuild(first_day, last)


def _closures(labs, first_day: dt.date, end_day: dt.date) -> None:
    """The winter holidays of the past years the history covers (seed_demo makes this year's)."""
    for lab in labs:
        for year in range(first_day.year - 1, end_day.year):
            Closure.objects.get_or_create(
                lab=lab,
                starts_on=dt.date(year, 12, 24),
                defaults={"ends_on": dt.date(year + 1, 1, 1), "reason": "Winter holidays"},
            )


def _backdate(bookings: list[Booking]) -> None:
    """Members booked three days ahead (``created_at`` is set on insert; one UPDATE over the id range)."""
    ids = [b.pk for b in bookings]
    if ids:
        Booking.objects.filter(pk__gte=min(ids), pk__lte=max(ids), kind=Booking.Kind.MEMBER).update(
            created_at=F("start") - dt.timedelta(days=3)
        )


def _downtime(rng, machines, held: Held, rows: Rows, first_day, end_day, manager, crowd) -> list:
    """Quarterly planned service of the lasers and routers, and the breakdowns (with their status history
    and the bookings the manager cancelled for them)."""
    made, days = [], (end_day - first_day).days + 1
    for index, machine in enumerate(machines):
        if machine.machine_type.slug not in ("laser-cutter", "cnc"):
            continue
        for offset in range(20 + 7 * (index % 4), days, 91):
            day = first_day + dt.timedelta(days=offset)
            day += dt.timedelta(days=(7 - day.weekday()) % 7)  # the next Monday
            start, end = _at(machine, day, T(9)), _at(machine, day, T(12))
            if day <= end_day and _open(machine, start, end) and held.free(machine, start, end):
                held.hold(machine, start, end)
                made.append(
                    MaintenanceWindow(
                        machine=machine, start=start, end=end, reason="Quarterly service", created_by=manager
                    )
                )
    by_slug = {m.slug: m for m in machines}
    for slug, share, length, reason in BREAKDOWNS:
        machine = by_slug.get(slug)
        day = first_day + dt.timedelta(days=int(days * share))
        length = min(length, (end_day - day).days)
        if machine is None or length < 1:
            continue
        start = _at(machine, day, T(11))
        end = _at(machine, day + dt.timedelta(days=length), T(11))
        held.spans[machine.pk].append((start, end))
        made.append(
            MaintenanceWindow(
                machine=machine,
                start=start,
                end=end,
                reason=reason,
                kind=MaintenanceWindow.Kind.BREAKDOWN,
                created_by=manager,
            )
        )
        rows.states[machine.pk] += [(start, "error"), (start + 40 * MIN, "offline"), (end, "idle")]
        for n in range(1, 4):  # booked before it broke, cancelled by the manager
            b_start = _at(machine, day + dt.timedelta(days=min(n, length - 1)), T(14 + n))
            member = crowd.pick(machine, b_start, b_start + 60 * MIN)
            if member is not None and b_start > start + 30 * MIN:
                rows.cancelled.append(
                    Booking(
                        machine=machine,
                        member=member,
                        start=b_start,
                        end=b_start + 60 * MIN,
                        blocked_until=b_start + 60 * MIN + machine.buffer,
                        status=Booking.Status.CANCELLED,
                        cancelled_at=start + 30 * MIN,
                        cancelled_by=manager,
                        cancel_reason=Booking.CancelReason.OUT_OF_SERVICE,
                        purpose=rng.choice(("Prototype", "Sign", "Box")),
                    )
                )
    return made


def _trainings(rng, by_slug, held: Held, first_day, end_day, manager, initiatives) -> list[TrainingSession]:
    """The training sessions of the period (their seats are filled by :mod:`fablab.demo.history_people`)."""
    made, day = [], first_day
    monday = first_day - dt.timedelta(days=first_day.weekday())
    while day <= end_day:
        week = (day - monday).days // 7
        for _training, machine_slug, weekday, at, hours, every, nth, seats, tag in TRAINING_PLAN:
            machine = by_slug.get(machine_slug)
            if machine is None or machine.required_training is None or day.weekday() != weekday:
                continue
            if week % every != nth:
                continue
            start = _at(machine, day, at)
            end = start + dt.timedelta(hours=hours)
            if not _open(machine, start, end) or not held.free(machine, start, end):
                continue
            session = TrainingSession(
                training=machine.required_training,
                lab=machine.lab,
                start=start,
                end=end,
                seats=seats,
                language=rng.choice(TrainingSession.Language.values),
                initiative=initiatives.get(tag) if tag and week % (2 * every) == nth else None,
                created_by=manager,
                created_at=start - dt.timedelta(days=21),
            )
            session.demo_machine = machine
            session.demo_hold = _holding(
                machine, Booking.Kind.TRAINING, start, end, machine.required_training.name, manager
            )
            held.hold(machine, start, end)
            made.append(session)
        day += DAY
    return made


def _cancel(session: TrainingSession) -> None:
    """Nobody registered: the manager cancelled the session three days ahead (its time stays out of the sweep)."""
    session.cancelled_at = session.start - dt.timedelta(days=3)
    hold = session.demo_hold
    hold.status, hold.cancelled_at = Booking.Status.CANCELLED, session.cancelled_at
    hold.cancel_reason, hold.cancelled_by = Booking.CancelReason.MANAGER, hold.decided_by


def _write_trainings(sessions: list[TrainingSession], crowd, manager) -> int:
    """Sessions, their machines and holds; the certifications and registrations the crowd made."""
    TrainingSession.objects.bulk_create(sessions)
    TrainingSession.machines.through.objects.bulk_create(
        TrainingSession.machines.through(trainingsession_id=s.pk, machine_id=s.demo_machine.pk)
        for s in sessions
    )
    TrainingSession.holds.through.objects.bulk_create(
        TrainingSession.holds.through(trainingsession_id=s.pk, booking_id=s.demo_hold.pk) for s in sessions
    )
    crowd.write_certifications(manager)
    registrations = []
    for session in sessions:
        for reg in crowd.registrations.get(id(session), []):
            reg.session_id = session.pk
            reg.certification_id = reg.certification.pk if reg.certification is not None else None
            registrations.append(reg)
    Registration.objects.bulk_create(registrations, batch_size=2000)
    return len(sessions)


def _workshops(rng, by_slug, held: Held, first_day, end_day, manager, initiatives, crowd) -> list[Series]:
    made = []
    for names, slugs, weekday, at, minutes, every, tag, seats, target, summer_break in WORKSHOPS:
        machines = [by_slug[s] for s in slugs if s in by_slug]
        if not machines:
            continue
        lab = machines[0].lab
        rule = f"FREQ=WEEKLY;INTERVAL={every};BYDAY={RRULE_DAYS[weekday]}" if every else (
            f"FREQ=MONTHLY;BYDAY=1{RRULE_DAYS[weekday]}"
        )  # fmt: skip
        series = Series(
            kind=Series.Kind.WORKSHOP,
            title=names[0],
            title_en=names[0],
            title_nl=names[1],
            title_fr=names[2],
            lab=lab,
            rrule=rule,
            first_day=first_day,
            start_time=at,
            duration=dt.timedelta(minutes=minutes),
            until=end_day,
            seats=seats,
            initiative=initiatives.get(tag) if tag else None,
            target_group=target,
            created_by=manager,
        )
        series.demo_machines, series.demo_occurrences = machines, []
        monday = first_day - dt.timedelta(days=first_day.weekday())
        day = first_day
        while day <= end_day:
            week = (day - monday).days // 7
            on = day.weekday() == weekday and (day.day <= 7 if not every else week % every == 0)
            if on and not (summer_break and day.month in (7, 8)):
                start = _at(machines[0], day, at)
                end = start + dt.timedelta(minutes=minutes)
                if all(_open(m, start, end) and held.free(m, start, end) for m in machines):
                    for m in machines:
                        held.hold(
                            m,
                            start,
                            end,
                            _holding(m, Booking.Kind.WORKSHOP, start, end, names[0], manager, series),
                        )
                    series.demo_occurrences.append(start)
                    crowd.attend_workshop(series, start, tag)
            day += DAY
        made.append(series)
    return made


def _write_workshops(series: list[Series], crowd) -> int:
    registrations = [r for s in series for r in crowd.workshop_registrations.get(id(s), [])]
    for r in registrations:
        r.series_id = r.series.pk
    WorkshopRegistration.objects.bulk_create(registrations, batch_size=2000)
    return len(registrations)


def _maintenance(machines, held: Held, first_day, end_day, manager) -> None:
    """The routers' monthly calibration: a maintenance booking on the first Monday, 09:30–10:30."""
    for machine in machines:
        if machine.machine_type.slug != "cnc":
            continue
        day = first_day
        while day <= end_day:
            if day.day <= 7 and day.weekday() == 0:
                start = _at(machine, day, T(9, 30))
                end = start + 60 * MIN
                if _open(machine, start, end) and held.free(machine, start, end):
                    booking = _holding(
                        machine, Booking.Kind.MAINTENANCE, start, end, MAINTENANCE_TITLE, manager
                    )
                    held.hold(machine, start, end, booking)
            day += DAY


def _write_states(states: dict[int, list]) -> int:
    """The status history, in time order per machine, with each change's previous state.

    The largest table of the history (tens of thousands of rows): written with one ``executemany``
    rather than ``bulk_create``, whose per-field preparation would cost most of the history's time.
    """
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    rows = []
    for machine_id, events in sorted(states.items()):
        previous = "offline"
        for at, state in sorted(events):
            if state != previous:
                rows.append((machine_id, state, previous, connection.ops.adapt_datetimefield_value(at), now))
                previous = state
    table = connection.ops.quote_name(StateChange._meta.db_table)
    with connection.cursor() as cursor:
        cursor.executemany(
            f"INSERT INTO {table} (machine_id, state, previous_state, at, received_at)"  # noqa: S608 - our names
            " VALUES (%s, %s, %s, %s, %s)",
            rows,
        )
    return len(rows)
