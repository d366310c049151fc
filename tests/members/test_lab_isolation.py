"""A lab A manager has no say over lab B: pages, API, board, commands and trainings."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest
from django.core.cache import cache
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from devices.models import Command
from fablab.booking.models import Booking
from fablab.labs.models import MaintenanceWindow
from fablab.members.models import Certification, CertificationAudit
from tests.factories import (
    BookingFactory,
    CertificationFactory,
    LabFactory,
    MachineFactory,
    MaintenanceWindowFactory,
    TrainingFactory,
    UserFactory,
    api_token,
)

pytestmark = pytest.mark.django_db

BRUSSELS = zoneinfo.ZoneInfo("Europe/Brussels")


def at(hour: int) -> dt.datetime:
    day = timezone.localdate(timezone=BRUSSELS) + dt.timedelta(days=2)
    return dt.datetime.combine(day, dt.time(hour), tzinfo=BRUSSELS)


@pytest.fixture(autouse=True)
def _clear_throttles():
    cache.clear()


@pytest.fixture
def labs():
    """Lab A with its manager Alice; lab B with a laser needing a training and a pending booking."""
    lab_a = LabFactory(slug="lab-a", name="Lab A")
    lab_b = LabFactory(slug="lab-b", name="Lab B")
    alice = UserFactory(username="alice")
    lab_a.managers.add(alice)
    training_a = TrainingFactory(name="Printer basics")
    training_b = TrainingFactory(name="Laser safety B")
    MachineFactory(lab=lab_a, slug="printer", required_training=training_a)
    laser = MachineFactory(lab=lab_b, slug="laser", name="Laser B", required_training=training_b)
    bob = UserFactory(username="bob-b", first_name="Bob", last_name="Bookerson")
    pending = BookingFactory(
        machine=laser, member=bob, start=at(10), end=at(11), status=Booking.Status.PENDING, purpose="Secret"
    )
    return {
        "a": lab_a,
        "b": lab_b,
        "alice": alice,
        "bob": bob,
        "laser": laser,
        "pending": pending,
        "training_a": training_a,
        "training_b": training_b,
    }


def api_for(user) -> APIClient:
    client = APIClient()
    token = api_token(user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


def test_a_lab_a_manager_cannot_open_lab_b_manage_pages(client, labs):
    window = MaintenanceWindowFactory(machine=labs["laser"], start=at(14), end=at(15))
    client.force_login(labs["alice"])
    assert client.get(reverse("booking:day", args=["lab-b"])).status_code == 403
    assert client.get(reverse("booking:maintenance", args=[labs["laser"].pk])).status_code == 403
    planned = client.post(
        reverse("booking:maintenance", args=[labs["laser"].pk]),
        {"start": at(16).strftime("%Y-%m-%dT%H:%M"), "end": at(17).strftime("%Y-%m-%dT%H:%M")},
    )
    assert planned.status_code == 403
    assert client.post(reverse("booking:delete_maintenance", args=[window.pk])).status_code == 403
    assert list(MaintenanceWindow.objects.all()) == [window]
    # Their own lab's pages open.
    assert client.get(reverse("booking:day", args=["lab-a"])).status_code == 200


def test_a_lab_a_manager_cannot_approve_lab_b_booking_on_the_pages_or_via_the_api(client, labs):
    pending = labs["pending"]
    client.force_login(labs["alice"])
    assert client.post(reverse("booking:approve", args=[pending.pk])).status_code == 403
    assert client.post(reverse("booking:decline", args=[pending.pk])).status_code == 403
    api = api_for(labs["alice"])
    for action in ("approve", "decline", "cancel"):
        response = api.post(f"/api/v1/bookings/{pending.pk}/{action}/")
        # Not one of their labs' bookings: the API does not even confirm it exists.
        assert response.status_code == 404, action
        assert response.json()["code"] == "not_found"
    pending.refresh_from_db()
    assert pending.status == Booking.Status.PENDING
    assert pending.decided_by is None


def test_a_lab_a_manager_cannot_see_lab_b_bookings_in_full(client, labs):
    pending = labs["pending"]
    api = api_for(labs["alice"])
    assert api.get("/api/v1/bookings/", {"lab": "lab-b"}).json()["results"] == []
    assert api.get(f"/api/v1/bookings/{pending.pk}/").status_code == 404
    client.force_login(labs["alice"])
    for url in (
        reverse("booking:approvals"),
        reverse("booking:manage"),
        reverse("devices:board", args=["lab-b"]),
        reverse("labs:machine", args=["lab-b", "laser"]) + f"?week={at(10).date().isoformat()}",
    ):
        html = client.get(url).content.decode()
        for secret in ("Bob", "Bookerson", "bob-b", "Secret"):
            assert secret not in html, (url, secret)
    assert client.get(reverse("booking:cancel", args=[pending.pk])).status_code == 404


def test_a_lab_a_manager_cannot_send_a_command_to_a_lab_b_machine(client, labs):
    client.force_login(labs["alice"])
    response = client.post(reverse("devices:command", args=["lab-b", "laser"]), {"action": "disable"})
    assert response.status_code == 403
    assert not Command.objects.exists()


def test_a_lab_a_manager_cannot_grant_or_revoke_lab_b_training(client, labs):
    maker = UserFactory(username="maker")
    cert_b = CertificationFactory(member=labs["bob"], training=labs["training_b"])
    client.force_login(labs["alice"])
    page = client.get(reverse("booking:certifications")).content.decode()
    assert "Laser safety B" not in page  # neither offered nor listed
    assert "Printer basics" in page
    response = client.post(
        reverse("booking:certifications"), {"member": "maker", "training": labs["training_b"].pk}
    )
    assert response.status_code == 200
    assert 'class="error"' in response.content.decode()
    assert not Certification.objects.filter(member=maker).exists()
    assert client.post(reverse("booking:revoke_certification", args=[cert_b.pk])).status_code == 403
    cert_b.refresh_from_db()
    assert cert_b.revoked_at is None
    assert not CertificationAudit.objects.exists()
