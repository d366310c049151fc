"""A member's training sessions as calendar events, for their feed (:func:`fablab.booking.ical.member_feed`).

Registered sessions are ``CONFIRMED``, waitlisted ones ``TENTATIVE``; a cancelled registration or
session stays as ``CANCELLED`` so subscribed calendars drop it. UIDs are ``training-<registration>``.
"""

from __future__ import annotations

import datetime as dt

import icalendar
from django.utils.translation import gettext as _

from .models import Registration


def _location(lab) -> str:
    return ", ".join(part for part in (lab.name, lab.address.replace("\n", ", ")) if part)


def session_events(member, *, since: dt.datetime, host: str) -> list[icalendar.Event]:
    """Events of ``member``'s registrations for sessions ending after ``since``; call inside their language."""
    registrations = (
        Registration.objects.filter(member=member, session__end__gte=since)
        .select_related("session", "session__lab", "session__training")
        .order_by("session__start", "pk")
    )
    events = []
    for registration in registrations:
        session = registration.session
        cancelled = session.cancelled_at is not None or registration.status == Registration.Status.CANCELLED
        waiting = registration.status == Registration.Status.WAITLISTED
        event = icalendar.Event()
        event.add("uid", f"training-{registration.pk}@{host}")
        stamp = max(filter(None, (registration.created_at, registration.cancelled_at, session.cancelled_at)))
        event.add("dtstamp", stamp.astimezone(dt.UTC))
        event.add("sequence", int(registration.cancelled_at is not None or session.cancelled_at is not None))
        event.add("dtstart", session.start.astimezone(dt.UTC))
        event.add("dtend", session.end.astimezone(dt.UTC))
        summary = _("Training: %(training)s") % {"training": session.training.name}
        if waiting:
            summary = _("%(summary)s (waitlist)") % {"summary": summary}
        event.add("summary", summary)
        event.add("location", _location(session.lab))
        event.add("status", "CANCELLED" if cancelled else "TENTATIVE" if waiting else "CONFIRMED")
        event.add("transp", "TRANSPARENT" if cancelled else "OPAQUE")
        events.append(event)
    return events
