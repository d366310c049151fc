"""A member asking again for a time they already hold is told so, not "someone else has booked it".

Both guards give the member's own code: the overlap check, and (on PostgreSQL)
the exclusion constraint that stops a concurrent insert.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
import zoneinfo
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import pytest
from django.db import connection, connections
from django.urls import reverse
from django.utils import timezone

from fablab.booking import services
from fablab.booking.errors import BookingError
from fablab.booking.models import Booking
from tests.factories import BookingFactory, MachineFactory, UserFactory

BRUSSELS = zoneinfo.ZoneInfo("Europe/Brussels")


def at(hour: int, minute: int = 0, days: int = 2) -> dt.datetime:
    day = timezone.localdate(timezone=BRUSSELS) + dt.timedelta(days=days)
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=BRUSSELS)


def code_of(**kwargs) -> str:
    with pytest.raises(BookingError) as refused:
        services.booking_create(**kwargs)
    return refused.value.code


@pytest.mark.django_db
def test_the_members_own_overlapping_booking_is_already_booked_by_you():
    machine = MachineFactory()
    member = UserFactory()
    services.booking_create(machine=machine, member=member, start=at(10), end=at(11))
    assert code_of(machine=machine, member=member, start=at(10), end=at(11)) == "already_booked_by_you"
    # Overlapping only in part, too.
    assert code_of(machine=machine, member=member, start=at(10, 30), end=at(12)) == "already_booked_by_you"
    # Someone else is told the time is taken.
    assert code_of(machine=machine, member=UserFactory(), start=at(10), end=at(11)) == "slot_taken"


@pytest.mark.django_db
def test_the_members_own_pending_booking_counts_and_a_cancelled_one_does_not():
    machine = MachineFactory(approval_required=True)
    member = UserFactory()
    pending = services.booking_create(machine=machine, member=member, start=at(10), end=at(11))
    assert code_of(machine=machine, member=member, start=at(10), end=at(11)) == "already_booked_by_you"
    services.booking_cancel(booking=pending, by=member)
    assert services.booking_create(machine=machine, member=member, start=at(10), end=at(11)).is_active


@pytest.mark.django_db
def test_the_booking_page_tells_the_member_they_already_have_this_time(client):
    machine = MachineFactory()
    member = UserFactory()
    client.force_login(member)
    url = reverse("booking:book", args=[machine.pk])
    form = {"start": at(10).isoformat(), "duration": "60"}
    assert client.post(url, form).status_code == 302
    response = client.post(f"{url}?start={quote(at(10).isoformat())}", form)
    html = response.content.decode()
    assert "You already have a booking for this time." in html
    assert "Someone else has already booked this time." not in html
    assert Booking.objects.count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_when_the_exclusion_constraint_stops_the_members_twin_request_it_is_already_booked_by_you(
    monkeypatch,
):
    """Two requests of one member pass the checks together; the constraint stops the second insert."""
    if connection.vendor != "postgresql":
        pytest.skip("the exclusion constraint is PostgreSQL's")
    machine = MachineFactory()
    member = UserFactory()
    # Without the member lock both requests reach the insert; the barrier makes sure they do.
    monkeypatch.setattr(services, "lock_member", False)
    barrier = threading.Barrier(2, timeout=30)

    def race_point() -> None:
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait()

    monkeypatch.setattr(services, "race_point", race_point)

    def attempt(_n: int) -> str:
        try:
            services.booking_create(machine=machine, member=member, start=at(10), end=at(11))
            return "won"
        except BookingError as exc:
            return exc.code
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = sorted(pool.map(attempt, range(2)))
    assert results == ["already_booked_by_you", "won"]
    assert Booking.objects.filter(machine=machine).count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_when_the_exclusion_constraint_stops_someone_else_it_stays_slot_taken(monkeypatch):
    if connection.vendor != "postgresql":
        pytest.skip("the exclusion constraint is PostgreSQL's")
    machine = MachineFactory()
    members = [UserFactory(), UserFactory()]
    barrier = threading.Barrier(2, timeout=30)

    def race_point() -> None:
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait()

    monkeypatch.setattr(services, "race_point", race_point)

    def attempt(member) -> str:
        try:
            services.booking_create(machine=machine, member=member, start=at(10), end=at(11))
            return "won"
        except BookingError as exc:
            return exc.code
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = sorted(pool.map(attempt, members))
    assert results == ["slot_taken", "won"]


@pytest.mark.django_db
def test_a_booking_made_by_the_admin_for_the_member_counts_as_their_own():
    machine = MachineFactory()
    member = UserFactory()
    BookingFactory(machine=machine, member=member, start=at(14), end=at(15))
    assert code_of(machine=machine, member=member, start=at(14), end=at(15)) == "already_booked_by_you"
