"""The waitlist: members waiting for time on a machine (or any machine of a type in a lab) get freed time.

Flow. A member *joins* (:func:`join`) with a window. When time on a machine frees
(:func:`fablab.booking.freed.release` records a :class:`~fablab.booking.models.FreedTime` inside the
transaction that freed it), :func:`offer_freed` — on that commit, and again from every scheduler pass
(:func:`scheduled_pass`) for whatever is still open — offers it to the first waiting entry, oldest
first, whose member may book it now: an *offer* of one slot (:func:`offered_slot`), held for
``lab.waitlist_hold_minutes``. The member accepts (:func:`accept`, which books through
:func:`~fablab.booking.services.booking_create` with ``from_waitlist=True``) or declines
(:func:`decline`); a declined, expired (:func:`expire_holds`) or void offer passes the freed time on to
the next entry; what is left after an accepted slot is offered on too. Freed time nobody waiting can
take, or whose time has passed, is closed.

Races. Every offer decision for one freed time runs in one transaction that first locks its
``FreedTime`` row (``SELECT … FOR UPDATE``; on SQLite every transaction is a write-locked ``BEGIN
IMMEDIATE``), so two schedulers, or a scheduler and a commit hook, decide one after the other and the
second sees the first's offer. The unique constraints of :class:`~fablab.booking.models.WaitlistOffer`
are the last line: the offer is inserted in a savepoint, and an ``IntegrityError`` means another
process has offered this freed time (stop) or this entry another freed time (try the next entry).
:func:`accept`, :func:`decline` and :func:`leave` lock the entry and then the offer, always in that
order, so they never deadlock one another; a hold is claimed by a conditional ``UPDATE … WHERE
status = 'open'``, so it expires, is accepted or declined once.

An open offer does not hold the machine: the booking rules (:mod:`fablab.booking.services`) know
nothing of offers, so anyone may book the offered time directly meanwhile. The offer then is void:
accepting answers the booking rule's code (``slot_taken``) and passes the freed time on.

This module knows bookings only (never ``devices``); the scheduler calls :func:`scheduled_pass`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Callable

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, Prefetch, Q
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from fablab.labs.models import Lab, Machine, MachineType

from . import free_time, services
from .errors import BookingError
from .freed import next_boundary
from .models import Booking, FreedTime, WaitlistEntry, WaitlistOffer

log = logging.getLogger(__name__)

#: At most this many rows per kind and scheduler pass: a backlog drains over passes.
BATCH = 200

# Test hooks for the concurrency proofs (tests/booking/test_waitlist.py), as in ``services``:
# ``race_point`` runs between the checks and the offer's insert; ``lock_freed`` switches the lock on
# the freed time off to show that the unique constraints alone still make one offer.
race_point: Callable[[], None] | None = None
lock_freed: bool = True

#: Refusals at accept that the member may cure within the hold (cancel another booking): the offer
#: stays open. Any other refusal (the time was taken, the machine went out of service, the member
#: lost their certification or was blocked) voids the offer and passes the time to the next member.
CURABLE = frozenset({"quota_exceeded", "too_many_bookings"})


# ------------------------------------------------------------------------------------------ join, leave


def join(
    *,
    member,
    lab: Lab,
    machine: Machine | None = None,
    machine_type: MachineType | None = None,
    start: dt.datetime,
    end: dt.datetime,
    now: dt.datetime | None = None,
) -> WaitlistEntry:
    """Put ``member`` on the waitlist for ``machine``, or any machine of ``machine_type`` in ``lab``,
    for time within ``[start, end)`` (aware datetimes; the window need not lie on slot boundaries).

    Raises :class:`BookingError`: ``invalid_range``, ``in_past`` (the window has ended),
    ``too_far_ahead``, ``not_bookable`` (no bookable machine), ``not_certified`` /
    ``certification_expired`` (for the machine, or for every machine of the type), ``already_waiting``
    (the member already waits for that machine or type in an overlapping window). Eligibility beyond
    the certification (quota, strikes) is judged when time is offered, since it changes meanwhile.
    The member's row is locked so that two requests cannot both pass the duplicate check.
    """
    now = now or timezone.now()
    if (machine is None) == (machine_type is None):
        raise ValueError("join one machine or one machine type")
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("waitlist times must be timezone-aware")
    if end <= start:
        raise BookingError("invalid_range")
    if end <= now or start < now - services.REACH:
        raise BookingError("in_past")
    if end > now + services.REACH:
        raise BookingError("too_far_ahead")
    start, end = start.astimezone(dt.UTC), end.astimezone(dt.UTC)
    if machine is not None:
        if machine.lab_id != lab.pk:
            raise ValueError("the machine is not in this lab")
        machines = [machine] if machine.bookable else []
    else:
        machines = list(
            Machine.objects.select_related("lab", "machine_type").filter(
                lab=lab, machine_type=machine_type, bookable=True
            )
        )
    if not machines:
        raise BookingError("not_bookable", _("There is no bookable machine of this kind in this lab."))
    _check_certified_for_one(machines, member, max(start, now))
    with transaction.atomic():
        get_user_model().objects.select_for_update().filter(pk=member.pk).first()
        same = WaitlistEntry.objects.filter(
            member=member, status=WaitlistEntry.Status.WAITING, start__lt=end, end__gt=start
        )
        same = (
            same.filter(machine=machine) if machine else same.filter(machine=None, machine_type=machine_type)
        )
        if same.exists():
            raise BookingError("already_waiting")
        return WaitlistEntry.objects.create(
            member=member,
            lab=lab,
            machine=machine,
            machine_type=None if machine else machine_type,
            start=start,
            end=end,
            created_at=now,
        )


def _check_certified_for_one(machines: list[Machine], member, at: dt.datetime) -> None:
    """The member may use at least one of ``machines`` at ``at``; else the first machine's refusal."""
    first: BookingError | None = None
    for machine in machines:
        try:
            services.check_certification(machine, member, at)
        except BookingError as exc:
            first = first or exc
        else:
            return
    assert first is not None
    raise first


def leave(entry: WaitlistEntry, *, by, now: dt.datetime | None = None) -> WaitlistEntry:
    """``by`` (the entry's member) leaves the waitlist; an open offer of the entry is declined with it
    and its time goes to the next member. Leaving an entry that no longer waits changes nothing."""
    now = now or timezone.now()
    with transaction.atomic():
        entry = WaitlistEntry.objects.select_for_update().get(pk=entry.pk)
        if entry.member_id != by.pk:
            raise BookingError("forbidden")
        if entry.status != WaitlistEntry.Status.WAITING:
            return entry
        entry.status = WaitlistEntry.Status.LEFT
        entry.save(update_fields=["status"])
        offers = WaitlistOffer.objects.select_for_update().filter(
            entry=entry, status=WaitlistOffer.Status.OPEN
        )
        for offer in offers:
            _close_offer(offer, WaitlistOffer.Status.DECLINED, now)
    return entry


# ------------------------------------------------------------------------------------------- offering


def offered_slot(
    freed: FreedTime, entry: WaitlistEntry, now: dt.datetime
) -> tuple[dt.datetime, dt.datetime] | None:
    """The slot ``entry`` would be offered of ``freed`` at ``now``, or None.

    The intersection of the freed time and the entry's window, from the next slot boundary on,
    within opening hours and outside other bookings (with the machine's buffer) and maintenance:
    its first free stretch on slot boundaries, cut to the machine's maximum duration, at least its
    minimum. The member's own eligibility is not judged here.
    """
    machine = freed.machine
    if not machine.bookable:
        return None
    lo = max(freed.start, entry.start, next_boundary(machine, now))
    hi = min(freed.end, entry.end)
    if hi <= lo:
        return None
    minimum = dt.timedelta(minutes=max(1, machine.min_duration_minutes))
    for a, b in free_time.for_machine(machine, lo, hi):
        end = free_time.align(
            min(b, a + dt.timedelta(minutes=machine.max_duration_minutes)), machine, up=False
        )
        if end - a >= minimum:
            return a, end
    return None


def offer_freed(freed_id: int, *, now: dt.datetime) -> WaitlistOffer | None:
    """Offer the freed time ``freed_id`` to the first waiting entry whose member may book it; the offer.

    Nothing (None) when the freed time is closed or already has an open offer. Entries are taken
    oldest first; an entry is skipped when nothing of its window is free in the freed time, when it
    was offered this freed time before (declined, expired or void), when it holds an open offer of
    other freed time, or when its member may not book the slot now (``check_booking_rules`` with
    ``from_waitlist=True``: certification, strikes, quota, integrity). When no entry gets an offer
    and none was skipped only for holding another open offer, or when too little of the time is
    left, the freed time is closed. Called on the commit that freed the time, after a decline or an
    expired hold, and by every scheduler pass; any number of callers at once make one offer.
    """
    with transaction.atomic():
        rows = FreedTime.objects.select_related("machine__lab", "machine__machine_type")
        if lock_freed:
            rows = rows.select_for_update(of=("self",))
        freed = rows.filter(pk=freed_id, closed_at=None).first()
        if freed is None or _has_open_offer(freed):
            return None
        machine = Machine.objects.select_related("lab", "machine_type", "required_training").get(
            pk=freed.machine_id
        )
        freed.machine = machine
        minimum = dt.timedelta(minutes=max(1, machine.min_duration_minutes))
        if next_boundary(machine, now) + minimum > freed.end:
            _close_freed(freed, now)
            return None
        waiting_elsewhere = False
        for entry in _candidates(freed, now):
            if entry.has_open_offer:
                waiting_elsewhere = True
                continue
            slot = offered_slot(freed, entry, now)
            if slot is None:
                continue
            try:
                services.check_booking_rules(
                    machine=machine,
                    member=entry.member,
                    start=slot[0],
                    end=slot[1],
                    now=now,
                    from_waitlist=True,
                )
            except BookingError:
                continue
            if race_point is not None:
                race_point()
            hold = dt.timedelta(minutes=machine.lab.waitlist_hold_minutes)
            try:
                with transaction.atomic():
                    offer = WaitlistOffer.objects.create(
                        entry=entry,
                        freed=freed,
                        machine=machine,
                        start=slot[0],
                        end=slot[1],
                        offered_at=now,
                        expires_at=min(now + hold, slot[1]),
                    )
            except IntegrityError:
                if _has_open_offer(freed):
                    return None  # another process offered this freed time first
                waiting_elsewhere = True  # this entry was just offered other time
                continue
            offer.entry = entry
            _email_on_commit(offer)
            return offer
        if not waiting_elsewhere:
            _close_freed(freed, now)
    return None


def _has_open_offer(freed: FreedTime) -> bool:
    return WaitlistOffer.objects.filter(freed=freed, status=WaitlistOffer.Status.OPEN).exists()


def _candidates(freed: FreedTime, now: dt.datetime) -> list[WaitlistEntry]:
    machine = freed.machine
    return list(
        WaitlistEntry.objects.filter(
            status=WaitlistEntry.Status.WAITING,
            lab_id=machine.lab_id,
            start__lt=freed.end,
            end__gt=max(freed.start, now),
        )
        .filter(Q(machine=machine) | Q(machine__isnull=True, machine_type_id=machine.machine_type_id))
        .exclude(offers__freed=freed)
        .annotate(
            has_open_offer=Exists(
                WaitlistOffer.objects.filter(entry=OuterRef("pk"), status=WaitlistOffer.Status.OPEN)
            )
        )
        .select_related("member")
        .order_by("created_at", "pk")[:BATCH]
    )


def _close_freed(freed: FreedTime, now: dt.datetime) -> None:
    FreedTime.objects.filter(pk=freed.pk, closed_at=None).update(closed_at=now)


def _offer_on_commit(freed_id: int, now: dt.datetime) -> None:
    """After the commit, offer ``freed_id`` to the next member (the scheduler's pass does if this fails)."""

    def offer() -> None:
        try:
            offer_freed(freed_id, now=now)
        except Exception:
            log.exception("could not offer freed time %s now; the scheduler will", freed_id)

    transaction.on_commit(offer)


def _close_offer(offer: WaitlistOffer, status: str, now: dt.datetime) -> bool:
    """Claim an open offer's end (declined, expired, void) and pass its time on after the commit."""
    changed = WaitlistOffer.objects.filter(pk=offer.pk, status=WaitlistOffer.Status.OPEN).update(
        status=status, decided_at=now
    )
    if changed:
        offer.status, offer.decided_at = status, now
        _offer_on_commit(offer.freed_id, now)
    return bool(changed)


def _email_on_commit(offer: WaitlistOffer) -> None:
    offer_id = offer.pk

    def send() -> None:
        from .emails import send_member_email

        row = WaitlistOffer.objects.select_related("entry__member", "machine__lab").get(pk=offer_id)
        send_member_email(
            row.entry.member,
            lab=row.machine.lab,
            template="booking/email/waitlist_offer.txt",
            subject=lambda: _("Time freed up for you: %(machine)s") % {"machine": row.machine.name},
            context={"offer": row, "machine": row.machine, "bookings_path": reverse("booking:mine")},
            what=f"the waitlist offer {offer_id}",
        )

    transaction.on_commit(send)


# ---------------------------------------------------------------------------------- accept, decline


def _offer_of(entry_or_offer: WaitlistEntry | WaitlistOffer) -> WaitlistOffer:
    if isinstance(entry_or_offer, WaitlistOffer):
        return entry_or_offer
    offer = WaitlistOffer.objects.filter(entry=entry_or_offer, status=WaitlistOffer.Status.OPEN).first()
    if offer is None:
        raise BookingError("offer_not_open")
    return offer


def _lock(offer: WaitlistOffer, by) -> tuple[WaitlistEntry, WaitlistOffer]:
    """Lock the entry, then the offer (always in this order); ``forbidden`` for anyone but its member."""
    entry = WaitlistEntry.objects.select_for_update().get(pk=offer.entry_id)
    if entry.member_id != by.pk:
        raise BookingError("forbidden")
    offer = WaitlistOffer.objects.select_for_update().get(pk=offer.pk)
    return entry, offer


def accept(entry_or_offer: WaitlistEntry | WaitlistOffer, *, by, now: dt.datetime | None = None) -> Booking:
    """``by`` takes the open offer (of an entry, or the offer itself): returns the new booking.

    Books through :func:`~fablab.booking.services.booking_create` with ``from_waitlist=True``: no
    notice, horizon or approval, but certification, strikes, quota and integrity as for any booking.
    Raises :class:`BookingError`: ``offer_not_open`` (decided, expired, or none), ``forbidden``, or the
    booking rule that refused. A refusal other than the quota's (:data:`CURABLE`) voids the offer —
    the time was taken by someone who booked directly, or the member can no longer book it — and the
    freed time goes to the next member; that change is committed before the error is raised. After
    an acceptance, whatever is left of the freed time is offered on.
    """
    now = now or timezone.now()
    offer = _offer_of(entry_or_offer)
    error: BookingError | None = None
    booking = None
    with transaction.atomic():
        entry, offer = _lock(offer, by)
        if offer.status != WaitlistOffer.Status.OPEN:
            raise BookingError("offer_not_open")
        if offer.expires_at <= now:
            _close_offer(offer, WaitlistOffer.Status.EXPIRED, now)
            error = BookingError("offer_not_open")
        else:
            machine = Machine.objects.select_related("lab").get(pk=offer.machine_id)
            try:
                booking = services.booking_create(
                    machine=machine, member=by, start=offer.start, end=offer.end, now=now, from_waitlist=True
                )
            except BookingError as exc:
                error = exc
                if exc.code not in CURABLE:
                    _close_offer(offer, WaitlistOffer.Status.VOID, now)
            else:
                WaitlistOffer.objects.filter(pk=offer.pk).update(
                    status=WaitlistOffer.Status.ACCEPTED, decided_at=now, booking=booking
                )
                entry.status = WaitlistEntry.Status.BOOKED
                entry.save(update_fields=["status"])
                _offer_on_commit(offer.freed_id, now)  # what is left of it
    if error is not None:
        raise error
    assert booking is not None
    return booking


def decline(
    entry_or_offer: WaitlistEntry | WaitlistOffer, *, by, now: dt.datetime | None = None
) -> WaitlistOffer:
    """``by`` turns the open offer down; the time goes to the next member. The entry keeps waiting
    (for other freed time; this freed time is not offered to it again). ``offer_not_open`` if it is
    no longer open."""
    now = now or timezone.now()
    offer = _offer_of(entry_or_offer)
    with transaction.atomic():
        _entry, offer = _lock(offer, by)
        if not _close_offer(offer, WaitlistOffer.Status.DECLINED, now):
            raise BookingError("offer_not_open")
    return offer


# ------------------------------------------------------------------------------------------ scheduler


def expire_holds(now: dt.datetime) -> int:
    """Open offers whose hold has passed expire, each passing its time on; returns how many expired."""
    expired = 0
    due = WaitlistOffer.objects.filter(status=WaitlistOffer.Status.OPEN, expires_at__lte=now)
    for offer in due.only("pk", "freed_id").order_by("expires_at", "pk")[:BATCH]:
        with transaction.atomic():
            if _close_offer(offer, WaitlistOffer.Status.EXPIRED, now):
                expired += 1
    return expired


def scheduled_pass(now: dt.datetime) -> int:
    """The scheduler's waitlist step; returns the number of changes (holds expired, entries whose window
    passed, offers made).

    Holds that passed expire (their time goes on); entries whose window has ended stop waiting; every
    freed time still open without an open offer is offered (what a commit hook missed, what an expired
    or declined hold passed on) or closed when its time has passed or nobody waiting can take it.
    """
    changed = expire_holds(now)
    changed += WaitlistEntry.objects.filter(status=WaitlistEntry.Status.WAITING, end__lte=now).update(
        status=WaitlistEntry.Status.EXPIRED
    )
    open_offer = WaitlistOffer.objects.filter(freed=OuterRef("pk"), status=WaitlistOffer.Status.OPEN)
    pending = (
        FreedTime.objects.filter(closed_at=None)
        .filter(~Exists(open_offer))
        .order_by("created_at", "pk")
        .values_list("pk", flat=True)[:BATCH]
    )
    for freed_id in list(pending):
        try:
            if offer_freed(freed_id, now=now) is not None:
                changed += 1
        except Exception:
            log.exception("could not offer freed time %s; the next pass tries again", freed_id)
    return changed


# ------------------------------------------------------------------------------------------ selectors


@dataclasses.dataclass(frozen=True)
class MyWaitlist:
    """What a member's bookings page shows of the waitlist."""

    offers: list[WaitlistOffer]
    entries: list[WaitlistEntry]


def open_offers(member, now: dt.datetime) -> list[WaitlistOffer]:
    """The member's offers still held for them, soonest expiry first; each with ``minutes_left``."""
    offers = list(
        WaitlistOffer.objects.filter(
            entry__member=member, status=WaitlistOffer.Status.OPEN, expires_at__gt=now
        )
        .select_related("machine__lab", "entry")
        .order_by("expires_at", "pk")
    )
    for offer in offers:
        offer.minutes_left = max(1, -int(-(offer.expires_at - now).total_seconds() // 60))  # rounded up
    return offers


def entries_for(member):
    """The member's entries, with ``open_offers`` (a list of at most one) prefetched."""
    return (
        WaitlistEntry.objects.filter(member=member)
        .select_related("lab", "machine", "machine_type")
        .prefetch_related(
            Prefetch(
                "offers",
                queryset=WaitlistOffer.objects.filter(status=WaitlistOffer.Status.OPEN).select_related(
                    "machine__lab"
                ),
                to_attr="open_offers",
            )
        )
    )


def my_waitlist(member, now: dt.datetime) -> MyWaitlist:
    entries = (
        entries_for(member).filter(status=WaitlistEntry.Status.WAITING, end__gt=now).order_by("start", "pk")
    )
    return MyWaitlist(offers=open_offers(member, now), entries=list(entries))
