"""Alerts about how machines are used: running without a booking, running into the next booking.

Contract: :func:`check` takes the open sessions (:func:`open_sessions`) and brings two kinds of alert
to what they show, per machine:

* ``unbooked`` — an open session attributed to no booking on a machine whose ``walk_ins_allowed`` is
  false; cleared once no such session is open (attributed to a booking after a check-in, or ended);
* ``overrun`` — an open session attributed to a booking whose end has passed while the machine's next
  booking (another member's, or a training, workshop or maintenance) has started; the alert names that
  next booking, and both members and the lab's managers are emailed, each in their own language.
  Cleared when the session ends (or nothing runs into a booking any more).

:func:`devices.alerts.raise_alert` is a claim, so of several schedulers exactly one raises an alert
and sends its emails. A few queries per pass whatever the number of machines. Imports the models,
:mod:`devices.alerts` and the booking models only.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from devices.alerts import clear_alert, raise_alert
from devices.models import Alert, UsageSession
from fablab.booking.models import Booking
from fablab.members.models import profile_for

log = logging.getLogger(__name__)

KINDS = (Alert.Kind.UNBOOKED_USE, Alert.Kind.OVERRUN)
#: The next booking a job may run into: one that holds the machine now.
_NEXT_STATUSES = (Booking.Status.CONFIRMED, Booking.Status.CHECKED_IN)


@dataclasses.dataclass(frozen=True)
class Running:
    """An open usage session, with what the alerts need of its machine and booking."""

    machine_id: int
    booking_id: int | None
    walk_ins_allowed: bool
    booking_end: dt.datetime | None
    booking_member_id: int | None


def open_sessions() -> list[Running]:
    """Every open session (one query)."""
    rows = UsageSession.objects.filter(ended_at__isnull=True).values_list(
        "machine_id", "booking_id", "machine__walk_ins_allowed", "booking__end", "booking__member_id"
    )
    return [Running(*row) for row in rows]


def check(running: list[Running], now: dt.datetime) -> set[int]:
    """Raise and clear the unbooked-use and overrun alerts; return the machines whose alerts changed."""
    unbooked = {r.machine_id for r in running if r.booking_id is None and not r.walk_ins_allowed}
    overruns = _overruns(running, now)
    opened = set(
        Alert.objects.filter(kind__in=KINDS, cleared_at__isnull=True).values_list("machine_id", "kind")
    )
    changed: set[int] = set()
    for machine_id, kind in sorted(opened):
        wanted = unbooked if kind == Alert.Kind.UNBOOKED_USE else overruns
        if machine_id not in wanted and clear_alert(machine_id, kind, now):
            changed.add(machine_id)
    for machine_id in sorted(unbooked):
        if (machine_id, Alert.Kind.UNBOOKED_USE) not in opened and raise_alert(
            machine_id, Alert.Kind.UNBOOKED_USE, _("The machine runs without a checked-in booking."), now
        ):
            changed.add(machine_id)
    for machine_id, (booking_id, next_id) in sorted(overruns.items()):
        if (machine_id, Alert.Kind.OVERRUN) in opened:
            continue
        message = _("Still running after booking %(booking)s ended; booking %(next)s has started.") % {
            "booking": booking_id,
            "next": next_id,
        }
        if raise_alert(machine_id, Alert.Kind.OVERRUN, message, now, booking_id=next_id):
            transaction.on_commit(lambda b=booking_id, n=next_id: send_overrun_emails(b, n))
            changed.add(machine_id)
    return changed


def _overruns(running: list[Running], now: dt.datetime) -> dict[int, tuple[int, int]]:
    """``{machine id: (overrunning booking, next booking)}`` for the jobs running into another's booking."""
    late = {
        r.machine_id: r
        for r in running
        if r.booking_id is not None and r.booking_end is not None and r.booking_end <= now
    }
    if not late:
        return {}
    following = (
        Booking.objects.filter(
            machine_id__in=list(late), status__in=_NEXT_STATUSES, start__lte=now, end__gt=now
        )
        .exclude(pk__in=[r.booking_id for r in late.values()])
        .order_by("start", "pk")
        .values_list("machine_id", "pk", "member_id", "start")
    )
    out: dict[int, tuple[int, int]] = {}
    for machine_id, pk, member_id, start in following:
        row = late[machine_id]
        if machine_id in out or start < row.booking_end:
            continue
        if member_id is not None and member_id == row.booking_member_id:
            continue  # the same member's next booking: their own time
        out[machine_id] = (row.booking_id, pk)
    return out


def send_overrun_emails(booking_id: int, next_id: int) -> int:
    """Tell the overrunning member, the next member and the lab's managers; return how many emails went out.

    Each in the recipient's language, with times in the lab's time zone. Never raises: a mail outage
    must not undo the alert.
    """
    bookings = Booking.objects.select_related("machine__lab", "member").in_bulk([booking_id, next_id])
    overrun, following = bookings.get(booking_id), bookings.get(next_id)
    if overrun is None or following is None:
        return 0
    lab = overrun.machine.lab
    recipients: dict[int, tuple[object, str]] = {}
    for manager in lab.managers.filter(is_active=True).order_by("pk"):
        recipients[manager.pk] = (manager, "manager")
    if following.member is not None:
        recipients[following.member.pk] = (following.member, "next")
    if overrun.member is not None:
        recipients[overrun.member.pk] = (overrun.member, "running")
    sent = 0
    for user, role in recipients.values():
        if user.email and _send(user, role, overrun, following):
            sent += 1
    return sent


def _send(user, role: str, overrun: Booking, following: Booking) -> bool:
    lab = overrun.machine.lab
    try:
        with translation.override(profile_for(user).language), timezone.override(lab.tz):
            context = {
                "role": role,
                "user": user,
                "overrun": overrun,
                "next": following,
                "machine": overrun.machine,
                "lab": lab,
                "site_url": settings.SITE_URL,
            }
            body = render_to_string("devices/email/overrun.txt", context)
            subject = _("Still running into the next booking: %(machine)s") % {
                "machine": overrun.machine.name
            }
            send_mail(subject, body, None, [user.email])
    except Exception:
        log.exception("could not send the overrun email of booking %s to user %s", overrun.pk, user.pk)
        return False
    return True
