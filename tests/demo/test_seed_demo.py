"""`manage.py seed_demo`: the demo the README promises, and running it twice changes nothing."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.utils import timezone

from fablab.booking.models import Booking, QuotaPolicy
from fablab.demo import story
from fablab.labs.models import Closure, Lab, Machine, OpeningHours
from fablab.members import roles
from fablab.members.models import Certification, CertificationAudit, MemberProfile, Programme, Training

pytestmark = pytest.mark.django_db

MODELS = [
    Lab,
    OpeningHours,
    Closure,
    Machine,
    Training,
    Certification,
    CertificationAudit,
    QuotaPolicy,
    Booking,
    MemberProfile,
    Programme,
]


def week_bookings():
    """The other makers' bookings of the coming week (seed_demo's ``_bookings``)."""
    return Booking.objects.filter(
        member__username__in=("anouk", "karim"),
        purpose__in=("Prototype enclosure", "Plywood lamp", "Replacement parts", "Oak cutting board"),
    )


def seed() -> None:
    call_command("seed_demo", stdout=io.StringIO())


def counts() -> dict[str, int]:
    counted = {model.__name__: model.objects.count() for model in MODELS}
    counted["User"] = get_user_model().objects.count()
    return counted


def test_the_demo_is_what_the_readme_promises():
    seed()
    User = get_user_model()
    labs = Lab.objects.all()
    assert {lab.slug for lab in labs} == {"bxl-centre", "bxl-south"}
    assert {lab.time_zone for lab in labs} == {"Europe/Brussels"}
    assert all(lab.opening_hours.exists() for lab in labs)
    machines = Machine.objects.all()
    assert machines.count() >= 8
    assert {"3d-printer", "laser-cutter", "cnc"} <= {m.machine_type.slug for m in machines}
    # One training per machine type in use, and every such machine needs it.
    assert all(m.required_training is not None for m in machines)
    trainings = set(Training.objects.all())
    for username in ("maker", "newbie", "manager", "officer"):
        assert User.objects.get(username=username).check_password("demo1234"), username
    maker, newbie = User.objects.get(username="maker"), User.objects.get(username="newbie")
    assert {c.training for c in Certification.objects.filter(member=maker).active()} == trainings
    assert not Certification.objects.filter(member=newbie).exists()
    manager = User.objects.get(username="manager")
    assert set(roles.managed_labs(manager)) == set(labs)
    # The manager needs no Django admin: nobody in the demo is staff or a network administrator.
    assert not User.objects.filter(is_staff=True).exists()
    assert not User.objects.filter(is_superuser=True).exists()
    officer = User.objects.get(username="officer")
    assert set(roles.overseen_labs(officer)) == set(labs)
    assert not roles.manages_any_lab(officer)
    # The demo's certifications are audited like any grant.
    assert CertificationAudit.objects.filter(action="grant").count() == Certification.objects.count()
    # Other makers' bookings, made through the rules, fill the coming days; the demo makers'
    # today and tomorrow (tests/demo/test_actors.py), and a training session has no member.
    upcoming = Booking.objects.filter(end__gt=timezone.now(), status__in=Booking.ACTIVE)
    assert upcoming.exclude(member__username__in=story.MAKERS).exclude(member=None).count() == 0
    assert week_bookings().count() == 4


def test_running_it_twice_changes_nothing():
    seed()
    first = counts()
    password = get_user_model().objects.get(username="maker").password
    seed()
    assert counts() == first
    assert get_user_model().objects.get(username="maker").password == password


def test_a_later_run_refills_the_week_once_the_demo_bookings_are_over():
    seed()
    over = timezone.now() - dt.timedelta(days=30)
    # Each booking an hour of its own in the past (several share a machine: no overlap allowed).
    for i, pk in enumerate(Booking.objects.order_by("pk").values_list("pk", flat=True)):
        end = over - dt.timedelta(hours=i)
        Booking.objects.filter(pk=pk).update(start=end - dt.timedelta(hours=1), end=end, blocked_until=end)
    seed()
    assert week_bookings().filter(end__gt=timezone.now()).count() == 4
    seed()
    assert week_bookings().count() == 8


def test_the_demo_shows_a_waitlist_offer_a_strike_and_a_service_due(settings):
    """Issue 10's scenes: maker has an open offer, karim a strike, the CO2 laser a service due."""
    from devices import care
    from devices.models import Alert, ServiceInterval
    from fablab.booking import strikes
    from fablab.booking.models import WaitlistOffer

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    call_command("seed_demo", stdout=io.StringIO())
    call_command("seed_demo", stdout=io.StringIO())  # played once, not twice
    now = timezone.now()
    offers = WaitlistOffer.objects.filter(status=WaitlistOffer.Status.OPEN)
    assert [o.entry.member.username for o in offers] == ["maker"]
    assert offers[0].expires_at > now
    karim = get_user_model().objects.get(username="karim")
    lab = Lab.objects.get(slug="bxl-centre")
    assert [s.kind for s in strikes.strikes(karim, lab)] == ["no_show"]
    laser = Machine.objects.get(slug="co2-laser")
    assert ServiceInterval.objects.filter(machine=laser).count() == 2
    care.scheduled_pass(now)
    alert = Alert.objects.get(machine=laser, kind=Alert.Kind.SERVICE_DUE, cleared_at=None)
    assert "Clean lens and mirrors" in alert.message


def test_the_demo_shows_laser_sessions_a_weekly_course_and_an_initiative(settings, client):
    """Issue 11's scenes: newbie finds the laser training from the laser's page; the course is tagged."""
    from fablab.booking.models import Series
    from fablab.trainings.models import TrainingSession

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    call_command("seed_demo", stdout=io.StringIO())
    call_command("seed_demo", stdout=io.StringIO())  # played once, not twice
    sessions = TrainingSession.objects.filter(training__slug="laser-safety", start__gt=timezone.now())
    assert sessions.count() == 2
    course = Series.objects.get(kind=Series.Kind.WORKSHOP)
    assert course.initiative.name_en == "Young makers" and course.title_fr == "Impression 3D pour débutants"
    assert Booking.objects.filter(series=course, kind=Booking.Kind.WORKSHOP).exists()
    client.force_login(get_user_model().objects.get(username="newbie"))
    page = client.get("/labs/bxl-centre/epilog-laser/").content.decode()
    assert "Sécurité de la découpeuse laser" in page
    assert f"/trainings/{sessions.first().pk}/register/" in page
