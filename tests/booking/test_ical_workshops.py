"""The member's calendar feed carries the workshop and course sessions they registered for."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import icalendar
import pytest
from django.test import Client
from django.utils import timezone

from fablab.booking import series as series_mod
from fablab.booking.models import Booking, WorkshopRegistration
from fablab.booking.series import Recurrence
from fablab.members.models import profile_for
from tests.factories import LabFactory, MachineFactory, UserFactory

pytestmark = pytest.mark.django_db

BRUSSELS = zoneinfo.ZoneInfo("Europe/Brussels")


@pytest.fixture
def lab():
    return LabFactory(slug="centre", name="Centre", address="Rue Haute 1\n1000 Brussels")


@pytest.fixture
def manager(lab):
    user = UserFactory()
    lab.managers.add(user)
    return user


def workshop(lab, manager, title, *, first_day, weeks=1):
    recurrence = Recurrence(
        series_mod.weekly_rule([first_day.weekday()]),
        first_day,
        dt.time(18),
        dt.timedelta(hours=2),
        until=first_day + dt.timedelta(weeks=weeks - 1),
    )
    the_plan = series_mod.plan(
        lab=lab, machines=[MachineFactory(lab=lab)], recurrence=recurrence, title=title, now=timezone.now()
    )
    return series_mod.create_workshop(the_plan, {}, manager, now=timezone.now()).series


def starts(series) -> list[dt.datetime]:
    return sorted({b.start for b in Booking.objects.filter(series=series)})


def feed(member) -> dict[str, icalendar.Event]:
    response = Client().get(f"/calendar/member/{profile_for(member).calendar_token}.ics")
    assert response.status_code == 200
    cal = icalendar.Calendar.from_ical(response.content)
    return {str(e["UID"]): e for e in cal.walk("VEVENT")}


def test_feed_has_the_members_registered_workshop_sessions_only(lab, manager):
    today = timezone.localdate(timezone=BRUSSELS)
    arduino = workshop(lab, manager, "Arduino for beginners", first_day=today + dt.timedelta(days=3), weeks=3)
    first, second, third = starts(arduino)
    secret = workshop(lab, manager, "Someone else's class", first_day=today + dt.timedelta(days=4))
    member, other = UserFactory(), UserFactory()
    mine = series_mod.register(arduino, first, member)
    left = series_mod.register(arduino, second, member)
    series_mod.unregister(arduino, second, member)
    dropped = series_mod.register(arduino, third, member)
    Booking.objects.filter(series=arduino, start=third).update(status=Booking.Status.CANCELLED)
    theirs = series_mod.register(secret, starts(secret)[0], other)

    events = feed(member)

    uids = {uid for uid in events if uid.startswith("workshop-")}
    assert uids == {f"workshop-{mine.pk}@127.0.0.1", f"workshop-{left.pk}@127.0.0.1"}
    event = events[f"workshop-{mine.pk}@127.0.0.1"]
    assert event.decoded("DTSTART") == first
    assert event.decoded("DTEND") == first + dt.timedelta(hours=2)
    assert event.decoded("DTSTART").utcoffset() == dt.timedelta(0)
    assert "Arduino for beginners" in str(event["SUMMARY"])
    assert "Centre" in str(event["LOCATION"]) and "Rue Haute 1" in str(event["LOCATION"])
    assert str(event["STATUS"]) == "CONFIRMED"
    assert str(events[f"workshop-{left.pk}@127.0.0.1"]["STATUS"]) == "CANCELLED"
    body = "".join(str(e.get("SUMMARY")) for e in events.values())
    assert "Someone else" not in body
    assert WorkshopRegistration.objects.get(pk=left.pk).status == WorkshopRegistration.Status.CANCELLED
    assert f"workshop-{dropped.pk}@127.0.0.1" not in events
    assert f"workshop-{theirs.pk}@127.0.0.1" not in feed(member)
    assert set(feed(other)) == {f"workshop-{theirs.pk}@127.0.0.1"}


def test_a_session_the_member_left_stays_cancelled_and_comes_back_when_they_register_again(lab, manager):
    today = timezone.localdate(timezone=BRUSSELS)
    club = workshop(lab, manager, "Code club", first_day=today + dt.timedelta(days=2))
    session = starts(club)[0]
    member = UserFactory()
    uid = f"workshop-{series_mod.register(club, session, member).pk}@127.0.0.1"
    registered = feed(member)[uid]
    assert (str(registered["STATUS"]), registered.get("SEQUENCE", 0)) == ("CONFIRMED", 0)

    series_mod.unregister(club, session, member)
    left = feed(member)[uid]

    assert str(left["STATUS"]) == "CANCELLED"
    assert left["SEQUENCE"] > registered.get("SEQUENCE", 0)
    assert str(left["TRANSP"]) == "TRANSPARENT"
    assert left.decoded("DTSTART") == registered.decoded("DTSTART")
    assert left.decoded("DTEND") == registered.decoded("DTEND")

    series_mod.register(club, session, member)
    again = feed(member)[uid]

    assert str(again["STATUS"]) == "CONFIRMED"
    assert again["SEQUENCE"] > left["SEQUENCE"]


def test_a_cancelled_workshop_leaves_the_feed(lab, manager):
    today = timezone.localdate(timezone=BRUSSELS)
    club = workshop(lab, manager, "Code club", first_day=today + dt.timedelta(days=2))
    member = UserFactory()
    registration = series_mod.register(club, starts(club)[0], member)
    assert f"workshop-{registration.pk}@127.0.0.1" in feed(member)
    club.cancelled_at = timezone.now()
    club.save(update_fields=["cancelled_at"])
    assert f"workshop-{registration.pk}@127.0.0.1" not in feed(member)
