"""A machine bookable around the clock (a printer running overnight) skips the opening hours, not closures."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest

from fablab.booking.errors import BookingError
from fablab.booking.models import Booking
from fablab.booking.selectors import availability_for_machine, machine_week
from fablab.booking.services import booking_create
from fablab.labs.models import Closure
from tests.factories import LabFactory, MachineFactory, UserFactory

pytestmark = pytest.mark.django_db

BXL = zoneinfo.ZoneInfo("Europe/Brussels")
NOW = dt.datetime(2027, 3, 22, 9, 0, tzinfo=BXL)  # a Monday; the lab opens 08:00–20:00


def at(day: int, hour: int, minute: int = 0, month: int = 3) -> dt.datetime:
    return dt.datetime(2027, month, day, hour, minute, tzinfo=BXL)


@pytest.fixture
def lab():
    return LabFactory()


def book(machine, start, end):
    return booking_create(machine=machine, member=UserFactory(), start=start, end=end, now=NOW)


def test_a_printer_is_booked_overnight_and_across_midnight(lab):
    printer = MachineFactory(lab=lab, bookable_around_the_clock=True)
    assert book(printer, at(23, 2), at(23, 5)).status == Booking.Status.CONFIRMED
    assert book(printer, at(23, 22), at(24, 1)).status == Booking.Status.CONFIRMED
    laser = MachineFactory(lab=lab)
    with pytest.raises(BookingError) as info:
        book(laser, at(23, 22), at(23, 23))
    assert info.value.code == "outside_opening_hours"


def test_closures_still_apply_around_the_clock(lab):
    printer = MachineFactory(lab=lab, bookable_around_the_clock=True)
    Closure.objects.create(lab=lab, starts_on=dt.date(2027, 3, 25), ends_on=dt.date(2027, 3, 25))
    for start, end in [(at(25, 3), at(25, 4)), (at(24, 23), at(25, 1)), (at(25, 23), at(26, 1))]:
        with pytest.raises(BookingError) as info:
            book(printer, start, end)
        assert info.value.code == "lab_closed"
    # Ending exactly at the closure's first midnight does not touch it.
    assert book(printer, at(24, 22), at(25, 0)).status == Booking.Status.CONFIRMED


def test_free_time_and_week_slots_span_the_whole_day(lab):
    printer = MachineFactory(lab=lab, bookable_around_the_clock=True, max_days_ahead=3)
    free = availability_for_machine(machine=printer, start=at(23, 0), end=at(25, 0), now=NOW)
    assert free == [(at(23, 0).astimezone(dt.UTC), at(25, 0).astimezone(dt.UTC))]  # one stretch
    week = machine_week(machine=printer, monday=dt.date(2027, 3, 22), now=NOW)
    assert len(week[1].slots) == 48  # Tuesday: 24 h of 30-minute slots
    assert week[1].slots[0].start == at(23, 0)
    # The DST Sunday (28 March 2027) has 23 hours.
    assert len(week[6].slots) == 46
