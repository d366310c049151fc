"""Scheduling holds the machines; registering fills seats then the waitlist; cancelling moves it up."""

from __future__ import annotations

import datetime as dt

import pytest

from fablab.booking.errors import BookingError
from fablab.booking.models import Booking
from fablab.trainings import services
from fablab.trainings.models import Registration
from tests.factories import BookingFactory, CertificationFactory, LabFactory, TrainingFactory, UserFactory

from .helpers import day_at, scene

pytestmark = pytest.mark.django_db


def test_a_session_holds_each_machine_with_a_training_booking():
    _lab, _manager, _trainer, _training, laser, session, _now = scene()
    hold = Booking.objects.get(machine=laser)
    assert hold.kind == Booking.Kind.TRAINING and hold.member is None
    assert (hold.start, hold.end) == (session.start, session.end)
    assert list(session.holds.all()) == [hold]


def test_a_clash_names_the_machine_and_nothing_is_written():
    lab, _manager, trainer, training, laser, session, now = scene()
    BookingFactory(machine=laser, start=day_at(lab, 15), end=day_at(lab, 16))
    with pytest.raises(BookingError) as caught:
        services.session_create(
            training=training,
            lab=lab,
            machines=[laser],
            start=day_at(lab, 14),
            end=day_at(lab, 17),
            seats=3,
            by=trainer,
            now=now,
        )
    assert caught.value.code == "machine_busy"
    assert laser.name in caught.value.detail
    assert session.__class__.objects.count() == 1


def test_opening_hours_hold_unless_a_manager_ticks_outside():
    lab, manager, trainer, training, laser, _session, now = scene()
    late = dict(
        training=training, lab=lab, machines=[laser], start=day_at(lab, 20), end=day_at(lab, 22), seats=1
    )
    with pytest.raises(BookingError) as caught:
        services.session_create(by=trainer, now=now, **late)
    assert caught.value.code == "outside_opening_hours"
    with pytest.raises(BookingError) as caught:
        services.session_create(by=trainer, now=now, outside_opening_hours=True, **late)
    assert caught.value.code == "forbidden"
    assert services.session_create(by=manager, now=now, outside_opening_hours=True, **late).pk


def test_another_labs_training_cannot_be_scheduled():
    lab, manager, _trainer, _training, _laser, _session, now = scene()
    other = TrainingFactory(lab=LabFactory())
    with pytest.raises(BookingError) as caught:
        services.session_create(
            training=other,
            lab=lab,
            machines=[],
            start=day_at(lab, 14),
            end=day_at(lab, 15),
            seats=1,
            by=manager,
            now=now,
        )
    assert caught.value.code == "training_not_for_lab"


def test_a_member_without_a_role_cannot_schedule():
    lab, _manager, _trainer, training, _laser, _session, now = scene()
    with pytest.raises(BookingError) as caught:
        services.session_create(
            training=training,
            lab=lab,
            machines=[],
            start=day_at(lab, 14),
            end=day_at(lab, 15),
            seats=1,
            by=UserFactory(),
            now=now,
        )
    assert caught.value.code == "forbidden"


def test_full_session_waitlists_and_a_cancellation_moves_the_first_up(
    mailoutbox, django_capture_on_commit_callbacks
):
    _lab, _manager, _trainer, _training, _laser, session, now = scene(seats=1)
    first, second, third = UserFactory(), UserFactory(), UserFactory()
    seat = services.register(session=session, member=first, now=now)
    waiting = services.register(session=session, member=second, now=now + dt.timedelta(minutes=1))
    later = services.register(session=session, member=third, now=now + dt.timedelta(minutes=2))
    assert [seat.status, waiting.status, later.status] == ["registered", "waitlisted", "waitlisted"]
    assert services.waitlist_position(later) == 2
    mailoutbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        services.cancel_registration(registration=seat, by=first, now=now + dt.timedelta(hours=1))
    waiting.refresh_from_db()
    later.refresh_from_db()
    assert waiting.status == Registration.Status.REGISTERED
    assert later.status == Registration.Status.WAITLISTED
    assert services.waitlist_position(later) == 1
    assert [m.to for m in mailoutbox] == [[second.email]]


def test_registering_twice_is_refused():
    _lab, _manager, _trainer, _training, _laser, session, now = scene()
    member = UserFactory()
    services.register(session=session, member=member, now=now)
    with pytest.raises(BookingError) as caught:
        services.register(session=session, member=member, now=now)
    assert caught.value.code == "already_registered"


def test_prerequisites_must_be_held():
    _lab, _manager, trainer, _training, _laser, session, now = scene()
    safety = TrainingFactory(name="Laser safety")
    services.session_update(session=session, by=trainer, now=now, prerequisites=[safety])
    member = UserFactory()
    with pytest.raises(BookingError) as caught:
        services.register(session=session, member=member, now=now)
    assert caught.value.code == "prerequisite_missing"
    assert "Laser safety" in caught.value.detail
    CertificationFactory(member=member, training=safety)
    assert services.register(session=session, member=member, now=now).status == "registered"


def test_moving_a_session_replaces_its_holds():
    lab, _manager, trainer, _training, _laser, session, now = scene()
    old = session.holds.get()
    services.session_update(session=session, by=trainer, now=now, start=day_at(lab, 14), end=day_at(lab, 16))
    old.refresh_from_db()
    assert old.status == Booking.Status.CANCELLED
    new = session.holds.get()
    assert new.status == Booking.Status.CONFIRMED and new.start == day_at(lab, 14)


def test_cancelling_a_session_releases_its_machines_and_tells_the_members(
    mailoutbox, django_capture_on_commit_callbacks
):
    _lab, manager, _trainer, _training, _laser, session, now = scene()
    member = UserFactory()
    services.register(session=session, member=member, now=now)
    mailoutbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        services.session_cancel(session=session, by=manager, now=now)
    assert session.holds.get().status == Booking.Status.CANCELLED
    assert [m.to for m in mailoutbox] == [[member.email]]
    with pytest.raises(BookingError) as caught:
        services.register(session=session, member=UserFactory(), now=now)
    assert caught.value.code == "session_cancelled"


def test_seats_cannot_drop_below_the_registered():
    _lab, _manager, trainer, _training, _laser, session, now = scene(seats=2)
    services.register(session=session, member=UserFactory(), now=now)
    services.register(session=session, member=UserFactory(), now=now)
    with pytest.raises(BookingError) as caught:
        services.session_update(session=session, by=trainer, now=now, seats=1)
    assert caught.value.code == "seats_below_registered"
