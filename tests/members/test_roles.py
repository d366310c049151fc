"""fablab.members.roles: who manages, who oversees, who is a network administrator."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest
from django.contrib.auth.models import AnonymousUser
from django.utils import timezone

from fablab.booking.models import Booking
from fablab.members import roles
from tests.factories import (
    BookingFactory,
    LabFactory,
    MachineFactory,
    ProgrammeFactory,
    TrainingFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db


def test_a_manager_manages_their_lab_only():
    lab_a, lab_b = LabFactory(), LabFactory()
    manager = UserFactory()
    lab_a.managers.add(manager)
    assert roles.manages_lab(manager, lab_a)
    assert roles.manages_lab(manager, lab_a.pk)
    assert not roles.manages_lab(manager, lab_b)
    assert list(roles.managed_labs(manager)) == [lab_a]
    assert roles.manages_any_lab(manager)
    assert not roles.is_network_admin(manager)


def test_a_superuser_manages_every_lab_and_a_staff_flag_means_nothing():
    lab_a, lab_b = LabFactory(), LabFactory()
    admin = UserFactory(is_superuser=True, is_staff=True)
    staff = UserFactory(is_staff=True)
    assert roles.is_network_admin(admin)
    assert set(roles.managed_labs(admin)) == {lab_a, lab_b}
    assert roles.manages_lab(admin, lab_b)
    assert not roles.is_network_admin(staff)
    assert not roles.manages_any_lab(staff)
    assert not roles.manages_lab(staff, lab_a)


def test_an_inactive_superuser_or_manager_has_no_role():
    lab = LabFactory()
    admin = UserFactory(is_superuser=True, is_active=False)
    manager = UserFactory(is_active=False)
    lab.managers.add(manager)
    ProgrammeFactory(labs=[lab], officers=[manager])
    for user in (admin, manager):
        assert not roles.is_network_admin(user)
        assert not roles.manages_lab(user, lab)
        assert not roles.manages_any_lab(user)
        assert not roles.oversees_lab(user, lab)
        assert not roles.managed_labs(user).exists()


def test_anonymous_visitors_have_no_role():
    lab = LabFactory()
    anonymous = AnonymousUser()
    assert not roles.is_network_admin(anonymous)
    assert not roles.manages_lab(anonymous, lab)
    assert not roles.manages_any_lab(anonymous)
    assert not roles.oversees_lab(anonymous, lab)
    assert not roles.overseen_labs(anonymous).exists()
    assert not roles.bookings_in_full(anonymous, Booking.objects.all()).exists()


def test_an_officer_oversees_exactly_the_labs_their_programme_funds_and_manages_none():
    funded, other_funded, unfunded = LabFactory(), LabFactory(), LabFactory()
    officer = UserFactory()
    ProgrammeFactory(labs=[funded, other_funded], officers=[officer])
    ProgrammeFactory(labs=[funded, unfunded])  # someone else's programme
    assert set(roles.overseen_labs(officer)) == {funded, other_funded}
    assert roles.overseen_labs(officer).count() == 2  # no duplicate for a lab funded twice
    assert roles.oversees_lab(officer, funded)
    assert not roles.oversees_lab(officer, unfunded)
    assert not roles.manages_any_lab(officer)
    assert not roles.manages_lab(officer, funded)
    assert not roles.grantable_trainings(officer).exists()


def test_bookings_in_full_are_ones_own_and_those_of_managed_labs():
    lab_a, lab_b = LabFactory(), LabFactory()
    manager = UserFactory()
    lab_a.managers.add(manager)
    in_a = BookingFactory(machine=MachineFactory(lab=lab_a), start=_at(10), end=_at(11))
    in_b = BookingFactory(machine=MachineFactory(lab=lab_b), start=_at(10), end=_at(11))
    own_in_b = BookingFactory(machine=in_b.machine, member=manager, start=_at(12), end=_at(13))
    assert set(roles.bookings_in_full(manager, Booking.objects.all())) == {in_a, own_in_b}
    assert set(roles.managed_bookings(manager, Booking.objects.all())) == {in_a}
    maker = in_b.member
    assert set(roles.bookings_in_full(maker, Booking.objects.all())) == {in_b}


def test_grantable_trainings_are_those_the_managed_labs_machines_need():
    lab_a, lab_b = LabFactory(), LabFactory()
    laser, cnc, unused = TrainingFactory(), TrainingFactory(), TrainingFactory()
    MachineFactory(lab=lab_a, required_training=laser)
    MachineFactory(lab=lab_a, required_training=laser)
    MachineFactory(lab=lab_b, required_training=cnc)
    MachineFactory(lab=lab_a)  # needs no training
    manager = UserFactory()
    lab_a.managers.add(manager)
    admin = UserFactory(is_superuser=True)
    assert list(roles.grantable_trainings(manager)) == [laser]
    assert roles.may_grant_training(manager, laser)
    assert not roles.may_grant_training(manager, cnc)
    # A network administrator manages every lab, but a training no machine needs is nobody's to grant.
    assert set(roles.grantable_trainings(admin)) == {laser, cnc}
    assert not roles.may_grant_training(admin, unused)


def _at(hour: int) -> dt.datetime:
    tz = zoneinfo.ZoneInfo("Europe/Brussels")
    day = timezone.localdate(timezone=tz) + dt.timedelta(days=2)
    return dt.datetime.combine(day, dt.time(hour), tzinfo=tz)
