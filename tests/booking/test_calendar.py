"""Calendar feeds: a member's secret feed and a machine's anonymous one, parsed back with icalendar."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import icalendar
import pytest
from django.test import Client
from django.utils import timezone, translation

from fablab.booking import ical
from fablab.booking.models import Booking
from fablab.members.models import profile_for
from tests.factories import BookingFactory, LabFactory, MachineFactory, UserFactory

pytestmark = pytest.mark.django_db

BRUSSELS = ZoneInfo("Europe/Brussels")


def local(days: int, hour: int) -> dt.datetime:
    day = timezone.localdate(timezone.now(), BRUSSELS) + dt.timedelta(days=days)
    return dt.datetime.combine(day, dt.time(hour), tzinfo=BRUSSELS)


def fetch(url: str, client: Client | None = None) -> tuple[icalendar.Calendar, bytes]:
    response = (client or Client()).get(url)
    assert response.status_code == 200
    assert response["Content-Type"] == "text/calendar; charset=utf-8"
    raw = response.content
    cal = icalendar.Calendar.from_ical(raw)
    check_rfc5545(cal, raw)
    return cal, raw


def check_rfc5545(cal: icalendar.Calendar, raw: bytes) -> None:
    """The properties RFC 5545 requires, and UTC times."""
    assert cal.name == "VCALENDAR"
    assert cal["VERSION"] == "2.0"
    assert cal["PRODID"]
    assert raw.startswith(b"BEGIN:VCALENDAR\r\n") and raw.endswith(b"END:VCALENDAR\r\n")
    # Folded lines stay within 75 octets.
    assert all(len(line) <= 75 for line in raw.split(b"\r\n"))
    for event in cal.walk("VEVENT"):
        for required in ("UID", "DTSTAMP", "DTSTART", "DTEND", "SUMMARY", "STATUS"):
            assert required in event, required
        for prop in ("DTSTAMP", "DTSTART", "DTEND"):
            assert event.decoded(prop).utcoffset() == dt.timedelta(0)
            assert event[prop].to_ical().endswith(b"Z")
        assert event.decoded("DTEND") > event.decoded("DTSTART")


def events_by_uid(cal: icalendar.Calendar) -> dict[str, icalendar.Event]:
    return {str(event["UID"]): event for event in cal.walk("VEVENT")}


@pytest.fixture
def member():
    return UserFactory(username="ada", first_name="Ada", last_name="Lovelace", email="ada@example.org")


@pytest.fixture
def machine():
    lab = LabFactory(slug="centre", name="Centre", address="Rue Haute 1\n1000 Brussels")
    return MachineFactory(lab=lab, slug="prusa", name="Prusa MK4")


def test_member_feed(member, machine):
    confirmed = BookingFactory(
        machine=machine, member=member, start=local(2, 10), end=local(2, 11), purpose="lamp"
    )
    pending = BookingFactory(
        machine=machine, member=member, start=local(3, 10), end=local(3, 12), status=Booking.Status.PENDING
    )
    cancelled = BookingFactory(
        machine=machine, member=member, start=local(4, 10), end=local(4, 11), status=Booking.Status.CANCELLED
    )
    someone_else = BookingFactory(machine=machine, start=local(5, 10), end=local(5, 11))
    token = profile_for(member).calendar_token

    cal, _raw = fetch(f"/calendar/member/{token}.ics")
    events = events_by_uid(cal)
    assert set(events) == {f"booking-{b.pk}@127.0.0.1" for b in (confirmed, pending, cancelled)}
    assert f"booking-{someone_else.pk}@127.0.0.1" not in events

    first = events[f"booking-{confirmed.pk}@127.0.0.1"]
    assert first.decoded("DTSTART") == local(2, 10)
    assert first.decoded("DTEND") == local(2, 11)
    assert "Prusa MK4" in str(first["SUMMARY"])
    assert str(first["DESCRIPTION"]) == "lamp"
    assert str(first["STATUS"]) == "CONFIRMED"
    assert "Rue Haute 1" in str(first["LOCATION"])
    assert str(events[f"booking-{pending.pk}@127.0.0.1"]["STATUS"]) == "TENTATIVE"
    assert str(events[f"booking-{cancelled.pk}@127.0.0.1"]["STATUS"]) == "CANCELLED"


def test_a_cancellation_keeps_the_uid_and_changes_the_status(member, machine):
    booking = BookingFactory(machine=machine, member=member, start=local(2, 10), end=local(2, 11))
    url = f"/calendar/member/{profile_for(member).calendar_token}.ics"
    before = events_by_uid(fetch(url)[0])
    booking.status = Booking.Status.CANCELLED
    booking.cancelled_at = timezone.now()
    booking.cancel_reason = Booking.CancelReason.MEMBER
    booking.save()
    after = events_by_uid(fetch(url)[0])
    assert set(before) == set(after) == {f"booking-{booking.pk}@127.0.0.1"}
    (old,), (new,) = before.values(), after.values()
    assert str(old["STATUS"]) == "CONFIRMED" and str(new["STATUS"]) == "CANCELLED"
    assert new["SEQUENCE"] > old["SEQUENCE"]
    assert new.decoded("DTSTAMP") >= old.decoded("DTSTAMP")


def test_unknown_member_token_is_404(member):
    assert Client().get("/calendar/member/not-a-token.ics").status_code == 404


def test_resetting_the_token_revokes_the_old_url(member, machine):
    BookingFactory(machine=machine, member=member, start=local(2, 10), end=local(2, 11))
    profile = profile_for(member)
    old = profile.calendar_token
    assert Client().get(f"/calendar/member/{old}.ics").status_code == 200
    profile.reset_calendar_token()
    assert Client().get(f"/calendar/member/{old}.ics").status_code == 404
    cal, _raw = fetch(f"/calendar/member/{profile.calendar_token}.ics")
    assert len(cal.walk("VEVENT")) == 1


def test_inactive_members_feed_is_404(member):
    token = profile_for(member).calendar_token
    member.is_active = False
    member.save()
    assert Client().get(f"/calendar/member/{token}.ics").status_code == 404


def test_machine_feed_hides_who_booked(member, machine):
    booking = BookingFactory(
        machine=machine, member=member, start=local(2, 10), end=local(2, 11), purpose="Secret prototype"
    )
    pending = BookingFactory(
        machine=machine, member=member, start=local(3, 10), end=local(3, 11), status=Booking.Status.PENDING
    )
    cancelled = BookingFactory(
        machine=machine, member=member, start=local(4, 10), end=local(4, 11), status=Booking.Status.CANCELLED
    )
    other_machine = BookingFactory(start=local(2, 10), end=local(2, 11))

    cal, raw = fetch("/calendar/machine/centre/prusa.ics")
    text = raw.decode()
    for secret in ("ada", "Ada", "Lovelace", "example.org", "Secret prototype"):
        assert secret not in text
    events = events_by_uid(cal)
    assert set(events) == {f"booking-{b.pk}@127.0.0.1" for b in (booking, pending, cancelled)}
    assert f"booking-{other_machine.pk}@127.0.0.1" not in events
    assert {str(e["SUMMARY"]) for e in events.values()} == {"Booked"}
    assert all(
        "DESCRIPTION" not in e and "ORGANIZER" not in e and "ATTENDEE" not in e for e in events.values()
    )
    assert str(events[f"booking-{pending.pk}@127.0.0.1"]["STATUS"]) == "TENTATIVE"
    assert str(events[f"booking-{cancelled.pk}@127.0.0.1"]["STATUS"]) == "CANCELLED"
    assert events[f"booking-{booking.pk}@127.0.0.1"].decoded("DTSTART") == local(2, 10)


def test_machine_feed_shows_the_signed_in_members_own_bookings(member, machine):
    mine = BookingFactory(
        machine=machine, member=member, start=local(2, 10), end=local(2, 11), purpose="lamp"
    )
    theirs = BookingFactory(machine=machine, start=local(2, 12), end=local(2, 13), purpose="their secret")
    client = Client()
    client.force_login(member)
    cal, raw = fetch("/calendar/machine/centre/prusa.ics", client)
    events = events_by_uid(cal)
    assert str(events[f"booking-{mine.pk}@127.0.0.1"]["DESCRIPTION"]) == "lamp"
    assert str(events[f"booking-{theirs.pk}@127.0.0.1"]["SUMMARY"]) == "Booked"
    assert b"their secret" not in raw
    assert theirs.member.username.encode() not in raw


def test_uids_are_stable_across_feeds_and_requests(member, machine):
    booking = BookingFactory(machine=machine, member=member, start=local(2, 10), end=local(2, 11))
    member_url = f"/calendar/member/{profile_for(member).calendar_token}.ics"
    uids = [
        set(events_by_uid(fetch(url)[0]))
        for url in (member_url, member_url, "/calendar/machine/centre/prusa.ics")
    ]
    assert uids[0] == uids[1] == uids[2] == {f"booking-{booking.pk}@127.0.0.1"}
    # The host in the UID does not depend on the Host header of the request.
    other_host = Client(HTTP_HOST="localhost").get(member_url)
    assert set(events_by_uid(icalendar.Calendar.from_ical(other_host.content))) == uids[0]


def test_unknown_machine_feed_is_404(machine):
    assert Client().get("/calendar/machine/centre/nope.ics").status_code == 404
    assert Client().get("/calendar/machine/elsewhere/prusa.ics").status_code == 404


def test_feeds_only_answer_get(member, machine):
    assert Client().post("/calendar/machine/centre/prusa.ics").status_code == 405
    token = profile_for(member).calendar_token
    assert Client().post(f"/calendar/member/{token}.ics").status_code == 405


def test_empty_feeds_are_valid(member, machine):
    cal, _raw = fetch("/calendar/machine/centre/prusa.ics")
    assert cal.walk("VEVENT") == []
    cal, _raw = fetch(f"/calendar/member/{profile_for(member).calendar_token}.ics")
    assert cal.walk("VEVENT") == []


def test_a_member_feed_is_in_the_members_language(machine, monkeypatch):
    dutch = UserFactory(language="nl")
    BookingFactory(machine=machine, member=dutch, start=local(2, 10), end=local(2, 11))
    # The catalogues arrive separately, so record the language each string is translated in.
    languages = []

    def spy(message):
        languages.append(translation.get_language())
        return translation.gettext(message)

    monkeypatch.setattr(ical, "_", spy)
    fetch(f"/calendar/member/{profile_for(dutch).calendar_token}.ics", Client(HTTP_ACCEPT_LANGUAGE="fr"))
    assert languages and set(languages) == {"nl"}
