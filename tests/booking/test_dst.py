"""Opening hours are lab-local wall-clock times, also on daylight-saving days."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest
from rest_framework.test import APIClient

from fablab.booking.errors import BookingError
from fablab.booking.selectors import availability_for_machine, machine_week
from fablab.booking.services import booking_create
from fablab.labs.models import OpeningHours
from tests.factories import LabFactory, MachineFactory, UserFactory

pytestmark = pytest.mark.django_db

BXL = zoneinfo.ZoneInfo("Europe/Brussels")
UTC = dt.UTC
SPRING = dt.date(2027, 3, 28)  # clocks go from 02:00 to 03:00
AUTUMN = dt.date(2027, 10, 31)  # clocks go from 03:00 back to 02:00
NOW = dt.datetime(2027, 3, 20, 9, 0, tzinfo=BXL)


def local(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=BXL)


def test_same_wall_clock_hours_before_and_after_the_spring_change():
    machine = MachineFactory()
    member = UserFactory()
    before = booking_create(
        machine=machine,
        member=member,
        start=local(SPRING - dt.timedelta(days=1), 8),
        end=local(SPRING - dt.timedelta(days=1), 9),
        now=NOW,
    )
    after = booking_create(
        machine=machine, member=member, start=local(SPRING, 8), end=local(SPRING, 9), now=NOW
    )
    before.refresh_from_db()
    after.refresh_from_db()
    assert before.start.astimezone(UTC).hour == 7  # CET, UTC+1
    assert after.start.astimezone(UTC).hour == 6  # CEST, UTC+2
    # 19:30-20:00 local is inside the 08:00-20:00 opening on both days.
    booking_create(
        machine=machine, member=member, start=local(SPRING, 19, 30), end=local(SPRING, 20), now=NOW
    )
    with pytest.raises(BookingError) as info:
        booking_create(
            machine=machine, member=member, start=local(SPRING, 19, 30), end=local(SPRING, 20, 30), now=NOW
        )
    assert info.value.code == "outside_opening_hours"


def test_a_night_opening_across_the_change_lasts_one_hour_less():
    lab = LabFactory(hours=False)
    OpeningHours.objects.create(lab=lab, weekday=SPRING.weekday(), opens=dt.time(1), closes=dt.time(5))
    machine = MachineFactory(lab=lab, slot_minutes=60, min_duration_minutes=60, max_duration_minutes=240)
    ((opens, closes),) = lab.opening_intervals(SPRING)
    assert closes - opens == dt.timedelta(hours=3)
    free = availability_for_machine(machine=machine, start=local(SPRING, 0), end=local(SPRING, 23), now=NOW)
    assert free == [(opens, closes)]
    # Three real hours, from 01:00 to 05:00 on the clock, is one booking.
    booking = booking_create(machine=machine, member=UserFactory(), start=opens, end=closes, now=NOW)
    assert booking.end - booking.start == dt.timedelta(hours=3)


def test_the_autumn_change_gives_an_extra_hour_and_slots_stay_on_the_clock():
    lab = LabFactory(hours=False)
    OpeningHours.objects.create(lab=lab, weekday=AUTUMN.weekday(), opens=dt.time(1), closes=dt.time(5))
    machine = MachineFactory(lab=lab, slot_minutes=60, min_duration_minutes=60, max_days_ahead=400)
    ((opens, closes),) = lab.opening_intervals(AUTUMN)
    assert closes - opens == dt.timedelta(hours=5)
    monday = AUTUMN - dt.timedelta(days=AUTUMN.weekday())
    days = machine_week(machine=machine, monday=monday, now=NOW)
    sunday = days[6]
    assert sunday.date == AUTUMN
    assert all(s.state == "free" for s in sunday.slots)
    assert sum(((s.end - s.start) for s in sunday.slots), dt.timedelta()) == dt.timedelta(hours=5)


def test_granularity_is_checked_on_the_lab_clock():
    lab = LabFactory()
    machine = MachineFactory(lab=lab, slot_minutes=60, min_duration_minutes=60)
    # 10:00 Brussels is 09:00 UTC in winter: aligned on the lab's clock.
    start = dt.datetime(2027, 3, 23, 9, 0, tzinfo=UTC)
    booking = booking_create(
        machine=machine, member=UserFactory(), start=start, end=start + dt.timedelta(hours=1), now=NOW
    )
    assert booking.pk


def test_durations_are_real_time_even_when_given_in_the_lab_zone():
    lab = LabFactory(hours=False)
    OpeningHours.objects.create(lab=lab, weekday=SPRING.weekday(), opens=dt.time(1), closes=dt.time(6))
    machine = MachineFactory(lab=lab, slot_minutes=60, min_duration_minutes=60, max_duration_minutes=180)
    # 01:00 to 05:00 on the clock is three real hours on the spring day: within the maximum.
    booking = booking_create(
        machine=machine, member=UserFactory(), start=local(SPRING, 1), end=local(SPRING, 5), now=NOW
    )
    assert booking.end - booking.start == dt.timedelta(hours=3)


# The availability endpoint around the next real changes: it answers with "now", so the days
# are computed from today rather than fixed.


def _next_change(month: int) -> dt.date:
    """The next last Sunday of ``month`` (when Brussels changes its clocks) at least two days away."""
    today = dt.date.today()
    for year in (today.year, today.year + 1):
        last = dt.date(year, month, 31)
        sunday = last - dt.timedelta(days=(last.weekday() - 6) % 7)
        if sunday > today + dt.timedelta(days=2):
            return sunday
    raise AssertionError("unreachable")


@pytest.mark.parametrize(
    ("month", "offsets"),
    [(3, ("+01:00", "+02:00")), (10, ("+02:00", "+01:00"))],
    ids=["spring", "autumn"],
)
def test_the_availability_endpoint_keeps_wall_clock_hours_across_the_change(month, offsets):
    change = _next_change(month)
    lab = LabFactory()
    machine = MachineFactory(lab=lab, max_days_ahead=400)
    saturday, monday = change - dt.timedelta(days=1), change + dt.timedelta(days=1)
    # A booking on the day itself, at 10:00-11:00 on the clock.
    booking_create(machine=machine, member=UserFactory(), start=local(change, 10), end=local(change, 11))
    client = APIClient()
    client.force_authenticate(UserFactory())
    response = client.get(
        f"/api/v1/machines/{machine.pk}/availability/",
        {"from": local(saturday, 0).isoformat(), "to": local(monday, 0).isoformat()},
    )
    assert response.status_code == 200, response.json()
    before, after = offsets
    assert response.json() == [
        {"start": f"{saturday}T08:00:00{before}", "end": f"{saturday}T20:00:00{before}"},
        {"start": f"{change}T08:00:00{after}", "end": f"{change}T10:00:00{after}"},
        {"start": f"{change}T11:00:00{after}", "end": f"{change}T20:00:00{after}"},
    ]
    # And what the endpoint calls free is bookable: the last half hour of the day.
    booking_create(machine=machine, member=UserFactory(), start=local(change, 19, 30), end=local(change, 20))
