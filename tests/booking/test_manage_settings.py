"""Manager pages for what managers once did in the Django admin: opening hours, closures, booking policy."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from fablab.labs.models import Closure, OpeningHours
from tests.factories import LabFactory, MachineFactory, TrainingFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def lab():
    return LabFactory(slug="centre", name="Centre", hours=False)


@pytest.fixture
def manager(lab):
    user = UserFactory(username="manon")
    lab.managers.add(user)
    return user


def settings_url(lab) -> str:
    return reverse("booking:lab_settings", args=[lab.slug])


def test_a_manager_adds_and_deletes_opening_hours_and_closures(client, lab, manager):
    client.force_login(manager)
    first = timezone.localdate() + dt.timedelta(days=10)
    client.post(
        settings_url(lab),
        {"form": "hours", "hours-weekday": "1", "hours-opens": "09:00", "hours-closes": "17:30"},
    )
    client.post(
        settings_url(lab),
        {
            "form": "closure",
            "closure-starts_on": first.isoformat(),
            "closure-ends_on": (first + dt.timedelta(days=2)).isoformat(),
            "closure-reason": "Inventory",
        },
    )
    hours = OpeningHours.objects.get(lab=lab)
    assert (hours.weekday, hours.opens, hours.closes) == (1, dt.time(9), dt.time(17, 30))
    closure = Closure.objects.get(lab=lab)
    assert (closure.starts_on, closure.ends_on, closure.reason) == (
        first,
        first + dt.timedelta(days=2),
        "Inventory",
    )
    html = client.get(settings_url(lab)).content.decode()
    assert "Inventory" in html and "Tuesday" in html

    client.post(reverse("booking:delete_opening_hours", args=[lab.slug, hours.pk]))
    client.post(reverse("booking:delete_closure", args=[lab.slug, closure.pk]))
    assert not OpeningHours.objects.exists() and not Closure.objects.exists()


@pytest.mark.parametrize(
    "data",
    [
        {"form": "hours", "hours-weekday": "1", "hours-opens": "17:00", "hours-closes": "09:00"},
        {"form": "hours", "hours-weekday": "9", "hours-opens": "09:00", "hours-closes": "17:00"},
        {"form": "hours", "hours-weekday": "1", "hours-opens": "nine", "hours-closes": "17:00"},
        {"form": "closure", "closure-starts_on": "2099-01-05", "closure-ends_on": "2099-01-01"},
        {"form": "closure", "closure-starts_on": "2001-01-01", "closure-ends_on": "2001-01-02"},
        {"form": "closure", "closure-starts_on": "9999-12-31", "closure-ends_on": "9999-12-31"},
    ],
)
def test_bad_hours_or_closures_are_form_errors_and_save_nothing(client, lab, manager, data):
    client.force_login(manager)
    response = client.post(settings_url(lab), data)
    assert response.status_code == 200
    assert 'class="error"' in response.content.decode()
    assert not OpeningHours.objects.exists() and not Closure.objects.exists()


def test_a_manager_sets_a_machines_booking_policy_but_not_its_identity_or_training(client, lab, manager):
    training = TrainingFactory()
    machine = MachineFactory(lab=lab, slug="laser", required_training=training)
    client.force_login(manager)
    url = reverse("booking:machine_settings", args=[machine.pk])
    assert client.get(url).status_code == 200
    response = client.post(
        url,
        {
            "bookable": "on",
            "approval_required": "on",
            "slot_minutes": "60",
            "min_duration_minutes": "60",
            "max_duration_minutes": "180",
            "min_notice_minutes": "120",
            "max_days_ahead": "14",
            "buffer_minutes": "15",
            # Not on this form: ignored.
            "slug": "renamed",
            "required_training": "",
            "lab": LabFactory().pk,
        },
    )
    assert response.status_code == 302
    machine.refresh_from_db()
    assert machine.approval_required and machine.slot_minutes == 60 and machine.max_days_ahead == 14
    assert (machine.slug, machine.required_training, machine.lab) == ("laser", training, lab)
    refused = client.post(
        url, {"slot_minutes": "60", "min_duration_minutes": "90", "max_duration_minutes": "30"}
    )
    assert refused.status_code == 200
    machine.refresh_from_db()
    assert machine.max_duration_minutes == 180


def test_a_lab_a_manager_cannot_change_lab_b_hours_closures_or_policies(client, manager):
    lab_b = LabFactory(slug="lab-b", hours=False)
    hours = OpeningHours.objects.create(lab=lab_b, weekday=0, opens=dt.time(9), closes=dt.time(17))
    day = timezone.localdate() + dt.timedelta(days=5)
    closure = Closure.objects.create(lab=lab_b, starts_on=day, ends_on=day)
    machine = MachineFactory(lab=lab_b, slot_minutes=30)
    client.force_login(manager)
    assert client.get(settings_url(lab_b)).status_code == 403
    data = {"form": "hours", "hours-weekday": "2", "hours-opens": "09:00", "hours-closes": "17:00"}
    assert client.post(settings_url(lab_b), data).status_code == 403
    assert client.post(reverse("booking:delete_opening_hours", args=["lab-b", hours.pk])).status_code == 403
    assert client.post(reverse("booking:delete_closure", args=["lab-b", closure.pk])).status_code == 403
    url = reverse("booking:machine_settings", args=[machine.pk])
    assert client.get(url).status_code == 403
    assert client.post(url, {"slot_minutes": "60"}).status_code == 403
    # Through their own lab's address neither.
    assert client.post(reverse("booking:delete_closure", args=["centre", closure.pk])).status_code == 404
    assert list(OpeningHours.objects.all()) == [hours] and list(Closure.objects.all()) == [closure]
    machine.refresh_from_db()
    assert machine.slot_minutes == 30
