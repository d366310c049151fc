"""Calendar feeds (RFC 5545): a member's own bookings, and a machine's bookings.

The member feed lives at a secret URL (``MemberProfile.calendar_token``) that
calendar apps can poll without signing in; resetting the token revokes it.
The machine feed is public: other people's bookings are a bare "Booked",
without name, purpose or email. Cancelled bookings stay in the feeds as
``STATUS:CANCELLED`` so that subscribed calendars drop them; pending ones are
``TENTATIVE``. Times are written in UTC.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from urllib.parse import urlsplit

import icalendar
from django.conf import settings
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET

from fablab.labs.models import Machine
from fablab.members.models import MemberProfile

from .models import Booking

CONTENT_TYPE = "text/calendar; charset=utf-8"
#: How far back the feeds reach; the future is always complete.
MEMBER_HISTORY = dt.timedelta(days=365)
MACHINE_HISTORY = dt.timedelta(days=31)

_STATUS = {
    Booking.Status.PENDING: "TENTATIVE",
    Booking.Status.CANCELLED: "CANCELLED",
}


def event_uid(booking: Booking) -> str:
    """Stable across feeds and requests: the host comes from SITE_URL, not from the request."""
    host = urlsplit(settings.SITE_URL).hostname or "fablab.invalid"
    return f"booking-{booking.pk}@{host}"


def _sequence(booking: Booking) -> int:
    # Each change of state a calendar should notice: approved or declined, then cancelled.
    return int(booking.decided_at is not None) + int(
        booking.cancelled_at is not None and booking.cancel_reason != Booking.CancelReason.DECLINED
    )


def _event(booking: Booking, *, summary: str, description: str = "") -> icalendar.Event:
    lab = booking.machine.lab
    event = icalendar.Event()
    event.add("uid", event_uid(booking))
    event.add("dtstamp", booking.updated_at.astimezone(dt.UTC))
    event.add("last-modified", booking.updated_at.astimezone(dt.UTC))
    event.add("created", booking.created_at.astimezone(dt.UTC))
    event.add("sequence", _sequence(booking))
    event.add("dtstart", booking.start.astimezone(dt.UTC))
    event.add("dtend", booking.end.astimezone(dt.UTC))
    event.add("summary", summary)
    event.add("location", ", ".join(part for part in (lab.name, lab.address.replace("\n", ", ")) if part))
    event.add("status", _STATUS.get(booking.status, "CONFIRMED"))
    event.add("transp", "TRANSPARENT" if booking.status == Booking.Status.CANCELLED else "OPAQUE")
    if description:
        event.add("description", description)
    return event


def _calendar(name: str, events: Iterable[icalendar.Event]) -> bytes:
    cal = icalendar.Calendar()
    cal.add("prodid", "-//FabLab platform//Bookings//EN")
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("x-wr-calname", name)
    # Hints for subscribing apps: poll every quarter of an hour.
    cal.add("refresh-interval", dt.timedelta(minutes=15), parameters={"VALUE": "DURATION"})
    cal.add("x-published-ttl", "PT15M")
    for event in events:
        cal.add_component(event)
    return cal.to_ical()


def _response(body: bytes, filename: str, *, private: bool) -> HttpResponse:
    response = HttpResponse(body, content_type=CONTENT_TYPE)
    response["Content-Disposition"] = f'inline; filename="{filename}"'
    response["Cache-Control"] = "private, max-age=300" if private else "public, max-age=300"
    response["X-Robots-Tag"] = "noindex"
    return response


def _bookings(qs: QuerySet[Booking]) -> QuerySet[Booking]:
    return qs.select_related("machine", "machine__lab").order_by("start", "pk")


@require_GET
def member_feed(request: HttpRequest, token: str) -> HttpResponse:
    """Every booking of one member, at the URL only they know."""
    profile = MemberProfile.objects.select_related("user").filter(calendar_token=token).first()
    if profile is None or not profile.user.is_active:
        raise Http404
    since = timezone.now() - MEMBER_HISTORY
    bookings = _bookings(Booking.objects.filter(member=profile.user, end__gte=since))
    with translation.override(profile.language):
        events = []
        for booking in bookings:
            summary = _("%(machine)s at %(lab)s") % {
                "machine": booking.machine.name,
                "lab": booking.machine.lab.name,
            }
            events.append(_event(booking, summary=summary, description=booking.purpose))
        body = _calendar(_("My FabLab bookings"), events)
    return _response(body, "bookings.ics", private=True)


@require_GET
def machine_feed(request: HttpRequest, lab: str, machine: str) -> HttpResponse:
    """Every booking of one machine; only the signed-in member's own show what they are."""
    found = Machine.objects.select_related("lab").filter(lab__slug=lab, slug=machine).first()
    if found is None:
        raise Http404
    since = timezone.now() - MACHINE_HISTORY
    bookings = _bookings(Booking.objects.filter(machine=found, end__gte=since))
    viewer = request.user if request.user.is_authenticated else None
    events = []
    for booking in bookings:
        if viewer is not None and booking.member_id == viewer.pk:
            events.append(_event(booking, summary=_("My booking"), description=booking.purpose))
        else:
            events.append(_event(booking, summary=_("Booked")))
    name = _("%(machine)s at %(lab)s") % {"machine": found.name, "lab": found.lab.name}
    response = _response(
        _calendar(name, events), f"{found.lab.slug}-{found.slug}.ics", private=viewer is not None
    )
    response["Vary"] = "Cookie, Accept-Language"
    return response
