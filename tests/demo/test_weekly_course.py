"""The demo's weekly course (fablab.demo.open_doors.weekly_course): eight Tuesdays, none while the lab is closed."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest

from fablab.booking.models import Booking
from fablab.demo import open_doors
from fablab.labs.models import Closure
from tests.factories import LabFactory, MachineFactory, UserFactory

pytestmark = pytest.mark.django_db

BXL = zoneinfo.ZoneInfo("Europe/Brussels")


def test_the_course_plans_eight_tuesdays_and_skips_the_winter_closure():
    lab = LabFactory()
    Closure.objects.create(lab=lab, starts_on=dt.date(2026, 12, 24), ends_on=dt.date(2027, 1, 1))
    manager = UserFactory()
    lab.managers.add(manager)
    printers = {slug: MachineFactory(lab=lab, slug=slug) for slug in open_doors.COURSE_MACHINES}
    now = dt.datetime(2026, 11, 30, 9, 0, tzinfo=BXL)  # a Monday: the first session is the next day

    course = open_doors.weekly_course(printers, manager, None, now)

    days = sorted(
        {b.start.astimezone(BXL).date() for b in course.bookings.filter(kind=Booking.Kind.WORKSHOP)}
    )
    tuesdays = [dt.date(2026, 12, 1) + dt.timedelta(weeks=n) for n in range(8)]
    assert days == [d for d in tuesdays if d != dt.date(2026, 12, 29)]
    assert course.bookings.count() == 7 * len(printers)
