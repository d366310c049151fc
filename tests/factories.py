"""factory_boy factories shared by the Django tests.

``LabFactory`` opens its lab every day from 08:00 to 20:00 (Europe/Brussels)
unless ``hours=False``; machines need no training unless given one.
"""

from __future__ import annotations

import datetime as dt

import factory
from django.contrib.auth import get_user_model

from fablab.booking.models import Booking, QuotaPolicy
from fablab.labs.models import Lab, Machine, MachineType, MaintenanceWindow, OpeningHours
from fablab.members.models import Certification, MemberProfile, Programme, Training


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.org")
    password = factory.PostGenerationMethodCall("set_password", "pw-test-1234")

    @factory.post_generation
    def language(self, create, extracted, **kwargs):
        if create:
            MemberProfile.objects.update_or_create(user=self, defaults={"language": extracted or "en"})
            self.save()


class LabFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Lab
        skip_postgeneration_save = True

    slug = factory.Sequence(lambda n: f"lab-{n}")
    name = factory.Sequence(lambda n: f"Lab {n}")
    time_zone = "Europe/Brussels"

    @factory.post_generation
    def hours(self, create, extracted, **kwargs):
        if create and extracted is not False:
            for weekday in range(7):
                OpeningHours.objects.create(lab=self, weekday=weekday, opens=dt.time(8), closes=dt.time(20))


class MachineTypeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = MachineType
        django_get_or_create = ("slug",)

    slug = "3d-printer"
    name = "3D printer"


class TrainingFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Training
        django_get_or_create = ("slug",)

    slug = factory.Sequence(lambda n: f"training-{n}")
    name = factory.Sequence(lambda n: f"Training {n}")


class MachineFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Machine

    lab = factory.SubFactory(LabFactory)
    slug = factory.Sequence(lambda n: f"machine-{n}")
    name = factory.Sequence(lambda n: f"Machine {n}")
    machine_type = factory.SubFactory(MachineTypeFactory)
    required_training = None
    slot_minutes = 30
    min_duration_minutes = 30
    max_duration_minutes = 240
    min_notice_minutes = 0
    max_days_ahead = 28
    buffer_minutes = 0
    approval_required = False


class CertificationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Certification

    member = factory.SubFactory(UserFactory)
    training = factory.SubFactory(TrainingFactory)
    expires_at = None


class MaintenanceWindowFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = MaintenanceWindow

    machine = factory.SubFactory(MachineFactory)


class QuotaPolicyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = QuotaPolicy

    machine_type = factory.SubFactory(MachineTypeFactory)
    lab = None


class BookingFactory(factory.django.DjangoModelFactory):
    """Inserts directly, bypassing the rules: for setting the scene only."""

    class Meta:
        model = Booking

    machine = factory.SubFactory(MachineFactory)
    member = factory.SubFactory(UserFactory)
    blocked_until = factory.LazyAttribute(lambda b: b.end + dt.timedelta(minutes=b.machine.buffer_minutes))
    status = Booking.Status.CONFIRMED


class ProgrammeFactory(factory.django.DjangoModelFactory):
    """A funding programme; ``labs=[...]`` and ``officers=[...]`` fill its two lists."""

    class Meta:
        model = Programme
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"Programme {n}")

    @factory.post_generation
    def labs(self, create, extracted, **kwargs):
        if create and extracted:
            self.labs.add(*extracted)

    @factory.post_generation
    def officers(self, create, extracted, **kwargs):
        if create and extracted:
            self.officers.add(*extracted)


def api_token(user) -> str:
    """A new API token (django-rest-knox) for ``user``: the key to send as ``Authorization: Token <key>``.

    It never expires, so that tests which move the clock by years keep their client; the real
    lifetime is tested in tests/members/test_accounts.py.
    """
    from knox.models import AuthToken

    return AuthToken.objects.create(user=user, expiry=None)[1]
