"""A machine's usage during a workshop occurrence belongs to the workshop, not to a member nor a walk-in."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest
import time_machine

from devices.models import UsageSession
from fablab.booking import series
from fablab.booking.models import Booking
from tests.devices.conftest import make_machine
from tests.devices.test_attribution import run
from tests.factories import LabFactory, UserFactory

pytestmark = pytest.mark.django_db

BXL = zoneinfo.ZoneInfo("Europe/Brussels")
TUESDAY = dt.date(2026, 3, 3)


def local(hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(TUESDAY, dt.time(hour, minute), tzinfo=BXL)


def test_a_session_during_a_workshop_occurrence_is_the_workshops():
    lab = LabFactory(slug="bxl")
    machine = make_machine(lab, slug="printer")
    manager = UserFactory()
    lab.managers.add(manager)
    recurrence = series.Recurrence(
        series.weekly_rule([1]), TUESDAY, dt.time(18), dt.timedelta(hours=3), until=TUESDAY
    )
    now = local(9)
    the_plan = series.plan(lab=lab, machines=[machine], recurrence=recurrence, title="Print club", now=now)
    (occurrence,) = series.create_workshop(the_plan, {}, manager, now=now).bookings
    with time_machine.travel(local(21, 30), tick=False):
        run(machine, local(18, 15), local(19, 15))  # during the occurrence: no check-in needed
        run(machine, local(21, 5), local(21, 20), job="j2")  # after it: a walk-in
    during, after = UsageSession.objects.filter(machine=machine).order_by("started_at")
    assert (during.booking_id, during.walk_in) == (occurrence.pk, False)
    assert (after.booking_id, after.walk_in) == (None, True)
    occurrence.refresh_from_db()
    assert occurrence.kind == Booking.Kind.WORKSHOP and occurrence.member is None
    assert occurrence.used_minutes == 60.0
    stats = series.workshop_stats(lab, local(0), local(23))
    assert (stats["sessions"], stats["booked_hours"], stats["used_hours"]) == (1, 3.0, 1.0)
