"""A closure of the lab refuses a session's holds, even outside opening hours."""

from __future__ import annotations

import pytest

from fablab.booking.errors import BookingError
from fablab.labs.models import Closure
from fablab.trainings import services

from .helpers import day_at, scene

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(("hours", "outside"), [((10, 12), False), ((20, 22), True)])
def test_no_session_holds_a_machine_on_a_day_the_lab_is_closed(hours, outside):
    lab, manager, _trainer, training, laser, session, now = scene()
    closed = day_at(lab, hours[0], days=3)
    Closure.objects.create(lab=lab, starts_on=closed.date(), ends_on=closed.date(), reason="Holiday")
    with pytest.raises(BookingError) as caught:
        services.session_create(
            training=training,
            lab=lab,
            machines=[laser],
            start=closed,
            end=day_at(lab, hours[1], days=3),
            seats=1,
            by=manager,
            outside_opening_hours=outside,
            now=now,
        )
    assert caught.value.code == "lab_closed"
    assert session.__class__.objects.count() == 1


def test_no_session_without_machines_on_a_day_the_lab_is_closed():
    """A theory session holds no machine, but the lab is shut that day all the same; moving one there is refused too."""
    lab, manager, _trainer, training, _laser, session, now = scene()
    closed = day_at(lab, 10, days=3)
    Closure.objects.create(lab=lab, starts_on=closed.date(), ends_on=closed.date(), reason="Holiday")
    with pytest.raises(BookingError) as caught:
        services.session_create(
            training=training,
            lab=lab,
            machines=[],
            start=closed,
            end=day_at(lab, 12, days=3),
            seats=1,
            by=manager,
            now=now,
        )
    assert caught.value.code == "lab_closed"
    with pytest.raises(BookingError) as caught:
        services.session_update(
            session=session, by=manager, now=now, machines=[], start=closed, end=day_at(lab, 12, days=3)
        )
    assert caught.value.code == "lab_closed"
    session.refresh_from_db()
    assert session.start != closed
