"""Booking pages: the confirm form, my bookings, cancelling."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest
from django.urls import reverse
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fablab.booking.models import Booking
from fablab.labs.models import Machine
from tests.factories import (
    BookingFactory,
    CertificationFactory,
    MachineFactory,
    TrainingFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

BRUSSELS = zoneinfo.ZoneInfo("Europe/Brussels")


def in_two_days(hour: int, minute: int = 0) -> dt.datetime:
    day = timezone.localdate(timezone=BRUSSELS) + dt.timedelta(days=2)
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=BRUSSELS)


def book_url(machine, start: dt.datetime | None = None) -> str:
    url = reverse("booking:book", args=[machine.pk])
    if start is not None:
        from urllib.parse import quote

        url += "?start=" + quote(start.isoformat())
    return url


@pytest.fixture
def maker(client):
    user = UserFactory(username="maker")
    client.force_login(user)
    return user


def test_anonymous_must_log_in_to_book_and_comes_back(client):
    machine = MachineFactory()
    url = book_url(machine, in_two_days(10))
    response = client.get(url)
    assert response.status_code == 302
    login = reverse("members:login")
    assert response["Location"].startswith(login + "?next=")
    user = UserFactory(username="carla")
    response = client.post(
        response["Location"], {"username": "carla", "password": "pw-test-1234", "next": url}
    )
    assert response.status_code == 302
    assert response["Location"] == url
    assert user.bookings.count() == 0


def test_the_confirm_form_has_the_start_and_lengths_in_slot_steps(client, maker):
    machine = MachineFactory(slot_minutes=30, min_duration_minutes=60, max_duration_minutes=120)
    start = in_two_days(10)
    response = client.get(book_url(machine, start))
    html = response.content.decode()
    assert response.status_code == 200
    assert f'name="start" value="{start.isoformat()}"' in html
    assert '<option value="60" selected>' in html
    assert '<option value="90">' in html
    assert '<option value="120">' in html
    assert '<option value="30"' not in html and '<option value="150"' not in html


def test_lengths_stop_at_the_next_booking(client, maker):
    machine = MachineFactory(max_duration_minutes=240)
    BookingFactory(machine=machine, start=in_two_days(11), end=in_two_days(12))
    html = client.get(book_url(machine, in_two_days(10))).content.decode()
    assert '<option value="60">' in html
    assert '<option value="90"' not in html


def test_booking_through_the_form_creates_a_confirmed_booking(client, maker):
    machine = MachineFactory()
    start = in_two_days(10)
    response = client.post(
        book_url(machine), {"start": start.isoformat(), "duration": "90", "purpose": "Bracket for my bike"}
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("booking:mine")
    booking = Booking.objects.get(member=maker)
    assert booking.machine == machine
    assert booking.start == start
    assert booking.end == start + dt.timedelta(minutes=90)
    assert booking.purpose == "Bracket for my bike"
    assert booking.status == Booking.Status.CONFIRMED
    page = client.get(reverse("booking:mine")).content.decode()
    assert machine.name in page
    assert "Confirmed" in page


def test_a_machine_needing_approval_gets_a_pending_booking(client, maker):
    machine = MachineFactory(approval_required=True)
    client.post(book_url(machine), {"start": in_two_days(10).isoformat(), "duration": "30"})
    assert Booking.objects.get(member=maker).status == Booking.Status.PENDING
    assert "Pending approval" in client.get(reverse("booking:mine")).content.decode()


def test_a_broken_rule_shows_its_message_and_keeps_the_values(client, maker):
    machine = MachineFactory(required_training=TrainingFactory(name="Laser safety"))
    start = in_two_days(10)
    response = client.post(
        book_url(machine), {"start": start.isoformat(), "duration": "60", "purpose": "Lamp shade"}
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert 'You need the training "Laser safety" before you can book this machine.' in html  # the note, once
    assert 'value="Lamp shade"' in html
    assert '<option value="60" selected>' in html
    assert not Booking.objects.exists()


def test_a_taken_slot_is_refused_on_the_form(client, maker):
    machine = MachineFactory()
    BookingFactory(machine=machine, start=in_two_days(10), end=in_two_days(11))
    response = client.post(book_url(machine), {"start": in_two_days(10, 30).isoformat(), "duration": "30"})
    assert "Someone else has already booked this time." in response.content.decode()
    assert Booking.objects.count() == 1


def test_a_certified_member_can_book_a_machine_needing_training(client, maker):
    training = TrainingFactory()
    CertificationFactory(member=maker, training=training)
    machine = MachineFactory(required_training=training)
    client.post(book_url(machine), {"start": in_two_days(10).isoformat(), "duration": "30"})
    assert Booking.objects.filter(member=maker, machine=machine).exists()


@pytest.mark.parametrize(
    "start",
    ["", "garbage", "9999-12-31T23:59:59+14:00", "0001-01-01T00:00:00-12:00", "2026-13-01T10:00", "x" * 500],
)
def test_a_bad_start_redirects_to_the_week(client, maker, start):
    machine = MachineFactory()
    for response in (
        client.get(book_url(machine), {"start": start}),
        client.post(book_url(machine), {"start": start, "duration": "30"}),
    ):
        assert response.status_code in (200, 302)
    assert not Booking.objects.exists()


@pytest.mark.parametrize("duration", ["", "abc", "-30", "7", "45", "99999999999999999999999", "1e3"])
def test_a_bad_length_is_a_form_error(client, maker, duration):
    machine = MachineFactory()
    response = client.post(book_url(machine), {"start": in_two_days(10).isoformat(), "duration": duration})
    assert response.status_code == 200
    assert 'class="error"' in response.content.decode()
    assert not Booking.objects.exists()


def test_an_offset_that_lost_its_plus_in_the_query_string_still_works(client, maker):
    machine = MachineFactory()
    start = in_two_days(10)
    # "+01:00" unencoded in a query string arrives as " 01:00".
    response = client.get(book_url(machine) + "?start=" + start.isoformat())
    assert response.status_code == 200
    assert "Book" in response.content.decode()


def test_my_bookings_lists_upcoming_and_past_with_status_and_the_calendar_link(client, maker):
    machine = MachineFactory(name="Prusa one")
    BookingFactory(machine=machine, member=maker, start=in_two_days(10), end=in_two_days(11))
    past_start = timezone.now() - dt.timedelta(days=3)
    BookingFactory(
        machine=MachineFactory(name="Old laser"),
        member=maker,
        start=past_start,
        end=past_start + dt.timedelta(hours=1),
        status=Booking.Status.COMPLETED,
    )
    BookingFactory(machine=machine, start=in_two_days(12), end=in_two_days(13))  # someone else's

    response = client.get(reverse("booking:mine"))

    html = response.content.decode()
    upcoming, past = html.split('id="past-title"')
    assert "Prusa one" in upcoming and "Old laser" not in upcoming
    assert "Old laser" in past and "Completed" in past
    assert html.count('class="card booking') == 2
    assert maker.profile.calendar_token in html
    assert "/calendar/member/" in html


def test_my_bookings_needs_a_login(client):
    response = client.get(reverse("booking:mine"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("members:login"))


def test_cancelling_asks_then_cancels_through_the_services(client, maker):
    booking = BookingFactory(member=maker, start=in_two_days(10), end=in_two_days(11))
    url = reverse("booking:cancel", args=[booking.pk])
    confirm = client.get(url)
    assert confirm.status_code == 200
    assert "Yes, cancel it" in confirm.content.decode()
    booking.refresh_from_db()
    assert booking.status == Booking.Status.CONFIRMED

    response = client.post(url)

    assert response.status_code == 302
    booking.refresh_from_db()
    assert booking.status == Booking.Status.CANCELLED
    assert booking.cancelled_by == maker
    assert booking.cancel_reason == Booking.CancelReason.MEMBER
    page = client.get(reverse("booking:mine")).content.decode()
    assert "Cancelled" in page and "The booking has been cancelled." in page


def test_a_booking_that_started_cannot_be_cancelled_by_its_member(client, maker):
    start = timezone.now() - dt.timedelta(minutes=10)
    booking = BookingFactory(member=maker, start=start, end=start + dt.timedelta(hours=1))
    client.post(reverse("booking:cancel", args=[booking.pk]))
    booking.refresh_from_db()
    assert booking.status == Booking.Status.CONFIRMED
    assert "This booking can no longer be cancelled." in client.get(reverse("booking:mine")).content.decode()


def test_someone_elses_booking_cannot_be_cancelled_or_seen(client, maker):
    booking = BookingFactory(start=in_two_days(10), end=in_two_days(11))
    url = reverse("booking:cancel", args=[booking.pk])
    assert client.get(url).status_code == 404
    assert client.post(url).status_code == 404
    booking.refresh_from_db()
    assert booking.status == Booking.Status.CONFIRMED


def test_cancel_ignores_a_foreign_next_url(client, maker):
    booking = BookingFactory(member=maker, start=in_two_days(10), end=in_two_days(11))
    response = client.post(reverse("booking:cancel", args=[booking.pk]), {"next": "https://evil.example/"})
    assert response["Location"] == reverse("booking:mine")


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    start=st.one_of(st.text(max_size=40), st.datetimes().map(lambda d: d.isoformat())),
    duration=st.one_of(st.text(max_size=12), st.integers().map(str)),
    purpose=st.text(max_size=400),
)
def test_any_form_input_gives_a_page_never_a_500(client, maker, start, duration, purpose):
    machine = Machine.objects.first() or MachineFactory()
    before = Booking.objects.count()
    response = client.post(book_url(machine), {"start": start, "duration": duration, "purpose": purpose})
    assert response.status_code in (200, 302)
    if Booking.objects.count() != before:
        assert response["Location"] == reverse("booking:mine")
