"""Calendar feeds (RFC 5545): a member's own bookings, and a machine's busy times.

The member feed lives at a secret URL (``MemberProfile.calendar_token``) that
calendar apps can poll without signing in; resetting the token revokes it.
Cancelled bookings stay in it as ``STATUS:CANCELLED`` so that subscribed
calendars drop them; pending ones are ``TENTATIVE``. The member's training sessions
(:mod:`fablab.trainings.ical`) and the workshop and course sessions they hold a seat in
are there too; a session they left stays as ``CANCELLED``, like a cancelled booking.

The machine feed is public, so it shows busy blocks and nothing else: each
booking that holds the machine is "Busy", with no name, purpose, email or
status (pending and confirmed look alike; cancelled ones are left out), an
opaque UID (:func:`busy_uid`: neither the booking's id nor a way to guess
the next one) and no CREATED, LAST-MODIFIED or SEQUENCE that would tell when
or how often someone booked. Only the signed-in member's own bookings there
show what they are. Times are written in UTC.

Links to the feeds are built from ``SITE_URL`` (:func:`absolute_feed_url`),
never from the request, so they carry the site's scheme and host.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from urllib.parse import urlsplit

import icalendar
from django.conf import settings
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import Http404, HttpRequest, HttpResponse
from django.utils import timezone, translation
from django.utils.crypto import salted_hmac
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET

from fablab.labs.models import Machine
from fablab.members.models import MemberProfile

from .models import Booking, Series, WorkshopRegistration

CONTENT_TYPE = "text/calendar; charset=utf-8"
#: How far back the feeds reach; the future is always complete.
MEMBER_HISTORY = dt.timedelta(days=365)
MACHINE_HISTORY = dt.timedelta(days=31)

_STATUS = {
    Booking.Status.PENDING: "TENTATIVE",
    Booking.Status.CANCELLED: "CANCELLED",
}


#: Bookings that make a machine busy in its public feed (cancelled and declined ones are not there).
BUSY = (
    Booking.Status.PENDING,
    Booking.Status.CONFIRMED,
    Booking.Status.CHECKED_IN,
    Booking.Status.COMPLETED,
    Booking.Status.NO_SHOW,
)


def _site_host() -> str:
    return urlsplit(settings.SITE_URL).hostname or "fablab.invalid"


def event_uid(booking: Booking) -> str:
    """The member feed's UID. Stable across requests: the host comes from SITE_URL, not from the request."""
    return f"booking-{booking.pk}@{_site_host()}"


def busy_uid(booking: Booking) -> str:
    """The machine feed's UID: stable, but opaque (an HMAC of the booking's id keyed by SECRET_KEY).

    It differs from :func:`event_uid`, so a member subscribed to both feeds
    gets two events, not one UID with two different contents.
    """
    digest = salted_hmac("fablab.booking.ical.busy", str(booking.pk), algorithm="sha256").hexdigest()
    return f"busy-{digest[:32]}@{_site_host()}"


def absolute_feed_url(path: str) -> str:
    """``path`` (a feed's path, from ``reverse``) on the site's own scheme and host, from SITE_URL."""
    site = urlsplit(settings.SITE_URL)
    return f"{site.scheme}://{site.netloc}/{path.lstrip('/')}"


def _sequence(booking: Booking) -> int:
    # Each change of state a calendar should notice: approved or declined, then cancelled.
    return int(booking.decided_at is not None) + int(
        booking.cancelled_at is not None and booking.cancel_reason != Booking.CancelReason.DECLINED
    )


def _location(booking: Booking) -> str:
    lab = booking.machine.lab
    return ", ".join(part for part in (lab.name, lab.address.replace("\n", ", ")) if part)


def _event(booking: Booking, *, summary: str, description: str = "", uid: str = "") -> icalendar.Event:
    event = icalendar.Event()
    event.add("uid", uid or event_uid(booking))
    event.add("dtstamp", booking.updated_at.astimezone(dt.UTC))
    event.add("last-modified", booking.updated_at.astimezone(dt.UTC))
    event.add("created", booking.created_at.astimezone(dt.UTC))
    event.add("sequence", _sequence(booking))
    event.add("dtstart", booking.start.astimezone(dt.UTC))
    event.add("dtend", booking.end.astimezone(dt.UTC))
    event.add("summary", summary)
    event.add("location", _location(booking))
    event.add("status", _STATUS.get(booking.status, "CONFIRMED"))
    event.add("transp", "TRANSPARENT" if booking.status == Booking.Status.CANCELLED else "OPAQUE")
    if description:
        event.add("description", description)
    return event


def _busy_event(booking: Booking, *, stamp: dt.datetime) -> icalendar.Event:
    """Someone else's booking in the public feed: when the machine is busy, nothing more.

    ``stamp`` (the feed's own time, the same for every event) is the
    required DTSTAMP: the booking's own timestamps would tell when it was made
    or changed.
    """
    event = icalendar.Event()
    event.add("uid", busy_uid(booking))
    event.add("dtstamp", stamp)
    event.add("dtstart", booking.start.astimezone(dt.UTC))
    event.add("dtend", booking.end.astimezone(dt.UTC))
    event.add("summary", _("Busy"))
    event.add("location", _location(booking))
    event.add("status", "CONFIRMED")
    event.add("transp", "OPAQUE")
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


def _workshop_events(member, *, since: dt.datetime) -> list[icalendar.Event]:
    """The workshop and course sessions ``member`` registered for, ending after ``since``; one query.

    A session the member left (their registration cancelled) stays as ``CANCELLED``, so subscribed
    calendars drop the event instead of keeping it stale; registering again reuses the registration,
    so its event, and makes it ``CONFIRMED`` again. Either change raises the event's SEQUENCE (the
    registration counts them). A cancelled workshop
    or a session whose bookings are all cancelled is left out. The session's end is its bookings'
    end (the same wall-clock length across a daylight-saving change). UIDs are
    ``workshop-<registration>``.
    """
    session = Booking.objects.filter(
        series=OuterRef("series_id"), start=OuterRef("occurrence_start"), kind=Booking.Kind.WORKSHOP
    ).exclude(status=Booking.Status.CANCELLED)
    registrations = (
        WorkshopRegistration.objects.filter(
            member=member,
            series__kind=Series.Kind.WORKSHOP,
            series__cancelled_at=None,
        )
        .annotate(end=Subquery(session.order_by("-end").values("end")[:1]))
        .filter(end__gte=since)
        .select_related("series", "series__lab")
        .order_by("occurrence_start", "pk")
    )
    events = []
    for registration in registrations:
        workshop = registration.series
        lab = workshop.lab
        left = registration.status == WorkshopRegistration.Status.CANCELLED
        event = icalendar.Event()
        event.add("uid", f"workshop-{registration.pk}@{_site_host()}")
        event.add("dtstamp", registration.registered_at.astimezone(dt.UTC))
        event.add("sequence", registration.sequence)
        event.add("dtstart", registration.occurrence_start.astimezone(dt.UTC))
        event.add("dtend", registration.end.astimezone(dt.UTC))
        event.add(
            "summary", _("Workshop: %(title)s") % {"title": workshop.title or workshop.get_kind_display()}
        )
        event.add("location", ", ".join(part for part in (lab.name, lab.address.replace("\n", ", ")) if part))
        event.add("status", "CANCELLED" if left else "CONFIRMED")
        event.add("transp", "TRANSPARENT" if left else "OPAQUE")
        events.append(event)
    return events


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
        # The training sessions the member holds a seat in or waits for (fablab.trainings).
        from fablab.trainings.ical import session_events

        events.extend(session_events(profile.user, since=since, host=_site_host()))
        # The workshop and course sessions the member registered for (fablab.booking.series).
        events.extend(_workshop_events(profile.user, since=since))
        body = _calendar(_("My FabLab bookings"), events)
    return _response(body, "bookings.ics", private=True)


@require_GET
def machine_feed(request: HttpRequest, lab: str, machine: str) -> HttpResponse:
    """When one machine is busy; only the signed-in member's own bookings show what they are."""
    found = Machine.objects.select_related("lab").filter(lab__slug=lab, slug=machine).first()
    if found is None:
        raise Http404
    now = timezone.now()
    stamp = now.astimezone(dt.UTC).replace(microsecond=0)
    # Ordered by time only: an order by id would hint at which booking was made first.
    bookings = (
        Booking.objects.filter(machine=found, end__gte=now - MACHINE_HISTORY, status__in=BUSY)
        .select_related("machine", "machine__lab")
        .order_by("start", "end")
    )
    viewer = request.user if request.user.is_authenticated else None
    events = []
    for booking in bookings:
        if viewer is not None and booking.member_id == viewer.pk:
            event = _event(
                booking, summary=_("My booking"), description=booking.purpose, uid=busy_uid(booking)
            )
        else:
            event = _busy_event(booking, stamp=stamp)
        events.append(event)
    name = _("%(machine)s at %(lab)s") % {"machine": found.name, "lab": found.lab.name}
    response = _response(
        _calendar(name, events), f"{found.lab.slug}-{found.slug}.ics", private=viewer is not None
    )
    response["Vary"] = "Cookie, Accept-Language"
    return response
