"""Every booking write tells the machine side after its commit (``signals.booking_changed``).

The interlock and the board follow it: a manager cancelling a training that holds a machine now
locks it at once, not at the scheduler's next pass.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest
from django.utils import timezone

from fablab.booking import services
from fablab.booking.models import Booking
from fablab.booking.signals import booking_changed
from tests.factories import LabFactory, MachineFactory, UserFactory

pytestmark = pytest.mark.django_db

BRUSSELS = zoneinfo.ZoneInfo("Europe/Brussels")


def at(days: int, hour: int) -> dt.datetime:
    day = timezone.localdate(timezone=BRUSSELS) + dt.timedelta(days=days)
    return dt.datetime.combine(day, dt.time(hour), tzinfo=BRUSSELS)


@pytest.fixture
def heard():
    changes: list[tuple[int, int, str]] = []

    def listen(sender, *, booking_id, machine_id, change, **kwargs):
        changes.append((booking_id, machine_id, change))

    booking_changed.connect(listen, dispatch_uid="test-listener")
    yield changes
    booking_changed.disconnect(dispatch_uid="test-listener")


def test_create_approve_decline_and_cancel_each_send_their_change_after_the_commit(
    heard, django_capture_on_commit_callbacks
):
    lab = LabFactory()
    manager = UserFactory()
    lab.managers.add(manager)
    machine = MachineFactory(lab=lab, approval_required=True)
    member = UserFactory()
    with django_capture_on_commit_callbacks(execute=False) as pending:
        first = services.booking_create(machine=machine, member=member, start=at(3, 10), end=at(3, 11))
    assert heard == []  # nothing before the commit
    for callback in pending:
        callback()
    with django_capture_on_commit_callbacks(execute=True):
        second = services.booking_create(machine=machine, member=member, start=at(3, 12), end=at(3, 13))
        services.booking_approve(booking=first, by=manager)
        services.booking_decline(booking=second, by=manager)
        services.booking_cancel(booking=first, by=member)
    m = machine.pk
    assert heard == [
        (first.pk, m, "created"),
        (second.pk, m, "created"),
        (first.pk, m, "approved"),
        (second.pk, m, "cancelled"),
        (first.pk, m, "cancelled"),
    ]
    assert Booking.objects.get(pk=first.pk).status == Booking.Status.CANCELLED
