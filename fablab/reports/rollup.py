"""The daily rollups the reports read: :class:`~fablab.reports.models.MachineDay` and
:class:`~fablab.reports.models.MemberDay`, rebuilt from bookings, usage sessions, the status history,
maintenance windows, closures, trainings and workshops.

Contract:

* :func:`rebuild` recomputes every machine-day (and the member-days) of the given labs and local days
  from scratch and *replaces* them: the same inputs always give the same rows, so a rebuild can be run
  again at any time (the scheduler does, for yesterday and today; ``manage.py rebuild_report_rollups``
  for any range) and nothing accumulates twice. Only the rows whose figures changed are written (see
  :func:`replace_rows`): a rebuild over unchanged inputs leaves the report snapshots current.
* Work is cut per lab and calendar month (a *chunk*). A chunk reads its inputs in a fixed, small number of
  batched queries, whatever the number of machines and days, does the interval arithmetic in Python
  (:mod:`fablab.reports.intervals`, on epoch seconds) and writes in one transaction that first locks the
  lab's row: two rebuilds of one lab (the scheduler and the command) take turns instead of interleaving
  their delete and insert, and each chunk reads its inputs under that lock.
* Days are the lab's local days (``Lab.time_zone``): a day lasts 23 or 25 hours on a daylight-saving
  change, and the hours of a machine bookable around the clock are exactly that.

The definitions follow the notation of the reports (see ``docs/reports.md``, "How the figures are
computed"): open hours, planned downtime, net available hours (every other hour figure is clipped to
them), unplanned downtime, booked, used and busy hours, and the counts by the day a booking starts or a
session ends.
"""

from __future__ import annotations

import bisect
import datetime as dt
import logging
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection, transaction
from django.db.models import OuterRef, Q, Subquery
from django.utils import timezone

from devices.models import MachineLink, StateChange, UsageSession
from fablab.booking.models import Booking
from fablab.labs.models import Lab, Machine, MaintenanceWindow
from firmware_bridge import protocol

from . import intervals as iv
from .models import MachineDay, MemberDay

log = logging.getLogger(__name__)

#: Status-history states that count as unplanned downtime (inside the net available hours).
DOWN_STATES = frozenset({protocol.OFFLINE, protocol.ERROR})
#: Session outcomes that are a job's end (M10); ``running`` is none.
JOB_OUTCOMES = frozenset(
    {
        UsageSession.Outcome.FINISHED,
        UsageSession.Outcome.FAILED,
        UsageSession.Outcome.CANCELLED,
        UsageSession.Outcome.INTERRUPTED,
    }
)
#: The late-cancellation notice of a lab that counts no strikes for them (``late_cancel_hours`` 0).
DEFAULT_LATE_CANCEL_HOURS = 24

Raw = list[iv.Interval]


def _ts(moment: dt.datetime) -> float:
    return moment.timestamp()


def _midnight(day: dt.date, tz) -> float:
    return dt.datetime.combine(day, dt.time(0), tzinfo=tz).timestamp()


def month_chunks(first_day: dt.date, last_day: dt.date) -> list[tuple[dt.date, dt.date]]:
    """``[first_day, last_day]`` cut at month ends: ``[(first, last), ...]``, each within one month."""
    chunks = []
    day = first_day
    while day <= last_day:
        next_month = dt.date(day.year + day.month // 12, day.month % 12 + 1, 1)
        end = min(last_day, next_month - dt.timedelta(days=1))
        chunks.append((day, end))
        day = end + dt.timedelta(days=1)
    return chunks


def _requested_only(b: dict) -> bool:
    """A request that never became a booking: still waiting for approval, or declined by a manager."""
    return b["status"] == Booking.Status.PENDING or (
        b["status"] == Booking.Status.CANCELLED and b["cancel_reason"] == Booking.CancelReason.DECLINED
    )


def _kept(b: dict) -> bool:
    """A member booking not cancelled before its start (a request never approved is none)."""
    if _requested_only(b):
        return False
    if b["status"] == Booking.Status.CANCELLED:
        return b["cancelled_at"] is not None and b["cancelled_at"] >= b["start"]
    return True


@dataclass
class Chunk:
    """One lab's days ``[first, last]`` (one month at most): the inputs, loaded in batched queries, and
    the per-machine interval sets the machine and member days are computed from."""

    lab: Lab
    first: dt.date
    last: dt.date
    now: dt.datetime
    days: list[dt.date] = field(init=False)
    #: Local midnights: ``bounds[i]`` starts ``days[i]``; the last one ends the chunk.
    bounds: list[float] = field(init=False)
    #: Per day index: the lab's opening intervals of that weekday (closures not removed).
    lab_open: list[iv.IntervalSet] = field(init=False)
    #: Per day index: 25 boundaries of the local wall-clock hours 0..23 (a skipped hour is empty).
    hour_bounds: list[list[float]] = field(init=False)
    closed: set[int] = field(init=False)
    #: Filled by :func:`machine_days`: per machine id and day index, the net available hours.
    net: dict[int, dict[int, iv.IntervalSet]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        tz = self.lab.tz
        n = (self.last - self.first).days + 1
        self.days = [self.first + dt.timedelta(days=i) for i in range(n)]
        self.bounds = [_midnight(d, tz) for d in self.days] + [
            _midnight(self.last + dt.timedelta(days=1), tz)
        ]
        self.lo = dt.datetime.fromtimestamp(self.bounds[0], dt.UTC)
        self.hi = dt.datetime.fromtimestamp(self.bounds[-1], dt.UTC)
        self.now_ts = _ts(self.now)
        hours = defaultdict(list)
        for weekday, opens, closes in self.lab.opening_hours.values_list("weekday", "opens", "closes"):
            hours[weekday].append((opens, closes))
        self.lab_open = [
            iv.normalize(
                (
                    dt.datetime.combine(day, opens, tzinfo=tz).timestamp(),
                    dt.datetime.combine(day, closes, tzinfo=tz).timestamp(),
                )
                for opens, closes in hours[day.weekday()]
            )
            for day in self.days
        ]
        self.hour_bounds = [
            [dt.datetime.combine(day, dt.time(h), tzinfo=tz).timestamp() for h in range(24)]
            + [self.bounds[i + 1]]
            for i, day in enumerate(self.days)
        ]
        self.closed = set()
        for starts_on, ends_on in self.lab.closures.filter(
            starts_on__lte=self.last, ends_on__gte=self.first
        ).values_list("starts_on", "ends_on"):
            for i, day in enumerate(self.days):
                if starts_on <= day <= ends_on:
                    self.closed.add(i)

    def day_index(self, ts: float) -> int | None:
        """The index of the local day ``ts`` falls on, ``None`` outside the chunk."""
        i = bisect.bisect_right(self.bounds, ts) - 1
        return i if 0 <= i < len(self.days) else None

    def by_day(self, raw: Iterable[iv.Interval]) -> dict[int, iv.IntervalSet]:
        """Raw intervals cut into the chunk's days, each day's pieces made a canonical set."""
        return {i: iv.normalize(pieces) for i, pieces in iv.split(raw, self.bounds).items()}

    def whole_day(self, i: int) -> iv.IntervalSet:
        return [(self.bounds[i], self.bounds[i + 1])]

    def open_hours(self, around_the_clock: bool, i: int) -> iv.IntervalSet:
        return self.whole_day(i) if around_the_clock else self.lab_open[i]


@dataclass
class MachineInputs:
    """One machine's raw intervals (epoch seconds) and per-day counters within a chunk."""

    around_the_clock: bool = False
    planned: Raw = field(default_factory=list)
    unplanned: Raw = field(default_factory=list)
    running: Raw = field(default_factory=list)
    kept: Raw = field(default_factory=list)
    released: Raw = field(default_factory=list)
    held: dict[str, Raw] = field(default_factory=lambda: defaultdict(list))
    used: Raw = field(default_factory=list)
    walk_in: Raw = field(default_factory=list)
    overrun: Raw = field(default_factory=list)
    counts: dict[int, dict[str, float]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(float))
    )


def load_machines(chunk: Chunk) -> tuple[dict[int, MachineInputs], dict[int, dict], list[dict]]:
    """Read a chunk's inputs: ``(inputs by machine id, bookings by id, sessions)``.

    Seven queries per chunk, whatever its size: machines, links with their state before the chunk,
    state changes, maintenance windows, bookings, sessions, and the bookings of sessions that began
    under a booking that started before the chunk.
    """
    lab, lo, hi = chunk.lab, chunk.lo, chunk.hi
    end_cap = min(chunk.bounds[-1], chunk.now_ts)
    machines: dict[int, MachineInputs] = {
        pk: MachineInputs(around_the_clock=flag)
        for pk, flag in Machine.objects.filter(lab=lab).values_list("pk", "bookable_around_the_clock")
    }
    # Status history, only for linked machines and only from their first state change on.
    before = StateChange.objects.filter(machine_id=OuterRef("machine_id"), at__lt=lo).order_by("-at", "-pk")
    history: dict[int, list[tuple[float, str]]] = {
        machine_id: [(chunk.bounds[0], state)] if state else []
        for machine_id, state in MachineLink.objects.filter(machine__lab=lab)
        .annotate(state=Subquery(before.values("state")[:1]))
        .values_list("machine_id", "state")
    }
    for machine_id, at, state in (
        StateChange.objects.filter(machine_id__in=list(history), at__gte=lo, at__lt=hi)
        .order_by("machine_id", "at", "pk")
        .values_list("machine_id", "at", "state")
    ):
        history[machine_id].append((_ts(at), state))
    for machine_id, events in history.items():
        m = machines.get(machine_id)
        if m is None:
            continue
        for (at, state), (until, _next) in zip(events, [*events[1:], (end_cap, "")], strict=True):
            if state in DOWN_STATES:
                m.unplanned.append((at, until))
            elif state == protocol.RUNNING:
                m.running.append((at, until))
    for machine_id, start, end, kind in MaintenanceWindow.objects.filter(
        machine__lab=lab, start__lt=hi, end__gt=lo
    ).values_list("machine_id", "start", "end", "kind"):
        m = machines[machine_id]
        (m.planned if kind == MaintenanceWindow.Kind.PLANNED else m.unplanned).append((_ts(start), _ts(end)))
    bookings = {
        b["id"]: b
        for b in Booking.objects.filter(machine__lab=lab, start__lt=hi, end__gt=lo).values(*BOOKING_FIELDS)
    }
    for b in bookings.values():
        _add_booking(chunk, machines[b["machine_id"]], b)
    sessions = list(
        UsageSession.objects.filter(machine__lab=lab, started_at__lt=hi)
        .filter(Q(ended_at__isnull=True) | Q(ended_at__gte=lo))
        .values("id", "machine_id", "started_at", "ended_at", "outcome", "energy_wh", "booking_id", "walk_in")
    )
    missing = {s["booking_id"] for s in sessions if s["booking_id"] and s["booking_id"] not in bookings}
    if missing:
        bookings.update({b["id"]: b for b in Booking.objects.filter(pk__in=missing).values(*BOOKING_FIELDS)})
    for s in sessions:
        _add_session(chunk, machines[s["machine_id"]], s, bookings.get(s["booking_id"]))
    return machines, bookings, sessions


BOOKING_FIELDS = (
    "id",
    "machine_id",
    "kind",
    "status",
    "start",
    "end",
    "released_at",
    "cancelled_at",
    "cancel_reason",
    "member_id",
    "subject_id",
    "checked_in_at",
    "series_id",
    "series__initiative_id",
)


def _add_booking(chunk: Chunk, m: MachineInputs, b: dict) -> None:
    start, end = _ts(b["start"]), _ts(b["end"])
    if b["kind"] != Booking.Kind.MEMBER:
        if b["status"] != Booking.Status.CANCELLED:
            m.held[b["kind"]].append((start, end))
            if b["kind"] == Booking.Kind.MAINTENANCE:
                m.planned.append((start, end))
        return
    kept = _kept(b)
    if kept:
        m.kept.append((start, end))
        if b["released_at"] is not None:
            m.released.append((max(_ts(b["released_at"]), start), end))
    i = chunk.day_index(start)
    if i is None or _requested_only(b):
        return
    counts = m.counts[i]
    counts["bookings_made"] += 1
    counts["bookings_kept"] += kept
    counts["no_shows"] += b["status"] == Booking.Status.NO_SHOW
    late = dt.timedelta(hours=chunk.lab.late_cancel_hours or DEFAULT_LATE_CANCEL_HOURS)
    counts["late_cancels"] += (
        b["status"] == Booking.Status.CANCELLED
        and b["cancel_reason"] == Booking.CancelReason.MEMBER
        and b["cancelled_at"] is not None
        and b["start"] - late <= b["cancelled_at"] < b["start"]
    )


def session_span(chunk: Chunk, s: dict) -> iv.Interval:
    """A session's ``[started, ended)``; a session still open runs until now."""
    end = s["ended_at"] or chunk.now
    return _ts(s["started_at"]), min(_ts(end), chunk.now_ts)


def _add_session(chunk: Chunk, m: MachineInputs, s: dict, booking: dict | None) -> None:
    start, end = session_span(chunk, s)
    if end > start:
        m.used.append((start, end))
        if s["walk_in"]:
            m.walk_in.append((start, end))
        if booking is not None:
            m.overrun.append((max(start, _ts(booking["end"])), end))
    if s["ended_at"] is None:
        return
    i = chunk.day_index(_ts(s["ended_at"]))
    if i is None:
        return
    counts = m.counts[i]
    if s["outcome"] in JOB_OUTCOMES:
        counts["jobs_with_outcome"] += 1
        counts["jobs_finished"] += s["outcome"] == UsageSession.Outcome.FINISHED
    if s["energy_wh"] is not None:
        counts["energy_kwh"] += s["energy_wh"] / 1000.0
        counts["energy_used_h"] += max(0.0, end - start) / 3600.0


def _h(value: float) -> float:
    return round(value, 6)


def machine_days(chunk: Chunk, machines: dict[int, MachineInputs]) -> list[dict]:
    """Every machine-day of the chunk, as column values of :class:`MachineDay`; fills ``chunk.net`` (the
    net available hours) for the member days."""
    rows = []
    empty: iv.IntervalSet = []
    for machine_id, m in machines.items():
        planned, unplanned, running = (
            chunk.by_day(m.planned),
            chunk.by_day(m.unplanned),
            chunk.by_day(m.running),
        )
        kept, released = chunk.by_day(m.kept), chunk.by_day(m.released)
        used, walk_in, overrun = chunk.by_day(m.used), chunk.by_day(m.walk_in), chunk.by_day(m.overrun)
        held = {kind: chunk.by_day(m.held.get(kind, ())) for kind in HELD_KINDS}
        net_by_day = chunk.net[machine_id] = {}
        for i, day in enumerate(chunk.days):
            open_ = chunk.open_hours(m.around_the_clock, i)
            plan = open_ if i in chunk.closed else iv.intersect(planned.get(i, empty), open_)
            net = net_by_day[i] = iv.subtract(open_, plan) if plan else open_
            used_i = iv.intersect(used.get(i, empty), net)
            kept_i = kept.get(i, empty)
            counts = m.counts.get(i, {})
            rows.append(
                {
                    "machine_id": machine_id,
                    "day": day,
                    "around_the_clock": m.around_the_clock,
                    "open_h": _h(iv.hours(open_)),
                    "plan_down_h": _h(iv.hours(plan)),
                    "unpl_down_h": _h(iv.hours(iv.intersect(unplanned.get(i, empty), net))),
                    "booked_h": _h(iv.hours(iv.intersect(kept_i, net))),
                    "released_h": _h(iv.hours(iv.intersect(released.get(i, empty), net))),
                    "used_h": _h(iv.hours(used_i)),
                    "busy_h": _h(iv.hours(iv.intersect(used_i, running.get(i, empty)))),
                    "realised_h": _h(iv.hours(iv.intersect(used_i, kept_i))),
                    "walk_in_h": _h(iv.hours(iv.intersect(walk_in.get(i, empty), net))),
                    "overrun_h": _h(iv.hours(overrun.get(i, empty))),
                    **{f"{kind}_h": _h(iv.hours(held[kind].get(i, empty))) for kind in HELD_KINDS},
                    "energy_kwh": _h(counts.get("energy_kwh", 0.0)),
                    "energy_used_h": _h(counts.get("energy_used_h", 0.0)),
                    **{name: int(counts.get(name, 0)) for name in COUNTS},
                    "used_by_hour": by_hour(used_i, chunk.hour_bounds[i]),
                }
            )
    return rows


#: Non-member bookings whose hours a machine-day reports apart (``training_h``, ...), not clipped.
HELD_KINDS = (Booking.Kind.TRAINING, Booking.Kind.WORKSHOP, Booking.Kind.MAINTENANCE)
COUNTS = ("bookings_made", "bookings_kept", "no_shows", "late_cancels", "jobs_with_outcome", "jobs_finished")
_NO_HOURS = [0.0] * 24


def by_hour(used: iv.IntervalSet, bounds: list[float]) -> list[float]:
    """Hours of ``used`` per local wall-clock hour 0..23 (``bounds``: the day's 25 hour starts in time;
    the hour a clock goes back repeats inside hour 2's span, so it adds up there)."""
    if not used:
        return list(_NO_HOURS)
    result = [0.0] * 24
    for start, end in used:
        h = max(0, bisect.bisect_right(bounds, start) - 1)
        while h < 24 and bounds[h] < end:
            lo, hi = max(start, bounds[h]), min(end, bounds[h + 1])
            if lo < hi:
                result[h] += (hi - lo) / 3600.0
            h += 1
    return [round(x, 6) if x else 0.0 for x in result]


def insert_rows(model, rows: list[dict], batch: int = 500) -> int:
    """Insert column values in batches with ``executemany``: a year of a large network is a hundred
    thousand rows, which the ORM's ``bulk_create`` spends most of a rebuild preparing one field at a time.
    Only the fields that need it (dates, JSON, the timestamp) go through the field's own preparation."""
    if not rows:
        return 0
    meta = model._meta
    names = list(rows[0])
    fields = [meta.get_field(name) for name in names]
    computed = meta.get_field("computed_at") if any(f.name == "computed_at" for f in meta.fields) else None
    qn = connection.ops.quote_name
    columns = [qn(f.column) for f in fields] + ([qn(computed.column)] if computed else [])
    extra = (computed.get_db_prep_save(timezone.now(), connection),) if computed else ()
    prepared = [
        i
        for i, f in enumerate(fields)
        if f.get_internal_type() in {"DateField", "DateTimeField", "JSONField"}
    ]
    # Only quoted identifiers of our own model go into the text; every value is a parameter.
    placeholders = ", ".join(["%s"] * len(columns))
    sql = f"INSERT INTO {qn(meta.db_table)} ({', '.join(columns)}) VALUES ({placeholders})"  # noqa: S608
    cache: dict[tuple, object] = {}  # the same day or the same empty list, prepared once

    def prep(i: int, value):
        key = (i, tuple(value) if isinstance(value, list) else value)
        if key not in cache:
            cache[key] = fields[i].get_db_prep_save(value, connection)
        return cache[key]

    with connection.cursor() as cursor:
        for at in range(0, len(rows), batch):
            params = []
            for row in rows[at : at + batch]:
                values = list(row.values())
                for i in prepared:
                    values[i] = prep(i, values[i])
                params.append((*values, *extra))
            cursor.executemany(sql, params)
    return len(rows)


def replace_rows(model, current, rows: list[dict], key: tuple[str, ...], batch: int = 500) -> int:
    """Make the rows of the queryset ``current`` (a chunk's days) the column values ``rows``, writing only
    the difference; ``key`` names the columns that identify a row. Returns the rows written.

    A row whose figures did not change is left alone, its id and ``computed_at`` too: the snapshots'
    stamp (:func:`fablab.reports.snapshots.rollup_stamp`) reads those, and the scheduler rebuilds today
    and yesterday every few minutes, mostly from unchanged inputs; rewriting them all would make every
    scope's protected year be computed again each time. A changed row is deleted and inserted again,
    which gives it the new id and ``computed_at`` the stamp sees."""
    wanted = {tuple(row[name] for name in key): row for row in rows}
    names = list(rows[0]) if rows else list(key)
    stale = []
    for pk, *values in current.values_list("pk", *names):
        old = dict(zip(names, values, strict=True))
        row_key = tuple(old[name] for name in key)
        if wanted.get(row_key) == old:
            del wanted[row_key]
        else:
            stale.append(pk)
    for at in range(0, len(stale), batch):
        model.objects.filter(pk__in=stale[at : at + batch]).delete()
    return insert_rows(model, list(wanted.values()))


# ------------------------------------------------------------------------------------------ rebuild


#: The columns that identify a rollup row (the models' unique constraints).
MACHINE_DAY_KEY = ("machine_id", "day")
MEMBER_DAY_KEY = ("subject_id", "lab_id", "machine_id", "day", "kind", "initiative_id", "training_id")


def _rebuild_chunk(lab: Lab, first: dt.date, last: dt.date, now: dt.datetime) -> tuple[int, int]:
    from .rollup_people import member_days

    with transaction.atomic():
        # Lock, then read and write: two rebuilds of this lab take turns (see the module's contract).
        list(Lab.objects.select_for_update().filter(pk=lab.pk).values_list("pk"))
        chunk = Chunk(lab, first, last, now)
        machines, bookings, sessions = load_machines(chunk)
        machine_rows = machine_days(chunk, machines)
        member_rows = member_days(chunk, bookings, sessions)
        machines_written = replace_rows(
            MachineDay,
            MachineDay.objects.filter(machine_id__in=machines.keys(), day__gte=first, day__lte=last),
            machine_rows,
            MACHINE_DAY_KEY,
        )
        members_written = replace_rows(
            MemberDay,
            MemberDay.objects.filter(lab=lab, day__gte=first, day__lte=last),
            member_rows,
            MEMBER_DAY_KEY,
        )
    return machines_written, members_written


def rebuild(
    first_day: dt.date,
    last_day: dt.date,
    *,
    labs: Iterable[Lab] | None = None,
    now: dt.datetime | None = None,
) -> dict:
    """Recompute the machine-days and member-days of ``labs`` (default: all) for the local days
    ``[first_day, last_day]`` and replace those days' rows that changed. Returns what was written:
    ``{"machine_days", "member_days", "chunks", "seconds"}`` (rows left as they were are not counted)."""
    now = now or timezone.now()
    began = time.monotonic()
    result = {"machine_days": 0, "member_days": 0, "chunks": 0}
    for lab in Lab.objects.all() if labs is None else labs:
        for first, last in month_chunks(first_day, last_day):
            machine_rows, member_rows = _rebuild_chunk(lab, first, last, now)
            result["machine_days"] += machine_rows
            result["member_days"] += member_rows
            result["chunks"] += 1
    result["seconds"] = time.monotonic() - began
    return result


#: The ``now`` of the last successful scheduled pass in this process.
_last_pass: dt.datetime | None = None


def scheduled_pass(now: dt.datetime) -> int:
    """The scheduler's step: yesterday and today (each lab's local days) rebuilt, at most every
    ``settings.REPORTS_ROLLUP_INTERVAL_S`` seconds (default 300). Returns the rows written."""
    global _last_pass
    interval = getattr(settings, "REPORTS_ROLLUP_INTERVAL_S", 300)
    # Measured on the pass's own clock: a clock that went back (tests travelling in time) runs the pass.
    if _last_pass is not None and 0 <= (now - _last_pass).total_seconds() < interval:
        return 0
    written = 0
    for lab in Lab.objects.all():
        today = timezone.localtime(now, lab.tz).date()
        done = rebuild(today - dt.timedelta(days=1), today, labs=[lab], now=now)
        written += done["machine_days"] + done["member_days"]
    _last_pass = now
    return written
