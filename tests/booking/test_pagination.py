"""The API's lists come in pages: 50 by default, at most 200, with links to follow."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from fablab.booking.models import Booking
from tests.factories import LabFactory, MachineFactory, UserFactory, api_token

pytestmark = pytest.mark.django_db


@pytest.fixture
def member():
    return UserFactory()


@pytest.fixture
def api(member):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token(member)}")
    return client


def many_bookings(member, count: int) -> list[Booking]:
    machine = MachineFactory()
    first = timezone.now().replace(microsecond=0) + dt.timedelta(days=1)
    return Booking.objects.bulk_create(
        Booking(
            machine=machine,
            member=member,
            start=first + dt.timedelta(hours=i),
            end=first + dt.timedelta(hours=i, minutes=30),
            blocked_until=first + dt.timedelta(hours=i, minutes=30),
        )
        for i in range(count)
    )


def test_the_booking_list_gives_50_a_page_and_every_booking_exactly_once_across_pages(api, member):
    made = many_bookings(member, 120)
    seen, url, pages = [], "/api/v1/bookings/", 0
    while url:
        data = api.get(url).json()
        assert data["count"] == 120
        assert len(data["results"]) <= 50
        seen += [b["id"] for b in data["results"]]
        url = data["next"]
        pages += 1
    assert pages == 3
    assert seen == [b.pk for b in made]  # oldest first, none twice, none missing


def test_page_size_is_capped_at_200(api, member):
    many_bookings(member, 230)
    assert len(api.get("/api/v1/bookings/", {"page_size": 500}).json()["results"]) == 200
    assert len(api.get("/api/v1/bookings/", {"page_size": 7}).json()["results"]) == 7


def test_a_page_after_the_last_is_404_not_found(api, member):
    many_bookings(member, 3)
    response = api.get("/api/v1/bookings/", {"page": 2})
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    assert api.get("/api/v1/bookings/", {"page": "last"}).json()["previous"] is None


def test_filters_are_kept_in_the_next_link(api, member):
    many_bookings(member, 60)
    data = api.get("/api/v1/bookings/", {"status": "confirmed", "page_size": 25}).json()
    assert "status=confirmed" in data["next"] and "page=2" in data["next"]


def test_labs_and_machines_lists_are_paged_the_same_way(api):
    lab = LabFactory()
    for _ in range(3):
        MachineFactory(lab=lab)
    labs = api.get("/api/v1/labs/").json()
    assert set(labs) == {"count", "next", "previous", "results"}
    machines = api.get("/api/v1/machines/", {"page_size": 2}).json()
    assert machines["count"] == 3 and len(machines["results"]) == 2 and machines["next"]
    rest = api.get(machines["next"]).json()
    assert len(rest["results"]) == 1 and rest["next"] is None


def test_the_schema_documents_the_paged_lists(api):
    schema = APIClient().get("/api/schema/", {"format": "json"}).json()
    operation = schema["paths"]["/api/v1/bookings/"]["get"]
    assert {"page", "page_size"} <= {p["name"] for p in operation["parameters"]}
    paged = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert set(schema["components"]["schemas"][paged]["properties"]) == {
        "count",
        "next",
        "previous",
        "results",
    }
    assert "404" in operation["responses"]
