"""Every booking rule of the service layer, one refusal code each."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from decimal import Decimal

import pytest

from fablab.booking.errors import RULES, BookingError
from fablab.booking.models import Booking
from fablab.booking.services import booking_approve, booking_cancel, booking_create, booking_decline
from fablab.labs.models import Closure
from tests.factories import (
    BookingFactory,
    CertificationFactory,
    LabFactory,
    MachineFactory,
    MaintenanceWindowFactory,
    QuotaPolicyFactory,
    TrainingFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

BXL = zoneinfo.ZoneInfo("Europe/Brussels")
NOW = dt.datetime(2027, 3, 22, 9, 0, tzinfo=BXL)  # a Monday


def at(day: int, hour: int, minute: int = 0, month: int = 3) -> dt.datetime:
    return dt.datetime(2027, month, day, hour, minute, tzinfo=BXL)


def book(machine, member, start, end, **kw):
    return booking_create(machine=machine, member=member, start=start, end=end, now=kw.pop("now", NOW), **kw)


def refused(code, machine, member, start, end, **kw):
    with pytest.raises(BookingError) as info:
        book(machine, member, start, end, **kw)
    assert info.value.code == code
    assert info.value.detail  # a translated, human-readable message
    return info.value


@pytest.fixture
def machine():
    return MachineFactory()


@pytest.fixture
def member():
    return UserFactory()


def test_a_valid_booking_is_confirmed(machine, member):
    booking = book(machine, member, at(23, 10), at(23, 12), purpose="  Bracket  ")
    assert booking.status == Booking.Status.CONFIRMED
    assert booking.purpose == "Bracket"
    assert booking.blocked_until == booking.end


def test_end_before_start_is_invalid_range(machine, member):
    refused("invalid_range", machine, member, at(23, 12), at(23, 10))
    refused("invalid_range", machine, member, at(23, 12), at(23, 12))


def test_unbookable_machine(member):
    refused("not_bookable", MachineFactory(bookable=False), member, at(23, 10), at(23, 11))


def test_certification_is_required_valid_and_unrevoked(member):
    training = TrainingFactory()
    machine = MachineFactory(required_training=training)
    refused("not_certified", machine, member, at(23, 10), at(23, 11))
    cert = CertificationFactory(member=member, training=training, expires_at=at(23, 10, 30))
    # Expires during the booking: refused as expired, not as missing.
    refused("certification_expired", machine, member, at(23, 10), at(23, 11))
    cert.expires_at = at(30, 10)
    cert.save()
    assert book(machine, member, at(23, 10), at(23, 11)).pk
    cert.revoked_at = NOW
    cert.save()
    refused("not_certified", machine, member, at(24, 10), at(24, 11))


def test_past_notice_and_horizon(member):
    machine = MachineFactory(min_notice_minutes=120, max_days_ahead=7)
    refused("in_past", machine, member, at(22, 8), at(22, 9))
    refused("too_soon", machine, member, at(22, 10), at(22, 11))
    assert book(machine, member, at(22, 11), at(22, 12)).pk
    assert book(machine, member, at(29, 10), at(29, 11)).pk  # the 7th day ahead is still fine
    refused("too_far_ahead", machine, member, at(30, 10), at(30, 11))


def test_granularity_and_durations(member):
    machine = MachineFactory(slot_minutes=30, min_duration_minutes=60, max_duration_minutes=120)
    refused("bad_granularity", machine, member, at(23, 10, 15), at(23, 11, 15))
    refused("bad_granularity", machine, member, at(23, 10), at(23, 11, 10))
    refused("too_short", machine, member, at(23, 10), at(23, 10, 30))
    refused("too_long", machine, member, at(23, 10), at(23, 12, 30))
    assert book(machine, member, at(23, 10), at(23, 12)).pk


def test_opening_hours_and_closures(machine, member):
    refused("outside_opening_hours", machine, member, at(23, 7), at(23, 9))
    refused("outside_opening_hours", machine, member, at(23, 19, 30), at(23, 20, 30))
    Closure.objects.create(lab=machine.lab, starts_on=dt.date(2027, 3, 25), ends_on=dt.date(2027, 3, 26))
    refused("lab_closed", machine, member, at(25, 10), at(25, 11))
    refused("lab_closed", machine, member, at(26, 10), at(26, 11))
    assert book(machine, member, at(27, 10), at(27, 11)).pk


def test_a_lab_with_no_hours_that_day():
    lab = LabFactory(hours=False)
    machine = MachineFactory(lab=lab)
    refused("outside_opening_hours", machine, UserFactory(), at(23, 10), at(23, 11))


def test_maintenance_window(machine, member):
    MaintenanceWindowFactory(machine=machine, start=at(23, 11), end=at(23, 13))
    refused("maintenance", machine, member, at(23, 12), at(23, 14))
    refused("maintenance", machine, member, at(23, 10), at(23, 11, 30))
    assert book(machine, member, at(23, 13), at(23, 14)).pk  # touching is fine


def test_overlap_and_buffer(member):
    machine = MachineFactory(buffer_minutes=30)
    book(machine, member, at(23, 10), at(23, 12))
    other = UserFactory()
    refused("slot_taken", machine, other, at(23, 11), at(23, 13))
    refused("slot_taken", machine, other, at(23, 12), at(23, 13))  # inside the buffer
    refused("slot_taken", machine, other, at(23, 9), at(23, 10))  # its buffer reaches ours
    assert book(machine, other, at(23, 12, 30), at(23, 13, 30)).pk
    assert book(machine, other, at(23, 8), at(23, 9, 30)).pk


def test_cancelled_and_no_show_bookings_free_the_slot(machine, member):
    BookingFactory(machine=machine, start=at(23, 10), end=at(23, 12), status=Booking.Status.CANCELLED)
    BookingFactory(machine=machine, start=at(23, 12), end=at(23, 14), status=Booking.Status.NO_SHOW)
    assert book(machine, member, at(23, 10), at(23, 14)).pk


@pytest.mark.parametrize(
    "status", [Booking.Status.PENDING, Booking.Status.CHECKED_IN, Booking.Status.COMPLETED]
)
def test_every_active_state_holds_the_slot(machine, member, status):
    BookingFactory(machine=machine, start=at(23, 10), end=at(23, 12), status=status)
    refused("slot_taken", machine, member, at(23, 11), at(23, 12))


def test_weekly_quota_counts_lab_local_weeks(member):
    machine = MachineFactory()
    QuotaPolicyFactory(machine_type=machine.machine_type, max_hours_per_week=Decimal("3"))
    book(machine, member, at(23, 10), at(23, 12))
    refused("quota_exceeded", machine, member, at(24, 10), at(24, 11, 30))
    assert book(machine, member, at(24, 10), at(24, 11)).pk  # exactly 3 hours
    # Monday 00:00 local starts a new week.
    assert book(machine, member, at(29, 10), at(29, 13)).pk
    # Another type of machine is not counted.
    assert book(MachineFactory(machine_type__slug="cnc", lab=machine.lab), member, at(25, 10), at(25, 14)).pk


def test_cancelled_hours_do_not_count(member):
    machine = MachineFactory()
    QuotaPolicyFactory(machine_type=machine.machine_type, max_hours_per_week=Decimal("2"))
    booking = book(machine, member, at(23, 10), at(23, 12))
    booking_cancel(booking=booking, by=member, now=NOW)
    assert book(machine, member, at(24, 10), at(24, 12)).pk


def test_cap_on_upcoming_bookings(member):
    machine = MachineFactory()
    QuotaPolicyFactory(machine_type=machine.machine_type, max_future_bookings=2)
    book(machine, member, at(23, 10), at(23, 11))
    book(machine, member, at(24, 10), at(24, 11))
    refused("too_many_bookings", machine, member, at(25, 10), at(25, 11))


def test_lab_policy_replaces_the_general_one(member):
    machine = MachineFactory()
    QuotaPolicyFactory(machine_type=machine.machine_type, max_hours_per_week=Decimal("1"))
    QuotaPolicyFactory(machine_type=machine.machine_type, lab=machine.lab, max_hours_per_week=Decimal("4"))
    assert book(machine, member, at(23, 10), at(23, 14)).pk


def test_approval_flow(member):
    manager = UserFactory()
    machine = MachineFactory(approval_required=True)
    machine.lab.managers.add(manager)
    booking = book(machine, member, at(23, 10), at(23, 11))
    assert booking.status == Booking.Status.PENDING
    # A pending booking already holds the slot.
    refused("slot_taken", machine, UserFactory(), at(23, 10), at(23, 11))
    with pytest.raises(BookingError) as info:
        booking_approve(booking=booking, by=member)
    assert info.value.code == "forbidden"
    assert booking_approve(booking=booking, by=manager).status == Booking.Status.CONFIRMED
    with pytest.raises(BookingError) as info:
        booking_decline(booking=booking, by=manager)
    assert info.value.code == "not_pending"


def test_declining_frees_the_slot(member):
    manager = UserFactory()
    machine = MachineFactory(approval_required=True)
    machine.lab.managers.add(manager)
    booking = book(machine, member, at(23, 10), at(23, 11))
    declined = booking_decline(booking=booking, by=manager)
    assert declined.status == Booking.Status.CANCELLED
    assert declined.cancel_reason == Booking.CancelReason.DECLINED
    assert book(machine, UserFactory(), at(23, 10), at(23, 11)).pk


def test_cancel_rules(machine, member):
    booking = book(machine, member, at(23, 10), at(23, 11))
    stranger = UserFactory()
    with pytest.raises(BookingError) as info:
        booking_cancel(booking=booking, by=stranger, now=NOW)
    assert info.value.code == "forbidden"
    # After the start a member can no longer cancel; a manager still can.
    with pytest.raises(BookingError) as info:
        booking_cancel(booking=booking, by=member, now=at(23, 10, 5))
    assert info.value.code == "not_cancellable"
    manager = UserFactory()
    machine.lab.managers.add(manager)
    cancelled = booking_cancel(booking=booking, by=manager, now=at(23, 10, 5))
    assert (cancelled.status, cancelled.cancelled_by, cancelled.cancel_reason) == (
        "cancelled",
        manager,
        "manager",
    )
    with pytest.raises(BookingError) as info:
        booking_cancel(booking=booking, by=manager, now=at(23, 10, 6))
    assert info.value.code == "not_cancellable"


def test_naive_times_are_a_programming_error(machine, member):
    with pytest.raises(ValueError):
        book(machine, member, dt.datetime(2027, 3, 23, 10), dt.datetime(2027, 3, 23, 11))


def test_every_code_has_a_status_and_message():
    for code, (status, message) in RULES.items():
        assert 400 <= status < 500, code
        assert str(message), code


@pytest.mark.parametrize(
    ("start", "end", "code"),
    [
        (dt.datetime(1, 1, 1, 0, 0, tzinfo=BXL), dt.datetime(1, 1, 1, 1, 0, tzinfo=BXL), "in_past"),
        (at(23, 10), dt.datetime(9999, 12, 31, 23, 59, tzinfo=BXL), "too_far_ahead"),
        (
            dt.datetime(9999, 12, 31, 20, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
            dt.datetime(9999, 12, 31, 21, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
            "too_far_ahead",
        ),
        (at(23, 10), dt.datetime(1, 1, 1, 0, 0, tzinfo=BXL), "invalid_range"),
    ],
    ids=["year-1", "end-in-9999", "beyond-utc", "end-in-year-1"],
)
def test_times_at_the_ends_of_the_calendar_are_refused_not_overflowed(machine, member, start, end, code):
    # Converting these to UTC or to the lab's zone overflows: the admin once answered 500.
    refused(code, machine, member, start, end)
    assert not Booking.objects.exists()
