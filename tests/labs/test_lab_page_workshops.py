"""A lab's public page lists its next workshop and course sessions (fablab.booking.series)."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest
from django.urls import reverse
from django.utils import timezone

from fablab.booking import series as series_mod
from fablab.booking.models import Booking
from fablab.booking.series import Recurrence
from fablab.members.models import Programme
from fablab.trainings.models import Initiative
from tests.factories import LabFactory, MachineFactory, UserFactory

pytestmark = pytest.mark.django_db

BRUSSELS = zoneinfo.ZoneInfo("Europe/Brussels")


def workshop(lab, manager, title, *, first_day, weeks=1, now=None, **extra):
    """A weekly workshop on ``first_day``'s weekday at 18:00 for ``weeks`` sessions."""
    now = now or timezone.now()
    recurrence = Recurrence(
        series_mod.weekly_rule([first_day.weekday()]),
        first_day,
        dt.time(18),
        dt.timedelta(hours=2),
        until=first_day + dt.timedelta(weeks=weeks - 1),
    )
    machine = MachineFactory(lab=lab)
    the_plan = series_mod.plan(
        lab=lab, machines=[machine], recurrence=recurrence, title=title, now=now, **extra
    )
    return series_mod.create_workshop(the_plan, {}, manager, now=now).series


@pytest.fixture
def lab():
    return LabFactory()


@pytest.fixture
def manager(lab):
    user = UserFactory()
    lab.managers.add(user)
    return user


def test_anonymous_visitor_sees_upcoming_workshop_not_past_or_cancelled(client, lab, manager):
    today = timezone.localdate(timezone=BRUSSELS)
    programme = Programme.objects.create(name="Digital inclusion")
    programme.labs.add(lab)
    young = Initiative.objects.create(programme=programme, slug="young-makers", name="Young makers")
    upcoming = workshop(
        lab,
        manager,
        "Arduino for beginners",
        first_day=today + dt.timedelta(days=3),
        seats=8,
        target_group="teenagers",
        initiative=young,
    )
    past_day = today - dt.timedelta(days=10)
    workshop(
        lab,
        manager,
        "Old soldering class",
        first_day=past_day,
        now=dt.datetime.combine(past_day, dt.time(9), tzinfo=BRUSSELS),
    )
    cancelled_session = workshop(
        lab, manager, "Cancelled session class", first_day=today + dt.timedelta(days=4)
    )
    Booking.objects.filter(series=cancelled_session).update(status=Booking.Status.CANCELLED)
    cancelled_series = workshop(
        lab, manager, "Cancelled series class", first_day=today + dt.timedelta(days=5)
    )
    cancelled_series.cancelled_at = timezone.now()
    cancelled_series.save(update_fields=["cancelled_at"])
    other_lab = LabFactory()
    other_manager = UserFactory()
    other_lab.managers.add(other_manager)
    workshop(other_lab, other_manager, "Elsewhere class", first_day=today + dt.timedelta(days=3))

    response = client.get(reverse("labs:detail", args=[lab.slug]))

    assert response.status_code == 200
    html = response.content.decode()
    section = html[html.index('id="workshop-sessions"') :]
    assert "Arduino for beginners" in section
    assert "Young makers" in section
    assert "teenagers" in section
    assert "8 seats left" in section
    assert "18:00" in section
    workshop_url = reverse("booking:workshop", args=[upcoming.pk])
    assert f'href="{workshop_url}"' in section
    assert f'href="{reverse("members:login")}?next={workshop_url}"' in section
    for absent in ("Old soldering class", "Cancelled session class", "Cancelled series class", "Elsewhere"):
        assert absent not in html


def test_seats_left_count_registrations_and_the_list_is_short(
    client, lab, manager, django_assert_num_queries
):
    today = timezone.localdate(timezone=BRUSSELS)
    many = workshop(lab, manager, "Weekly club", first_day=today + dt.timedelta(days=1), weeks=8, seats=3)
    first_start = Booking.objects.filter(series=many).order_by("start").first().start
    series_mod.register(many, first_start, UserFactory())
    member = UserFactory()
    client.force_login(member)

    html = client.get(reverse("labs:detail", args=[lab.slug])).content.decode()
    section = html[html.index('id="workshop-sessions"') :]
    assert section.count("Weekly club") == 6
    assert "2 seats left" in section and section.count("3 seats left") == 5
    assert "Log in to register" not in section

    from fablab.booking.selectors import upcoming_workshops

    with django_assert_num_queries(2):
        sessions = upcoming_workshops(lab, now=timezone.now())
    assert [s["workshop"] for s in sessions] == [many] * 6
    assert [s["seats_left"] for s in sessions] == [2, 3, 3, 3, 3, 3]
