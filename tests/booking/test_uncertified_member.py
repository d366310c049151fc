"""A member without a machine's training: the pages say once what they need and offer nothing they
would be refused (no waitlist for a machine they may not book)."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest
from django.urls import reverse
from django.utils import timezone

from fablab.booking.models import Booking
from tests.factories import BookingFactory, CertificationFactory, MachineFactory, TrainingFactory, UserFactory

pytestmark = pytest.mark.django_db

BRUSSELS = zoneinfo.ZoneInfo("Europe/Brussels")


@pytest.fixture
def laser():
    return MachineFactory(required_training=TrainingFactory(name="Laser cutter safety"))


@pytest.fixture
def taken(laser) -> Booking:
    """Another member's booking the day after tomorrow, in this week's or next week's page."""
    day = timezone.localdate(timezone=BRUSSELS) + dt.timedelta(days=2)
    start = dt.datetime.combine(day, dt.time(10), tzinfo=BRUSSELS)
    return BookingFactory(machine=laser, start=start, end=start + dt.timedelta(hours=1))


def week_page(client, laser, taken) -> str:
    url = reverse("labs:machine", args=[laser.lab.slug, laser.slug])
    week = timezone.localtime(taken.start, BRUSSELS).date().isoformat()
    return client.get(url, {"week": week}).content.decode()


def test_an_uncertified_member_is_not_offered_the_waitlist_of_a_booked_slot(client, laser, taken):
    client.force_login(UserFactory())
    page = week_page(client, laser, taken)
    waitlist = reverse("booking:waitlist_join", args=[laser.pk])
    assert "Laser cutter safety" in page
    assert waitlist not in page and "join the waitlist" not in page


def test_a_certified_member_is_offered_the_waitlist_of_a_booked_slot(client, laser, taken):
    member = UserFactory()
    CertificationFactory(member=member, training=laser.required_training)
    client.force_login(member)
    assert reverse("booking:waitlist_join", args=[laser.pk]) in week_page(client, laser, taken)


def test_booking_without_the_training_says_so_once(client, laser, taken):
    client.force_login(UserFactory())
    start = taken.end + dt.timedelta(hours=1)
    response = client.post(
        reverse("booking:book", args=[laser.pk]), {"start": start.isoformat(), "duration": "30"}
    )
    page = response.content.decode()
    assert response.status_code == 200 and not Booking.objects.filter(start=start).exists()
    assert "Laser cutter safety" in page
    assert page.count("before you can book") == 1
