"""Calendar feeds: a member's secret feed and a machine's anonymous one, parsed back with icalendar."""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo

import icalendar
import pytest
from django.test import Client
from django.urls import reverse
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


def busy_uid_of(booking: Booking) -> str:
    return ical.busy_uid(booking)


def test_machine_feed_shows_only_busy_blocks(member, machine):
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
    for secret in ("ada", "Ada", "Lovelace", "example.org", "Secret prototype", member.username):
        assert secret not in text
    events = events_by_uid(cal)
    # Cancelled bookings are not busy; pending ones look like any other.
    assert set(events) == {busy_uid_of(b) for b in (booking, pending)}
    assert busy_uid_of(cancelled) not in events and busy_uid_of(other_machine) not in events
    assert {str(e["SUMMARY"]) for e in events.values()} == {"Busy"}
    assert {str(e["STATUS"]) for e in events.values()} == {"CONFIRMED"}
    for event in events.values():
        for prop in ("DESCRIPTION", "ORGANIZER", "ATTENDEE", "CREATED", "LAST-MODIFIED", "SEQUENCE", "URL"):
            assert prop not in event, prop
    assert events[busy_uid_of(booking)].decoded("DTSTART") == local(2, 10)
    assert events[busy_uid_of(booking)].decoded("DTEND") == local(2, 11)


def test_the_anonymous_machine_feed_names_no_one_and_reveals_no_booking_id(machine):
    people = [
        UserFactory(
            username=f"maker{i}", first_name=f"First{i}", last_name=f"Last{i}", email=f"m{i}@mail.test"
        )
        for i in range(3)
    ]
    bookings = [
        BookingFactory(
            machine=machine,
            member=person,
            start=local(2 + i, 10),
            end=local(2 + i, 11),
            purpose=f"purpose {i}",
        )
        for i, person in enumerate(people)
    ]
    cal, raw = fetch("/calendar/machine/centre/prusa.ics")
    text = raw.decode()
    for person, booking in zip(people, bookings, strict=True):
        for secret in (person.username, person.first_name, person.last_name, person.email, booking.purpose):
            assert secret not in text
    assert "booking-" not in text
    uids = [str(e["UID"]) for e in cal.walk("VEVENT")]
    assert len(uids) == len(set(uids)) == 3
    for uid, booking in zip(uids, bookings, strict=True):
        local_part = uid.split("@")[0]
        assert str(booking.pk) not in local_part.split("-")
        assert len(local_part) >= len("busy-") + 32  # 128 bits: not guessable from a neighbour's


def test_the_machine_feed_does_not_tell_when_or_how_often_bookings_were_made(member, machine):
    early = BookingFactory(machine=machine, member=member, start=local(2, 10), end=local(2, 11))
    late = BookingFactory(machine=machine, start=local(3, 10), end=local(3, 11))
    Booking.objects.filter(pk=early.pk).update(
        created_at=timezone.now() - dt.timedelta(days=40), updated_at=timezone.now() - dt.timedelta(days=39)
    )
    cal, _raw = fetch("/calendar/machine/centre/prusa.ics")
    events = list(cal.walk("VEVENT"))
    assert len(events) == 2
    # One DTSTAMP for the whole feed, the time it was made: not the bookings' own timestamps.
    assert len({e.decoded("DTSTAMP") for e in events}) == 1
    assert abs(events[0].decoded("DTSTAMP") - timezone.now()) < dt.timedelta(minutes=5)
    # In time order, whoever made them and whenever.
    assert [e.decoded("DTSTART") for e in events] == [local(2, 10), local(3, 10)]
    assert [str(e["UID"]) for e in events] == [busy_uid_of(early), busy_uid_of(late)]


def test_machine_feed_shows_the_signed_in_members_own_bookings(member, machine):
    mine = BookingFactory(
        machine=machine, member=member, start=local(2, 10), end=local(2, 11), purpose="lamp"
    )
    theirs = BookingFactory(machine=machine, start=local(2, 12), end=local(2, 13), purpose="their secret")
    client = Client()
    client.force_login(member)
    cal, raw = fetch("/calendar/machine/centre/prusa.ics", client)
    events = events_by_uid(cal)
    assert str(events[busy_uid_of(mine)]["DESCRIPTION"]) == "lamp"
    assert str(events[busy_uid_of(theirs)]["SUMMARY"]) == "Busy"
    assert b"their secret" not in raw
    assert theirs.member.username.encode() not in raw


def test_uids_are_stable_across_requests_and_differ_between_the_feeds(member, machine):
    booking = BookingFactory(machine=machine, member=member, start=local(2, 10), end=local(2, 11))
    member_url = f"/calendar/member/{profile_for(member).calendar_token}.ics"
    machine_url = "/calendar/machine/centre/prusa.ics"
    member_uids = [set(events_by_uid(fetch(member_url)[0])) for _ in range(2)]
    machine_uids = [set(events_by_uid(fetch(machine_url)[0])) for _ in range(2)]
    assert member_uids[0] == member_uids[1] == {f"booking-{booking.pk}@127.0.0.1"}
    assert machine_uids[0] == machine_uids[1] == {busy_uid_of(booking)}
    # Subscribed to both, a member gets two events, not one UID with two contents.
    assert not member_uids[0] & machine_uids[0]
    assert busy_uid_of(booking).endswith("@127.0.0.1")
    # The host in the UID does not depend on the Host header of the request.
    for url, uids in ((member_url, member_uids[0]), (machine_url, machine_uids[0])):
        other_host = Client(HTTP_HOST="localhost").get(url)
        assert set(events_by_uid(icalendar.Calendar.from_ical(other_host.content))) == uids


def test_the_busy_uid_depends_on_the_secret_key(member, machine, settings):
    booking = BookingFactory(machine=machine, member=member, start=local(2, 10), end=local(2, 11))
    before = ical.busy_uid(booking)
    settings.SECRET_KEY = "another secret key for this test only, long enough to be one"
    assert ical.busy_uid(booking) != before


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


@pytest.mark.parametrize("url_name", ["members:profile", "booking:mine"])
def test_calendar_links_use_the_sites_scheme_and_host(member, url_name, settings):
    settings.SITE_URL = "https://fablab.example.org"
    client = Client()  # the request itself is plain http on another host, as behind a TLS proxy
    client.force_login(member)
    response = client.get(reverse(url_name))
    assert response.status_code == 200
    page = response.content.decode()
    token = profile_for(member).calendar_token
    links = re.findall(r'(?:value|href)="([^"]*\.ics)"', page)
    assert links == [f"https://fablab.example.org/calendar/member/{token}.ics"]
    assert "testserver/calendar" not in page


def test_absolute_feed_url_takes_scheme_and_host_from_site_url(settings):
    settings.SITE_URL = "https://fablab.example.org:8443/"
    assert (
        ical.absolute_feed_url("/calendar/machine/a/b.ics")
        == "https://fablab.example.org:8443/calendar/machine/a/b.ics"
    )
