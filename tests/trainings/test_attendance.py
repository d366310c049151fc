"""Attendance grants the certification (with the training's validity) that lets the member book."""

from __future__ import annotations

import datetime as dt

import pytest

from fablab.booking import services as booking_services
from fablab.booking.errors import BookingError
from fablab.members.models import Certification, CertificationAudit
from fablab.members.services import CertificationError, certification_grant
from fablab.trainings import attendance, services
from fablab.trainings.models import Trainer
from tests.factories import LabFactory, MachineFactory, TrainingFactory, UserFactory

from .helpers import day_at, scene

pytestmark = pytest.mark.django_db


def test_present_grants_a_certification_that_lets_the_member_book():
    lab, _manager, trainer, training, laser, session, now = scene(validity_days=365)
    member = UserFactory()
    services.register(session=session, member=member, now=now)
    later = session.end + dt.timedelta(days=1)
    slot = day_at(lab, 10, days=4)
    with pytest.raises(BookingError) as caught:
        booking_services.booking_create(
            machine=laser, member=member, start=slot, end=slot + dt.timedelta(hours=1), now=later
        )
    assert caught.value.code == "not_certified"
    with pytest.raises(BookingError) as caught:
        attendance.mark(
            session=session,
            member=member,
            present=True,
            by=trainer,
            now=session.start - dt.timedelta(hours=1),
        )
    assert caught.value.code == "session_not_started"
    registration = attendance.mark(
        session=session, member=member, present=True, by=trainer, now=session.start
    )
    cert = Certification.objects.get(member=member, training=training)
    assert registration.certification == cert
    assert cert.expires_at == session.end + dt.timedelta(days=365)
    assert CertificationAudit.objects.filter(certification=cert, actor=trainer).exists()
    booking = booking_services.booking_create(
        machine=laser, member=member, start=slot, end=slot + dt.timedelta(hours=1), now=later
    )
    assert booking.pk


def test_marking_twice_grants_once_and_absent_revokes():
    _lab, _manager, trainer, _training, _laser, session, now = scene()
    member = UserFactory()
    services.register(session=session, member=member, now=now)
    attendance.mark(session=session, member=member, present=True, by=trainer, now=session.start)
    attendance.mark(session=session, member=member, present=True, by=trainer, now=session.start)
    assert Certification.objects.filter(member=member).count() == 1
    attendance.mark(session=session, member=member, present=False, by=trainer, now=session.start)
    assert Certification.objects.get(member=member).revoked_at is not None


def test_only_the_labs_trainers_and_managers_mark():
    _lab, _manager, _trainer, _training, _laser, session, now = scene()
    member = UserFactory()
    services.register(session=session, member=member, now=now)
    other_trainer = UserFactory()
    Trainer.objects.create(lab=LabFactory(), member=other_trainer)
    with pytest.raises(BookingError) as caught:
        attendance.mark(session=session, member=member, present=True, by=other_trainer, now=session.start)
    assert caught.value.code == "forbidden"
    assert not Certification.objects.filter(member=member).exists()


def test_a_lab_a_manager_cannot_grant_lab_bs_training():
    lab_a, lab_b = LabFactory(), LabFactory()
    manager_a = UserFactory()
    lab_a.managers.add(manager_a)
    training_b = TrainingFactory(lab=lab_b)
    # Even when a machine of lab A names lab B's training.
    MachineFactory(lab=lab_a, required_training=training_b)
    with pytest.raises(CertificationError) as caught:
        certification_grant(member=UserFactory(), training=training_b, by=manager_a)
    assert caught.value.code == "forbidden"
    shared = TrainingFactory(lab=None)
    MachineFactory(lab=lab_a, required_training=shared)
    assert certification_grant(member=UserFactory(), training=shared, by=manager_a).pk


def test_the_certifications_page_refuses_lab_bs_training(client):
    lab_a, lab_b = LabFactory(), LabFactory()
    manager_a = UserFactory()
    lab_a.managers.add(manager_a)
    training_b = TrainingFactory(lab=lab_b)
    MachineFactory(lab=lab_a, required_training=training_b)
    member = UserFactory()
    client.force_login(manager_a)
    response = client.post(
        "/manage/certifications/", {"member": member.username, "training": training_b.pk, "reason": "x"}
    )
    assert response.status_code == 200  # the form again, with the training refused
    assert not Certification.objects.filter(member=member).exists()
