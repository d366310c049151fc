"""The machine side follows the bookings: a changed booking moves its machine's interlock and usage.

:func:`on_booking_changed` receives :data:`fablab.booking.signals.booking_changed` (sent after the
booking's transaction commits) and asks :mod:`devices.interlock` to bring the machine to its wanted
state at once (a check-in unlocks within the hub's wake-up, not at the scheduler's next pass),
:mod:`devices.attribution` to attribute the machine's sessions again (a session that started before
the check-in belongs to the booking), then :mod:`devices.live` to push the machine's card (last, so
it shows what the others moved). None may undo the booking change: failures are logged, and the
scheduler's next pass repairs what was missed.

:func:`on_back_in_service` receives :data:`fablab.booking.signals.machine_back_in_service` (a manager
ended the machine's out-of-service time early, after the commit) and closes the fault members reported
before that moment (:func:`devices.fault_reports.close_reported_before`); a failure is logged, and the
report stays open for a manager to mark resolved.

A caller that changes many bookings in a row (the scheduler's pass at a boundary where every machine
changes hands) wraps them in :func:`batched`: the changes are followed at the end of the block, all
together (one interlock reconcile and one attribution for all of them, not one per booking).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Iterator
from contextvars import ContextVar

log = logging.getLogger(__name__)

#: A booking change as the signal gives it: ``(booking_id, machine_id, change)``.
Change = tuple[int, int, str]

#: The changes collected by the :func:`batched` block in force (None: follow each at once).
_collected: ContextVar[list[Change] | None] = ContextVar("devices_follow_collected", default=None)


def on_booking_changed(sender, *, booking_id: int, machine_id: int, change: str, **kwargs) -> None:
    collected = _collected.get()
    if collected is not None:
        collected.append((booking_id, machine_id, change))
    else:
        follow([(booking_id, machine_id, change)])


def on_back_in_service(sender, *, machine_id: int, at: dt.datetime, by, **kwargs) -> None:
    """The manager who put the machine back in service has seen to it: its fault report is closed."""
    from devices import fault_reports

    try:
        fault_reports.close_reported_before(machine_id, at, by, how=fault_reports.BACK_IN_SERVICE)
    except Exception:
        log.exception("closing the fault report of machine %s back in service failed", machine_id)


@contextlib.contextmanager
def batched() -> Iterator[None]:
    """Collect the booking changes made in the block and follow them all when it ends (even on an error)."""
    collected: list[Change] = []
    token = _collected.set(collected)
    try:
        yield
    finally:
        _collected.reset(token)
        follow(collected)


def follow(changes: list[Change]) -> None:
    """Follow ``changes``: the interlocks of all their machines, their bookings' usage, then each machine's card.

    Two calls whatever the number of changes (:func:`devices.interlock.reconcile`,
    :func:`devices.attribution.follow_bookings`), a third when bookings were completed (their members'
    fault reports: :func:`devices.fault_reports.raise_for_bookings`), then one board push per change.
    """
    from devices import attribution, fault_reports, interlock, live

    if not changes:
        return
    machine_ids = sorted({machine_id for _booking_id, machine_id, _change in changes})
    booking_ids = sorted({booking_id for booking_id, _machine_id, _change in changes})
    completed_ids = sorted(
        {booking_id for booking_id, _machine_id, change in changes if change == "completed"}
    )
    followers = [(interlock.reconcile, machine_ids), (attribution.follow_bookings, booking_ids)]
    if completed_ids:
        followers.append((fault_reports.raise_for_bookings, completed_ids))
    for follower, ids in followers:
        try:
            follower(ids)
        except Exception:
            log.exception("%s after booking changes %s failed", follower.__module__, changes)
    for booking_id, machine_id, change in changes:
        try:
            live.push_booking_change(booking_id=booking_id, machine_id=machine_id, change=change)
        except Exception:
            log.exception("board push after booking %s %s failed", booking_id, change)
