"""``GET /api/v1/alerts/?lab=<slug>``: a lab's machine alerts, for that lab's managers only."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from devices.models import Alert
from tests.factories import BookingFactory, LabFactory, MachineFactory, UserFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/alerts/"


def client_for(user) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


@pytest.fixture
def scene():
    lab, other_lab = LabFactory(slug="bxl"), LabFactory(slug="gent")
    manager, other_manager, maker = UserFactory(), UserFactory(), UserFactory()
    lab.managers.add(manager)
    other_lab.managers.add(other_manager)
    laser = MachineFactory(lab=lab, slug="laser", name="Laser")
    elsewhere = MachineFactory(lab=other_lab, slug="cnc")
    now = timezone.now()
    next_booking = BookingFactory(machine=laser, start=now, end=now + dt.timedelta(hours=1))
    overrun = Alert.objects.create(
        machine=laser, kind=Alert.Kind.OVERRUN, message="m", raised_at=now - dt.timedelta(minutes=1),
        booking=next_booking,
    )  # fmt: skip
    recent = Alert.objects.create(
        machine=laser, kind=Alert.Kind.OFFLINE, raised_at=now - dt.timedelta(hours=2),
        cleared_at=now - dt.timedelta(hours=1),
    )  # fmt: skip
    Alert.objects.create(  # cleared long ago
        machine=laser, kind=Alert.Kind.ERROR, raised_at=now - dt.timedelta(days=30),
        cleared_at=now - dt.timedelta(days=29),
    )  # fmt: skip
    Alert.objects.create(machine=elsewhere, kind=Alert.Kind.UNBOOKED_USE, raised_at=now)
    return {
        "manager": manager, "other_manager": other_manager, "maker": maker, "laser": laser,
        "overrun": overrun, "recent": recent, "next": next_booking,
    }  # fmt: skip


def test_a_manager_sees_the_labs_open_alerts(scene):
    response = client_for(scene["manager"]).get(URL, {"lab": "bxl"})
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 1 and body["next"] is None
    (alert,) = body["results"]
    laser = scene["laser"]
    assert alert == {
        "id": scene["overrun"].pk,
        "machine": {"id": laser.pk, "slug": "laser", "name": "Laser"},
        "kind": "overrun",
        "kind_label": "Running into the next booking",
        "message": "m",
        "raised_at": alert["raised_at"],
        "cleared_at": None,
        "booking": scene["next"].pk,
    }


def test_state_all_adds_the_recently_cleared_newest_first(scene):
    response = client_for(scene["manager"]).get(URL, {"lab": "bxl", "state": "all"})
    assert response.status_code == 200
    assert [a["id"] for a in response.json()["results"]] == [scene["overrun"].pk, scene["recent"].pk]
    assert response.json()["results"][1]["cleared_at"] is not None


def test_alerts_come_in_pages(scene):
    response = client_for(scene["manager"]).get(URL, {"lab": "bxl", "state": "all", "page_size": 1})
    assert response.json()["count"] == 2 and response.json()["next"]
    assert client_for(scene["manager"]).get(URL, {"lab": "bxl", "page": 9}).json()["code"] == "not_found"


@pytest.mark.parametrize("who", ["other_manager", "maker"])
def test_anyone_but_the_labs_managers_is_forbidden(scene, who):
    response = client_for(scene[who]).get(URL, {"lab": "bxl"})
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"


def test_a_network_admin_may_list_any_lab(scene):
    admin = UserFactory(is_superuser=True)
    assert client_for(admin).get(URL, {"lab": "gent"}).json()["count"] == 1


@pytest.mark.parametrize(
    ("query", "status", "code"),
    [
        ({}, 400, "invalid"),
        ({"lab": "bxl", "state": "closed"}, 400, "invalid"),
        ({"lab": "nowhere"}, 404, "not_found"),
    ],
)
def test_bad_queries(scene, query, status, code):
    response = client_for(scene["manager"]).get(URL, query)
    assert response.status_code == status
    assert response.json()["code"] == code
    if query == {}:
        assert "lab" in response.json()["fields"]


def test_anonymous_is_401(scene):
    response = client_for(None).get(URL, {"lab": "bxl"})
    assert response.status_code == 401


def test_the_schema_documents_the_alerts_list():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    operation = schema["paths"]["/api/v1/alerts/"]["get"]
    assert operation["operationId"] == "alerts_list"
    assert {p["name"] for p in operation["parameters"]} >= {"lab", "state", "page", "page_size"}
    assert next(p for p in operation["parameters"] if p["name"] == "lab")["required"] is True
    assert set(operation["responses"]) >= {"200", "400", "401", "403", "404"}
    assert "permission_denied" in operation["responses"]["403"]["description"]
    item = schema["components"]["schemas"]["Alert"]["properties"]
    assert set(item) == {
        "id",
        "machine",
        "kind",
        "kind_label",
        "message",
        "raised_at",
        "cleared_at",
        "booking",
    }
