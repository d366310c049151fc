"""``POST /api/v1/bookings/{id}/check-in/``: codes, rights, the booking's new fields, and the schema."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core.cache import cache
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from fablab.booking.models import Booking
from tests.factories import (
    BookingFactory,
    CertificationFactory,
    LabFactory,
    MachineFactory,
    TrainingFactory,
    UserFactory,
    api_token,
)

pytestmark = pytest.mark.django_db

BRUSSELS = ZoneInfo("Europe/Brussels")
DAY = dt.date(2031, 3, 12)


def at(hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(DAY, dt.time(hour, minute), tzinfo=BRUSSELS)


@pytest.fixture(autouse=True)
def _clear_throttles():
    cache.clear()


def client_for(user) -> APIClient:
    client = APIClient()
    token = api_token(user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


@pytest.fixture
def maker():
    return UserFactory(username="maker")


@pytest.fixture
def training():
    return TrainingFactory()


@pytest.fixture
def machine(training):
    return MachineFactory(lab=LabFactory(), required_training=training)


@pytest.fixture
def booking(machine, maker, training):
    CertificationFactory(member=maker, training=training)
    return BookingFactory(machine=machine, member=maker, start=at(10), end=at(11))


def post_check_in(user, booking, moment: dt.datetime):
    with time_machine.travel(moment, tick=False):
        return client_for(user).post(f"/api/v1/bookings/{booking.pk}/check-in/")


def assert_error(response, status: int, code: str) -> None:
    data = response.json()
    assert response.status_code == status, data
    assert data["code"] == code and isinstance(data["detail"], str) and data["detail"], data


def test_check_in_answers_the_booking_checked_in(maker, booking):
    response = post_check_in(maker, booking, at(9, 50))
    assert response.status_code == 200, response.json()
    data = response.json()
    assert data["status"] == "checked_in"
    assert data["check_in_via"] == "api"
    assert data["checked_in_at"] == "2031-03-12T09:50:00+01:00"
    assert data["check_in_opens_at"] == "2031-03-12T09:45:00+01:00"
    assert data["check_in_closes_at"] == "2031-03-12T10:15:00+01:00"
    booking.refresh_from_db()
    assert booking.status == Booking.Status.CHECKED_IN and booking.checked_in_by == maker


def test_too_early_and_closed_are_409_with_their_codes(maker, booking):
    assert_error(post_check_in(maker, booking, at(9, 44)), 409, "check_in_too_early")
    assert_error(post_check_in(maker, booking, at(10, 15)), 409, "check_in_closed")
    booking.refresh_from_db()
    assert booking.status == Booking.Status.CONFIRMED


def test_unavailable_at_the_start_moves_the_deadline_to_the_end(maker, booking):
    Booking.objects.filter(pk=booking.pk).update(unavailable=Booking.Unavailable.ERROR)
    with time_machine.travel(at(10, 30), tick=False):
        data = client_for(maker).get(f"/api/v1/bookings/{booking.pk}/").json()
    assert data["unavailable"] == "error"
    assert data["check_in_closes_at"] == "2031-03-12T11:00:00+01:00"
    assert post_check_in(maker, booking, at(10, 45)).status_code == 200


def test_a_grace_longer_than_the_booking_closes_check_in_at_the_end(maker, booking):
    """The window never outlasts the booking: ``check_in_closes_at`` says when the API refuses."""
    booking.machine.no_show_grace_minutes = 90
    booking.machine.save(update_fields=["no_show_grace_minutes"])
    with time_machine.travel(at(10, 30), tick=False):
        data = client_for(maker).get(f"/api/v1/bookings/{booking.pk}/").json()
    assert data["check_in_closes_at"] == "2031-03-12T11:00:00+01:00"
    assert_error(post_check_in(maker, booking, at(11)), 409, "check_in_closed")
    assert post_check_in(maker, booking, at(10, 59)).status_code == 200


def test_someone_elses_booking_is_404(booking):
    assert_error(post_check_in(UserFactory(username="other"), booking, at(9, 50)), 404, "not_found")
    booking.refresh_from_db()
    assert booking.status == Booking.Status.CONFIRMED


def test_an_unknown_or_huge_id_is_404(maker):
    client = client_for(maker)
    assert_error(client.post("/api/v1/bookings/999999/check-in/"), 404, "not_found")
    assert_error(client.post(f"/api/v1/bookings/{2**64}/check-in/"), 404, "not_found")


def test_anonymous_is_401():
    response = APIClient().post("/api/v1/bookings/1/check-in/")
    assert_error(response, 401, "not_authenticated")


def test_get_is_405(maker, booking):
    response = client_for(maker).get(f"/api/v1/bookings/{booking.pk}/check-in/")
    assert_error(response, 405, "method_not_allowed")


def test_a_manager_of_the_lab_checks_the_member_in(booking):
    manager = UserFactory(username="boss")
    booking.machine.lab.managers.add(manager)
    response = post_check_in(manager, booking, at(10))
    assert response.status_code == 200
    booking.refresh_from_db()
    assert booking.checked_in_by == manager and booking.check_in_via == Booking.CheckInVia.API


def test_revoked_and_expired_certifications_are_403(maker, booking):
    booking.member.certifications.update(expires_at=at(10, 30))
    assert_error(post_check_in(maker, booking, at(9, 50)), 403, "certification_expired")
    booking.member.certifications.update(revoked_at=at(8))
    assert_error(post_check_in(maker, booking, at(9, 50)), 403, "not_certified")


def test_checking_in_twice_answers_the_same_booking(maker, booking):
    first = post_check_in(maker, booking, at(9, 50))
    second = post_check_in(maker, booking, at(9, 55))
    assert first.status_code == second.status_code == 200
    assert second.json() == first.json()


def test_a_pending_booking_is_409(maker, booking):
    Booking.objects.filter(pk=booking.pk).update(status=Booking.Status.PENDING)
    assert_error(post_check_in(maker, booking, at(9, 50)), 409, "check_in_closed")


def test_a_booking_without_a_member_serializes_for_the_manager(machine):
    manager = UserFactory(username="boss")
    machine.lab.managers.add(manager)
    workshop = BookingFactory(
        machine=machine, member=None, kind=Booking.Kind.WORKSHOP, title="Open day", start=at(14), end=at(16)
    )
    with time_machine.travel(at(9), tick=False):
        client = client_for(manager)
        data = client.get(f"/api/v1/bookings/{workshop.pk}/").json()
        listed = client.get(f"/api/v1/bookings/?lab={machine.lab.slug}").json()["results"]
    assert data["member"] is None and data["kind"] == "workshop" and data["title"] == "Open day"
    assert data["check_in_opens_at"] is None and data["check_in_closes_at"] is None
    assert [b["id"] for b in listed] == [workshop.pk]
    assert_error(post_check_in(manager, workshop, at(14)), 409, "check_in_closed")


def test_usage_is_in_the_booking_json(maker, booking):
    Booking.objects.filter(pk=booking.pk).update(
        status=Booking.Status.COMPLETED,
        completed_at=at(11),
        used_minutes=55.5,
        overrun_minutes=2.0,
        energy_wh=840.0,
        job_outcome="failed",
    )
    with time_machine.travel(at(12), tick=False):
        data = client_for(maker).get(f"/api/v1/bookings/{booking.pk}/").json()
    assert data["completed_at"] == "2031-03-12T11:00:00+01:00"
    assert (data["used_minutes"], data["overrun_minutes"], data["energy_wh"], data["job_outcome"]) == (
        55.5,
        2.0,
        840.0,
        "failed",
    )


# The schema


@pytest.fixture(scope="module")
def operation() -> dict:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return schema["paths"]["/api/v1/bookings/{id}/check-in/"]["post"]


def test_the_schema_lists_every_code_of_the_check_in(operation):
    responses = operation["responses"]
    assert set(responses) >= {"200", "401", "403", "404", "409"}
    assert "requestBody" not in operation
    assert "`not_certified` (403)" in responses["403"]["description"]
    assert "`certification_expired` (403)" in responses["403"]["description"]
    assert "`forbidden` (403)" in responses["403"]["description"]
    assert "`check_in_too_early` (409)" in responses["409"]["description"]
    assert "`check_in_closed` (409)" in responses["409"]["description"]
    assert "`not_found` (404)" in responses["404"]["description"]


def test_booking_creation_does_not_claim_check_in_codes():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    conflict = schema["paths"]["/api/v1/bookings/"]["post"]["responses"]["409"]["description"]
    assert "check_in" not in conflict and "slot_taken" in conflict


def test_the_booking_schema_has_the_new_read_only_fields():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    properties = schema["components"]["schemas"]["Booking"]["properties"]
    for name in (
        "kind",
        "title",
        "checked_in_at",
        "check_in_via",
        "released_at",
        "unavailable",
        "completed_at",
        "used_minutes",
        "overrun_minutes",
        "energy_wh",
        "job_outcome",
        "check_in_opens_at",
        "check_in_closes_at",
    ):
        assert properties[name].get("readOnly") is True, name
    assert properties["member"].get("nullable") is True
    assert properties["check_in_opens_at"].get("nullable") is True


def test_a_json_content_type_without_a_body_is_fine(maker, booking):
    with time_machine.travel(at(9, 50), tick=False):
        response = client_for(maker).post(
            f"/api/v1/bookings/{booking.pk}/check-in/", data="", content_type="application/json"
        )
    assert response.status_code == 200, response.json()
