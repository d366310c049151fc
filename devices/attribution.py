"""Usage attributed to bookings: every usage session belongs to the booking that held its machine, or is a walk-in.

Contract. A session belongs to the booking of its machine that held the machine when the session
*started* (``started_at``, the bridge's clock, however late the message reached the hub):

1. a booking that holds the machine — a member booking checked in (``checked_in`` or ``completed``
   with ``checked_in_at``), or a training, workshop or maintenance booking (confirmed or completed) —
   whose window ``[min(start, checked_in_at), end)`` contains the start (of two, the one whose booked
   time contains it, then the later one);
2. else, on a machine without interlock, a **confirmed** member booking whose ``[start, end)`` contains
   the start: the job counts as its check-in (:func:`fablab.booking.lifecycle.check_in_by_machine`,
   at the job's start);
3. else a holding booking whose window extended by the machine's ``end_grace_minutes`` contains it;
4. else the holding booking whose extended window overlaps the session most (a job started, then its
   maker checked in: the check-in re-runs attribution through :func:`follow_bookings`; a session still
   running also takes a window that opens just now);
5. else nobody: ``walk_in=True``.

The rule depends on the session and the bookings only, never on the order messages arrived in, so
running it again (a replayed status, a spool replayed after a bridge outage, a booking change:
:func:`follow_bookings`) is harmless. :func:`recompute_booking` derives a booking's usage from *all*
its sessions the same way.

Cost (the hub calls this inside its transactions): a new session costs one query for the machine's
nearby bookings, plus the booking's recomputation (two queries and one write) when it has one; a
closed session the same; energy batches recompute their bookings in two queries and one bulk write.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Sequence

from django.db.models import Q
from django.utils import timezone

from devices.models import UsageSession
from fablab.booking import lifecycle
from fablab.booking.models import Booking

from . import usage_alerts

#: The largest ``end_grace_minutes`` and ``check_in_window_minutes`` a machine may have (their validators):
#: how far around a session its bookings are looked for.
MAX_GRACE = dt.timedelta(minutes=120)
MAX_CHECK_IN_WINDOW = dt.timedelta(minutes=240)
#: Minutes are stored to the hundredth (0.6 s), so recomputing the same sessions writes nothing.
PRECISION = 2

_HOLDING_OTHER_KINDS = [k for k in Booking.Kind.values if k != Booking.Kind.MEMBER]
_CANDIDATE_STATUSES = [Booking.Status.CONFIRMED, Booking.Status.CHECKED_IN, Booking.Status.COMPLETED]
_USAGE_FIELDS = ["used_minutes", "overrun_minutes", "energy_wh", "job_outcome"]


@dataclasses.dataclass
class Candidate:
    """A booking as attribution sees it."""

    id: int
    kind: str
    status: str
    start: dt.datetime
    end: dt.datetime
    checked_in_at: dt.datetime | None
    grace: dt.timedelta
    interlock: bool

    @property
    def holds(self) -> bool:
        """Whether it holds the machine: a checked-in member booking, or a booking of another kind."""
        if self.kind == Booking.Kind.MEMBER:
            return self.checked_in_at is not None and self.status in (
                Booking.Status.CHECKED_IN,
                Booking.Status.COMPLETED,
            )
        return self.status in (Booking.Status.CONFIRMED, Booking.Status.COMPLETED)

    @property
    def opens(self) -> dt.datetime:
        return min(self.start, self.checked_in_at) if self.checked_in_at else self.start

    def overlap(self, start: dt.datetime, end: dt.datetime) -> dt.timedelta:
        return min(end, self.end + self.grace) - max(start, self.opens)


def _candidates(
    machine_ids: Iterable[int], start: dt.datetime, end: dt.datetime
) -> dict[int, list[Candidate]]:
    """The bookings per machine that could own a session running within ``[start, end]`` (one query)."""
    rows = (
        Booking.objects.filter(
            machine_id__in=list(machine_ids),
            status__in=_CANDIDATE_STATUSES,
            end__gt=start - MAX_GRACE,
            start__lt=end + MAX_CHECK_IN_WINDOW,
        )
        .filter(Q(start__lte=end) | Q(checked_in_at__lte=end))
        .order_by("start", "pk")
        .values_list(
            "machine_id", "pk", "kind", "status", "start", "end", "checked_in_at",
            "machine__end_grace_minutes", "machine__link__interlock",
        )
    )  # fmt: skip
    out: dict[int, list[Candidate]] = {}
    for machine_id, pk, kind, status, b_start, b_end, checked_in_at, grace, interlock in rows:
        out.setdefault(machine_id, []).append(
            Candidate(
                pk, kind, status, b_start, b_end, checked_in_at, dt.timedelta(minutes=grace), bool(interlock)
            )
        )
    return out


def choose(
    candidates: Sequence[Candidate], started: dt.datetime, ended: dt.datetime | None, now: dt.datetime
) -> tuple[Candidate | None, bool]:
    """The booking a session running from ``started`` belongs to, and whether the job checks it in.

    Pure: the rule of the module docstring, on bookings already read.
    """
    holding = [c for c in candidates if c.holds]
    within = [c for c in holding if c.opens <= started < c.end]
    if within:
        return max(within, key=lambda c: (c.start <= started, c.start, c.id)), False
    during = [
        c
        for c in candidates
        if c.kind == Booking.Kind.MEMBER
        and c.status == Booking.Status.CONFIRMED
        and not c.interlock
        and c.start <= started < c.end
    ]
    if during:
        return min(during, key=lambda c: (c.start, c.id)), True
    grace = [c for c in holding if c.opens <= started < c.end + c.grace]
    if grace:
        return max(grace, key=lambda c: (c.end, c.id)), False
    until = max(ended or now, started)
    overlapping = [(c.overlap(started, until), c) for c in holding]
    # A session still running when a booking's window opens (its check-in just now) overlaps it from
    # there on, so an open session also takes a window that opens right now; a closed one must overlap.
    least = dt.timedelta(0)
    overlapping = [(o, c) for o, c in overlapping if o > least or (ended is None and o == least)]
    if overlapping:
        return max(overlapping, key=lambda oc: (oc[0], -oc[1].start.timestamp(), -oc[1].id))[1], False
    return None, False


def _attribute(sessions: list[UsageSession], now: dt.datetime, recompute: Iterable[int | None] = ()) -> int:
    """Attribute ``sessions`` (of any machines); write the changed ones and recompute the bookings concerned.

    ``recompute``: bookings to recompute in the same pass even if their sessions did not move.
    """
    if not sessions:
        return 0
    lo = min(s.started_at for s in sessions)
    hi = max(max(s.ended_at or now, s.started_at) for s in sessions)
    candidates = _candidates({s.machine_id for s in sessions}, lo, hi)
    changed: list[UsageSession] = []
    touched: set[int] = {b for b in recompute if b is not None}
    for session in sorted(sessions, key=lambda s: (s.started_at, s.pk)):
        machine_candidates = candidates.get(session.machine_id, [])
        booking, checks_in = choose(machine_candidates, session.started_at, session.ended_at, now)
        if checks_in and booking is not None:
            if lifecycle.check_in_by_machine(booking.id, session.started_at):
                booking.status, booking.checked_in_at = Booking.Status.CHECKED_IN, session.started_at
            else:  # checked in (or released) meanwhile: decide again from the row as it is now
                fresh = _candidates([session.machine_id], session.started_at, session.ended_at or now)
                candidates[session.machine_id] = machine_candidates = fresh.get(session.machine_id, [])
                booking, _checks_in = choose(
                    [
                        c
                        for c in machine_candidates
                        if not (c.kind == Booking.Kind.MEMBER and c.status == "confirmed")
                    ],
                    session.started_at,
                    session.ended_at,
                    now,
                )
        booking_id = booking.id if booking is not None else None
        if session.booking_id != booking_id or session.walk_in != (booking_id is None):
            touched.update(b for b in (session.booking_id, booking_id) if b is not None)
            session.booking_id, session.walk_in = booking_id, booking_id is None
            changed.append(session)
    by_target: dict[int | None, list[int]] = {}
    for session in changed:
        by_target.setdefault(session.booking_id, []).append(session.pk)
    for booking_id, pks in by_target.items():  # one UPDATE per booking gaining sessions (usually one)
        UsageSession.objects.filter(pk__in=pks).update(booking_id=booking_id, walk_in=booking_id is None)
    recompute_booking(touched, now=now)
    return len(changed)


def attribute_sessions(
    machine_id: int, start: dt.datetime, end: dt.datetime, *, now: dt.datetime | None = None
) -> int:
    """Attribute every session of ``machine_id`` running within ``[start, end]``; return how many changed."""
    now = now or timezone.now()
    sessions = list(
        UsageSession.objects.filter(machine_id=machine_id, started_at__lte=end)
        .filter(Q(ended_at__isnull=True) | Q(ended_at__gte=start))
        .only("pk", "machine_id", "started_at", "ended_at", "booking_id", "walk_in")
    )
    return _attribute(sessions, now)


def attribute_session(session: UsageSession, *, now: dt.datetime | None = None) -> bool:
    """Attribute one session (``started_at`` and ``ended_at`` as the caller has them); True when it changed."""
    return bool(_attribute([session], now or timezone.now()))


def session_closed(session: UsageSession) -> None:
    """A session was closed (``ended_at`` set on the object): attribute it again and recompute its booking.

    Its overlap with the bookings is final now; the booking's minutes, energy and outcome too.
    """
    _attribute([session], timezone.now(), recompute=[session.booking_id])


def booking_for_new_session(
    machine_id: int, started: dt.datetime, *, now: dt.datetime | None = None
) -> int | None:
    """The booking a session about to be opened belongs to (checking it in when the job does); None: a walk-in.

    One query, plus the check-in's conditional UPDATE when the job checks the booking in.
    """
    now = now or timezone.now()
    candidates = _candidates([machine_id], started, max(started, now)).get(machine_id, [])
    booking, checks_in = choose(candidates, started, None, now)
    if booking is not None and checks_in and not lifecycle.check_in_by_machine(booking.id, started):
        return None  # checked in meanwhile (its change re-attributes the session) or released
    return booking.id if booking is not None else None


def _minutes(delta: dt.timedelta) -> float:
    return max(delta.total_seconds(), 0.0) / 60


def recompute_booking(
    booking_ids: Iterable[int | None], *, now: dt.datetime | None = None, tolerance_minutes: float = 0.0
) -> int:
    """Store each booking's usage as derived from ALL its sessions; return how many bookings were written.

    ``used_minutes``: the sessions' time (open ones up to ``now``); ``overrun_minutes``: their time after
    the booking's end; ``energy_wh``: the sum of the sessions' energy (None when none is known);
    ``job_outcome``: ``running`` while a session is open, else the outcome of the session that started
    last ('' without sessions). Idempotent and independent of the order sessions were written in. A
    booking is written only when a value differs (minutes: by more than ``tolerance_minutes``).
    One query, plus one write when anything changed, whatever the number of bookings.
    """
    ids = sorted({b for b in booking_ids if b is not None})
    if not ids:
        return 0
    now = now or timezone.now()
    # One query: each booking with its sessions (a LEFT JOIN, so a booking that lost them all is there too).
    rows = (
        Booking.objects.filter(pk__in=ids)
        .order_by("usage_sessions__started_at", "usage_sessions__pk")
        .values_list(
            "pk", "end", *_USAGE_FIELDS, "usage_sessions__pk", "usage_sessions__started_at",
            "usage_sessions__ended_at", "usage_sessions__energy_wh", "usage_sessions__outcome",
        )
    )  # fmt: skip
    bookings: dict[int, Booking] = {}
    usage: dict[int, list] = {}
    open_ones: set[int] = set()
    for pk, end, used, overrun, energy_wh, job_outcome, session, started, ended, energy, outcome in rows:
        if pk not in bookings:
            bookings[pk] = Booking(
                pk=pk,
                end=end,
                used_minutes=used,
                overrun_minutes=overrun,
                energy_wh=energy_wh,
                job_outcome=job_outcome,
            )
            usage[pk] = [0.0, 0.0, None, ""]
        if session is None:
            continue
        values = usage[pk]
        until = max(ended or now, started)
        values[0] += _minutes(until - started)
        values[1] += _minutes(until - max(started, end))
        if energy is not None:
            values[2] = (values[2] or 0.0) + energy
        values[3] = outcome
        if ended is None:
            open_ones.add(pk)
    changed = []
    for pk, booking in bookings.items():
        used, overrun, energy, outcome = usage[pk]
        new = {
            "used_minutes": round(used, PRECISION),
            "overrun_minutes": round(overrun, PRECISION),
            "energy_wh": round(energy, 3) if energy is not None else None,
            "job_outcome": UsageSession.Outcome.RUNNING if pk in open_ones else outcome,
        }
        if _differs(booking, new, tolerance_minutes):
            for name, value in new.items():
                setattr(booking, name, value)
            changed.append(booking)
    if len(changed) == 1:  # the hub's usual case: a plain UPDATE is far cheaper to build than a CASE
        Booking.objects.filter(pk=changed[0].pk).update(**{f: getattr(changed[0], f) for f in _USAGE_FIELDS})
    elif changed:
        Booking.objects.bulk_update(changed, _USAGE_FIELDS)
    return len(changed)


def _differs(booking: Booking, new: dict, tolerance: float) -> bool:
    if booking.energy_wh != new["energy_wh"] or booking.job_outcome != new["job_outcome"]:
        return True
    return any(abs(getattr(booking, f) - new[f]) > tolerance for f in ("used_minutes", "overrun_minutes"))


def follow_bookings(booking_ids: Iterable[int], *, now: dt.datetime | None = None) -> None:
    """Attribute the sessions around changed bookings again, and recompute those bookings.

    A check-in claims a session that started before it; a completed, no-show or cancelled booking
    lets its sessions go to whoever else held the machine (or to nobody). The sessions looked at are
    those running within each booking's window widened by the longest check-in window before and the
    machine's end grace after. Four queries whatever the number of bookings (the scheduler's pass
    follows every booking it changed in one call), plus the writes.
    """
    now = now or timezone.now()
    rows = Booking.objects.filter(pk__in=list(booking_ids)).values_list(
        "pk", "machine_id", "start", "checked_in_at", "end", "machine__end_grace_minutes"
    )
    ids: list[int] = []
    windows: dict[int, list[tuple[dt.datetime, dt.datetime]]] = {}
    for pk, machine_id, start, checked_in_at, end, grace in rows:
        opens = min(start, checked_in_at) if checked_in_at else start
        ids.append(pk)
        windows.setdefault(machine_id, []).append(
            (opens - MAX_CHECK_IN_WINDOW, end + dt.timedelta(minutes=grace))
        )
    if not ids:
        return
    lo = min(w[0] for ws in windows.values() for w in ws)
    hi = max(w[1] for ws in windows.values() for w in ws)
    sessions = [
        s
        for s in UsageSession.objects.filter(machine_id__in=list(windows), started_at__lte=hi)
        .filter(Q(ended_at__isnull=True) | Q(ended_at__gte=lo))
        .only("pk", "machine_id", "started_at", "ended_at", "booking_id", "walk_in")
        if any(
            s.started_at <= w_end and (s.ended_at is None or s.ended_at >= w_start)
            for w_start, w_end in windows[s.machine_id]
        )
    ]
    if sessions:
        _attribute(sessions, now, recompute=ids)
    else:
        recompute_booking(ids, now=now)


def scheduled_pass(now: dt.datetime | None = None) -> set[int]:
    """The scheduler's pass: running bookings' minutes brought up to date, unbooked-use and overrun alerts.

    Returns the ids of the machines whose alerts changed (the caller pushes them to the board). A few
    queries whatever the number of machines; each alert is raised (and its emails sent) exactly once,
    whatever the number of schedulers.
    """
    now = now or timezone.now()
    running = usage_alerts.open_sessions()
    recompute_booking({row.booking_id for row in running}, now=now, tolerance_minutes=1.0)
    return usage_alerts.check(running, now)
