"""The machine side follows the bookings: a changed booking moves its machine's interlock and usage.

:func:`on_booking_changed` receives :data:`fablab.booking.signals.booking_changed` (sent after the
booking's transaction commits) and asks :mod:`devices.interlock` to bring the machine to its wanted
state at once (a check-in unlocks within the hub's wake-up, not at the scheduler's next pass) and
:mod:`devices.attribution` to attribute the machine's sessions again (a session that started before
the check-in belongs to the booking). Neither may undo the booking change: failures are logged, and
the scheduler's next pass repairs what was missed.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def on_booking_changed(sender, *, booking_id: int, machine_id: int, change: str, **kwargs) -> None:
    from devices import attribution, interlock, live

    for follower in (interlock.follow_booking, attribution.follow_booking, live.push_booking_change):
        try:
            follower(booking_id=booking_id, machine_id=machine_id, change=change)
        except Exception:
            log.exception("%s after booking %s %s failed", follower.__module__, booking_id, change)
