"""The REST API v1 end to end: token, labs, machines, availability, bookings and every rule's code."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.utils import timezone
from knox.models import AuthToken
from rest_framework.test import APIClient

from fablab.booking.errors import RULES
from fablab.booking.models import Booking, IdempotencyKey
from fablab.labs.models import Closure
from tests.factories import (
    BookingFactory,
    CertificationFactory,
    LabFactory,
    MachineFactory,
    MachineTypeFactory,
    MaintenanceWindowFactory,
    QuotaPolicyFactory,
    TrainingFactory,
    UserFactory,
    api_token,
)

pytestmark = pytest.mark.django_db

BRUSSELS = ZoneInfo("Europe/Brussels")


def local(days: int, hour: int, minute: int = 0) -> dt.datetime:
    """``days`` from today at ``hour:minute``, Brussels wall-clock time."""
    day = timezone.localdate(timezone.now(), BRUSSELS) + dt.timedelta(days=days)
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=BRUSSELS)


def body(machine, start: dt.datetime, end: dt.datetime, purpose: str = "") -> dict:
    return {"machine": machine.pk, "start": start.isoformat(), "end": end.isoformat(), "purpose": purpose}


@pytest.fixture(autouse=True)
def _clear_throttles():
    cache.clear()


@pytest.fixture
def maker():
    return UserFactory(username="maker")


def client_for(user) -> APIClient:
    client = APIClient()
    token = api_token(user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


@pytest.fixture
def api(maker):
    return client_for(maker)


@pytest.fixture
def machine():
    return MachineFactory()


def assert_error(response, status: int, code: str) -> dict:
    data = response.json()
    assert response.status_code == status, data
    assert data["code"] == code, data
    assert isinstance(data["detail"], str) and data["detail"]
    return data


# Token


def test_token_flow():
    UserFactory(username="ada")
    client = APIClient()
    response = client.post(
        "/api/v1/auth/token/", {"username": "ada", "password": "pw-test-1234"}, format="json"
    )
    assert response.status_code == 200
    token = response.json()["token"]
    assert response.json()["expiry"]
    # Only the token's hash is stored.
    assert not AuthToken.objects.filter(digest=token).exists()

    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get("/api/v1/labs/").status_code == 200
    # Asking again gives another token; both work until revoked or expired.
    again = APIClient().post("/api/v1/auth/token/", {"username": "ada", "password": "pw-test-1234"})
    assert again.json()["token"] != token
    assert AuthToken.objects.filter(user__username="ada").count() == 2


def test_token_with_bad_credentials_is_400_with_a_code():
    UserFactory(username="ada")
    client = APIClient()
    response = client.post("/api/v1/auth/token/", {"username": "ada", "password": "wrong"}, format="json")
    assert_error(response, 400, "invalid_credentials")
    assert not AuthToken.objects.exists()


def test_token_for_an_inactive_user_is_refused():
    user = UserFactory(username="gone")
    user.is_active = False
    user.save()
    response = APIClient().post("/api/v1/auth/token/", {"username": "gone", "password": "pw-test-1234"})
    assert_error(response, 400, "invalid_credentials")


def test_token_with_missing_fields_names_them():
    data = assert_error(APIClient().post("/api/v1/auth/token/", {}, format="json"), 400, "invalid")
    assert set(data["fields"]) == {"username", "password"}


def test_a_stale_token_header_does_not_block_getting_a_new_token():
    UserFactory(username="ada")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    response = client.post("/api/v1/auth/token/", {"username": "ada", "password": "pw-test-1234"})
    assert response.status_code == 200


def test_every_endpoint_needs_authentication(machine):
    booking = BookingFactory(machine=machine, start=local(2, 10), end=local(2, 11))
    client = APIClient()
    for method, url in [
        ("get", "/api/v1/labs/"),
        ("get", "/api/v1/machines/"),
        ("get", f"/api/v1/machines/{machine.pk}/"),
        ("get", f"/api/v1/machines/{machine.pk}/availability/"),
        ("get", "/api/v1/bookings/"),
        ("post", "/api/v1/bookings/"),
        ("get", f"/api/v1/bookings/{booking.pk}/"),
        ("post", f"/api/v1/bookings/{booking.pk}/cancel/"),
        ("post", f"/api/v1/bookings/{booking.pk}/approve/"),
        ("post", f"/api/v1/bookings/{booking.pk}/decline/"),
    ]:
        response = getattr(client, method)(url)
        assert_error(response, 401, "not_authenticated")
        assert response["WWW-Authenticate"] == "Token"


def test_a_wrong_token_is_authentication_failed():
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token 0123456789abcdef")
    assert_error(client.get("/api/v1/labs/"), 401, "authentication_failed")


# Labs and machines


def test_labs_list(api):
    lab = LabFactory(slug="bxl-centre", name="Brussels Centre")
    data = api.get("/api/v1/labs/").json()["results"]
    assert data == [
        {
            "id": lab.pk,
            "slug": "bxl-centre",
            "name": "Brussels Centre",
            "time_zone": "Europe/Brussels",
            "address": "",
        }
    ]


def test_machines_list_and_filters(api):
    centre, south = LabFactory(slug="centre"), LabFactory(slug="south")
    printer = MachineTypeFactory(slug="3d-printer", name="3D printer")
    laser = MachineTypeFactory(slug="laser-cutter", name="Laser cutter")
    training = TrainingFactory(slug="laser-basics")
    prusa = MachineFactory(lab=centre, slug="prusa", name="Prusa", machine_type=printer, model="MK4")
    trotec = MachineFactory(
        lab=centre, slug="trotec", name="Trotec", machine_type=laser, required_training=training
    )
    ultimaker = MachineFactory(lab=south, slug="ultimaker", name="Ultimaker", machine_type=printer)

    items = api.get("/api/v1/machines/").json()["results"]
    assert {m["id"] for m in items} == {prusa.pk, trotec.pk, ultimaker.pk}
    by_slug = {m["slug"]: m for m in items}
    expected = {
        "id": prusa.pk,
        "slug": "prusa",
        "lab": "centre",
        "type": "3d-printer",
        "name": "Prusa",
        "model": "MK4",
        "bookable": True,
        "required_training": None,
    }
    assert {key: by_slug["prusa"][key] for key in expected} == expected
    assert by_slug["trotec"]["required_training"] == "laser-basics"

    def slugs(query):
        response = api.get("/api/v1/machines/", query)
        assert response.status_code == 200
        return sorted(m["slug"] for m in response.json()["results"])

    assert slugs({"lab": "centre"}) == ["prusa", "trotec"]
    assert slugs({"type": "3d-printer"}) == ["prusa", "ultimaker"]
    assert slugs({"lab": "south", "type": "3d-printer"}) == ["ultimaker"]
    assert slugs({"lab": "south", "type": "laser-cutter"}) == []
    assert slugs({"lab": "nowhere"}) == []


def test_machine_detail_and_unknown_machine(api, machine):
    assert api.get(f"/api/v1/machines/{machine.pk}/").json()["slug"] == machine.slug
    assert_error(api.get(f"/api/v1/machines/{machine.pk + 1000}/"), 404, "not_found")
    assert_error(api.get(f"/api/v1/machines/{10**30}/"), 404, "not_found")


# Availability


def availability(api, machine, start: str, end: str):
    return api.get(f"/api/v1/machines/{machine.pk}/availability/", {"from": start, "to": end})


def test_availability_lists_free_time_in_the_labs_zone(api, machine):
    BookingFactory(machine=machine, start=local(3, 10), end=local(3, 12))
    response = availability(api, machine, local(3, 0).isoformat(), local(4, 0).isoformat())
    assert response.status_code == 200
    offset = local(3, 0).isoformat()[-6:]
    assert response.json() == [
        {"start": local(3, 8).isoformat(), "end": local(3, 10).isoformat()},
        {"start": local(3, 12).isoformat(), "end": local(3, 20).isoformat()},
    ]
    assert all(item["start"].endswith(offset) for item in response.json())


def test_availability_accepts_utc_and_a_plus_turned_into_a_space(api, machine):
    start_utc = local(3, 0).astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    first = availability(api, machine, start_utc, local(4, 0).isoformat())
    assert first.status_code == 200
    # A client that forgets to write + as %2B sends a space.
    raw = local(3, 0).isoformat().replace("+", " ")
    url = f"/api/v1/machines/{machine.pk}/availability/?from={raw}&to={local(4, 0).isoformat().replace('+', '%2B')}"
    second = api.get(url)
    assert second.status_code == 200
    assert second.json() == first.json()


def test_availability_validates_the_range(api, machine):
    start, end = local(3, 0), local(4, 0)
    missing = assert_error(api.get(f"/api/v1/machines/{machine.pk}/availability/"), 400, "invalid")
    assert set(missing["fields"]) == {"from", "to"}
    naive = assert_error(availability(api, machine, "2026-03-02T09:00:00", end.isoformat()), 400, "invalid")
    assert list(naive["fields"]) == ["from"]
    garbage = assert_error(availability(api, machine, start.isoformat(), "next tuesday"), 400, "invalid")
    assert list(garbage["fields"]) == ["to"]
    assert_error(availability(api, machine, end.isoformat(), start.isoformat()), 400, "invalid_range")
    assert_error(availability(api, machine, start.isoformat(), start.isoformat()), 400, "invalid_range")
    too_long = start + dt.timedelta(days=63)
    assert_error(availability(api, machine, start.isoformat(), too_long.isoformat()), 400, "invalid_range")
    assert (
        availability(api, machine, start.isoformat(), (start + dt.timedelta(days=62)).isoformat()).status_code
        == 200
    )
    assert_error(availability(api, machine, "0001-01-01T00:00:00+01:00", end.isoformat()), 400, "invalid")


def test_availability_of_an_unknown_machine_is_404(api):
    response = api.get("/api/v1/machines/999999/availability/", {"from": "x", "to": "y"})
    assert_error(response, 404, "not_found")


# Bookings


def test_create_booking(api, maker, machine):
    response = api.post(
        "/api/v1/bookings/", body(machine, local(2, 10), local(2, 11), " a lamp "), format="json"
    )
    assert response.status_code == 201, response.json()
    data = response.json()
    booking = Booking.objects.get()
    assert booking.member == maker and booking.status == Booking.Status.CONFIRMED
    assert data == {
        "id": booking.pk,
        "machine": machine.pk,
        "machine_slug": machine.slug,
        "machine_name": machine.name,
        "lab": machine.lab.slug,
        "member": "maker",
        "start": local(2, 10).isoformat(),
        "end": local(2, 11).isoformat(),
        "status": "confirmed",
        "purpose": "a lamp",
        "cancel_reason": "",
        "created_at": data["created_at"],
        "kind": "member",
        "title": "",
        "check_in_opens_at": local(2, 9, 45).isoformat(),
        "check_in_closes_at": local(2, 10, 15).isoformat(),
        "checked_in_at": None,
        "check_in_via": "",
        "unavailable": "",
        "released_at": None,
        "completed_at": None,
        "used_minutes": 0.0,
        "overrun_minutes": 0.0,
        "energy_wh": None,
        "job_outcome": "",
    }


def test_create_booking_accepts_utc_and_form_data(api, machine):
    start, end = local(2, 10).astimezone(dt.UTC), local(2, 11).astimezone(dt.UTC)
    response = api.post(
        "/api/v1/bookings/",
        {"machine": machine.pk, "start": start.strftime("%Y-%m-%dT%H:%M:%SZ"), "end": end.isoformat()},
    )
    assert response.status_code == 201, response.json()
    assert Booking.objects.get().start == start


def test_machines_needing_approval_give_pending_bookings(api, machine):
    machine.approval_required = True
    machine.save()
    response = api.post("/api/v1/bookings/", body(machine, local(2, 10), local(2, 11)), format="json")
    assert response.status_code == 201
    assert response.json()["status"] == "pending"


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("2030-03-02T09:00:00", "2030-03-02T10:00:00+01:00"),
        ("2030-03-02T09:00:00+01:00", "2030-03-02T10:00:00"),
    ],
)
def test_naive_datetimes_are_a_field_error(api, machine, start, end):
    response = api.post(
        "/api/v1/bookings/", {"machine": machine.pk, "start": start, "end": end}, format="json"
    )
    data = assert_error(response, 400, "invalid")
    naive = "end" if "+" in start else "start"
    assert list(data["fields"]) == [naive]
    assert "offset" in data["fields"][naive][0]
    assert not Booking.objects.exists()


def test_invalid_bodies_name_their_fields(api, machine):
    data = assert_error(api.post("/api/v1/bookings/", {}, format="json"), 400, "invalid")
    assert set(data["fields"]) == {"machine", "start", "end"}
    unknown = body(machine, local(2, 10), local(2, 11)) | {"machine": machine.pk + 999}
    assert list(
        assert_error(api.post("/api/v1/bookings/", unknown, format="json"), 400, "invalid")["fields"]
    ) == ["machine"]
    long_purpose = body(machine, local(2, 10), local(2, 11), "x" * 301)
    assert list(
        assert_error(api.post("/api/v1/bookings/", long_purpose, format="json"), 400, "invalid")["fields"]
    ) == ["purpose"]
    assert not Booking.objects.exists()


def test_a_maker_sees_only_their_own_bookings(api, maker, machine):
    mine = BookingFactory(machine=machine, member=maker, start=local(2, 10), end=local(2, 11))
    other = BookingFactory(machine=machine, start=local(2, 12), end=local(2, 13), purpose="secret")
    listed = api.get("/api/v1/bookings/").json()["results"]
    assert [b["id"] for b in listed] == [mine.pk]
    assert api.get(f"/api/v1/bookings/{mine.pk}/").json()["id"] == mine.pk
    # Someone else's booking does not exist as far as a maker can tell.
    response = api.get(f"/api/v1/bookings/{other.pk}/")
    data = assert_error(response, 404, "not_found")
    assert data == assert_error(api.get("/api/v1/bookings/987654/"), 404, "not_found")
    assert "secret" not in response.content.decode()
    # ... even when asking for the lab.
    there = api.get("/api/v1/bookings/", {"lab": machine.lab.slug}).json()["results"]
    assert [b["id"] for b in there] == [mine.pk]


def test_booking_list_filters(api, maker):
    lab = LabFactory()
    printer, other_machine = MachineFactory(lab=lab), MachineFactory(lab=lab)
    first = BookingFactory(machine=printer, member=maker, start=local(2, 10), end=local(2, 11))
    second = BookingFactory(
        machine=other_machine,
        member=maker,
        start=local(5, 10),
        end=local(5, 11),
        status=Booking.Status.CANCELLED,
    )

    def ids(query):
        response = api.get("/api/v1/bookings/", query)
        assert response.status_code == 200, response.json()
        return [b["id"] for b in response.json()["results"]]

    assert ids({}) == [first.pk, second.pk]
    assert ids({"machine": printer.pk}) == [first.pk]
    assert ids({"status": "cancelled"}) == [second.pk]
    assert ids({"from": local(4, 0).isoformat()}) == [second.pk]
    assert ids({"from": local(1, 0).isoformat(), "to": local(3, 0).isoformat()}) == [first.pk]
    assert_error(api.get("/api/v1/bookings/", {"status": "lost"}), 400, "invalid")
    assert_error(api.get("/api/v1/bookings/", {"machine": "one"}), 400, "invalid")
    assert_error(
        api.get("/api/v1/bookings/", {"from": local(3, 0).isoformat(), "to": local(1, 0).isoformat()}),
        400,
        "invalid_range",
    )


def test_cancel_own_booking(api, maker, machine):
    booking = BookingFactory(machine=machine, member=maker, start=local(2, 10), end=local(2, 11))
    response = api.post(f"/api/v1/bookings/{booking.pk}/cancel/")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert response.json()["cancel_reason"] == "member"
    assert_error(api.post(f"/api/v1/bookings/{booking.pk}/cancel/"), 409, "not_cancellable")


def test_cancelling_someone_elses_booking_is_404(api, machine):
    other = BookingFactory(machine=machine, start=local(2, 10), end=local(2, 11))
    assert_error(api.post(f"/api/v1/bookings/{other.pk}/cancel/"), 404, "not_found")
    other.refresh_from_db()
    assert other.status == Booking.Status.CONFIRMED


def test_a_started_booking_cannot_be_cancelled_by_its_member(api, maker, machine):
    booking = BookingFactory(
        machine=machine,
        member=maker,
        start=timezone.now() - dt.timedelta(minutes=10),
        end=timezone.now() + dt.timedelta(minutes=20),
    )
    assert_error(api.post(f"/api/v1/bookings/{booking.pk}/cancel/"), 409, "not_cancellable")


# Idempotent creation


def test_a_retried_post_with_the_same_key_returns_the_same_booking(api, machine):
    request = body(machine, local(2, 10), local(2, 11), "lamp")
    first = api.post("/api/v1/bookings/", request, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    again = api.post("/api/v1/bookings/", request, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert "Idempotent-Replayed" not in first
    assert again["Idempotent-Replayed"] == "true"
    assert Booking.objects.count() == 1


def test_a_retry_still_finds_its_booking_when_the_key_was_forgotten(api, machine):
    request = body(machine, local(2, 10), local(2, 11))
    first = api.post("/api/v1/bookings/", request, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    IdempotencyKey.objects.all().delete()  # a day later: the key has expired
    again = api.post("/api/v1/bookings/", request, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert again.status_code == 201
    assert again.json()["id"] == first.json()["id"]
    assert Booking.objects.count() == 1


def test_reusing_a_key_for_another_request_is_refused(api, machine):
    api.post(
        "/api/v1/bookings/",
        body(machine, local(2, 10), local(2, 11)),
        format="json",
        HTTP_IDEMPOTENCY_KEY="k",
    )
    other = body(machine, local(3, 10), local(3, 11))
    assert_error(
        api.post("/api/v1/bookings/", other, format="json", HTTP_IDEMPOTENCY_KEY="k"),
        409,
        "idempotency_key_reused",
    )
    assert Booking.objects.count() == 1


def test_keys_belong_to_one_member(api, machine):
    api.post(
        "/api/v1/bookings/",
        body(machine, local(2, 10), local(2, 11)),
        format="json",
        HTTP_IDEMPOTENCY_KEY="k",
    )
    # Someone else's identical request with the same key is a new request, and loses the slot.
    rival = client_for(UserFactory())
    response = rival.post(
        "/api/v1/bookings/",
        body(machine, local(2, 10), local(2, 11)),
        format="json",
        HTTP_IDEMPOTENCY_KEY="k",
    )
    assert_error(response, 409, "slot_taken")
    mine_later = rival.post(
        "/api/v1/bookings/",
        body(machine, local(3, 10), local(3, 11)),
        format="json",
        HTTP_IDEMPOTENCY_KEY="k",
    )
    assert mine_later.status_code == 201
    assert Booking.objects.count() == 2


def test_without_a_key_a_members_repeat_is_already_booked_by_you(api, machine):
    request = body(machine, local(2, 10), local(2, 11))
    assert api.post("/api/v1/bookings/", request, format="json").status_code == 201
    data = assert_error(api.post("/api/v1/bookings/", request, format="json"), 409, "already_booked_by_you")
    assert data["detail"] == "You already have a booking for this time."
    # Someone else asking for that time is told it is taken.
    rival = client_for(UserFactory())
    assert_error(rival.post("/api/v1/bookings/", request, format="json"), 409, "slot_taken")


@pytest.mark.parametrize("key", ["", "with space", "x" * 256, "caf\u00e9"])
def test_malformed_keys_are_a_field_error(api, machine, key):
    response = api.post(
        "/api/v1/bookings/",
        body(machine, local(2, 10), local(2, 11)),
        format="json",
        HTTP_IDEMPOTENCY_KEY=key,
    )
    assert list(assert_error(response, 400, "invalid")["fields"]) == ["Idempotency-Key"]
    assert not Booking.objects.exists()


# Lab managers


@pytest.fixture
def managed():
    """A lab with a manager, a machine needing approval there and a pending booking on it."""
    lab = LabFactory(slug="managed")
    manager = UserFactory(username="boss")
    lab.managers.add(manager)
    machine = MachineFactory(lab=lab, approval_required=True)
    pending = BookingFactory(
        machine=machine,
        start=local(2, 10),
        end=local(2, 11),
        status=Booking.Status.PENDING,
        purpose="a chair",
    )
    return lab, manager, machine, pending


def test_a_manager_lists_their_labs_bookings(managed, maker):
    _lab, manager, _machine, pending = managed
    own_elsewhere = BookingFactory(member=manager, start=local(3, 10), end=local(3, 11))
    elsewhere = BookingFactory(start=local(3, 10), end=local(3, 11))
    boss = client_for(manager)
    in_the_lab = boss.get("/api/v1/bookings/", {"lab": "managed"}).json()["results"]
    assert [b["id"] for b in in_the_lab] == [pending.pk]
    data = boss.get(f"/api/v1/bookings/{pending.pk}/").json()
    assert data["member"] == pending.member.username and data["purpose"] == "a chair"
    # Without a lab, only their own; other labs' bookings stay hidden.
    assert [b["id"] for b in boss.get("/api/v1/bookings/").json()["results"]] == [own_elsewhere.pk]
    assert_error(boss.get(f"/api/v1/bookings/{elsewhere.pk}/"), 404, "not_found")
    lab_slug = elsewhere.machine.lab.slug
    assert boss.get("/api/v1/bookings/", {"lab": lab_slug}).json()["results"] == []


def test_manager_approves(managed):
    _lab, manager, _machine, pending = managed
    response = client_for(manager).post(f"/api/v1/bookings/{pending.pk}/approve/")
    assert response.status_code == 200
    assert response.json()["status"] == "confirmed"
    pending.refresh_from_db()
    assert pending.decided_by == manager
    assert_error(client_for(manager).post(f"/api/v1/bookings/{pending.pk}/approve/"), 409, "not_pending")


def test_manager_declines(managed):
    _lab, manager, _machine, pending = managed
    response = client_for(manager).post(f"/api/v1/bookings/{pending.pk}/decline/")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert response.json()["cancel_reason"] == "declined"


def test_manager_cancels_a_booking_of_their_lab(managed):
    _lab, manager, _machine, pending = managed
    response = client_for(manager).post(f"/api/v1/bookings/{pending.pk}/cancel/")
    assert response.status_code == 200
    assert response.json()["cancel_reason"] == "manager"


@pytest.mark.parametrize("action", ["approve", "decline"])
def test_non_managers_cannot_decide(managed, api, maker, action):
    _lab, _manager, machine, pending = managed
    own = BookingFactory(
        machine=machine, member=maker, start=local(4, 10), end=local(4, 11), status=Booking.Status.PENDING
    )
    assert_error(api.post(f"/api/v1/bookings/{own.pk}/{action}/"), 403, "forbidden")
    assert_error(api.post(f"/api/v1/bookings/{pending.pk}/{action}/"), 403, "forbidden")
    # A manager of another lab does not even see the booking.
    stranger = UserFactory()
    LabFactory().managers.add(stranger)
    assert_error(client_for(stranger).post(f"/api/v1/bookings/{pending.pk}/{action}/"), 404, "not_found")
    pending.refresh_from_db()
    own.refresh_from_db()
    assert pending.status == own.status == Booking.Status.PENDING


# Every rule has its own code through the API.


def scenario(code: str, maker, machine) -> dict:
    """Set the scene for ``code`` and return the request body that must break exactly that rule."""
    ten, eleven = local(2, 10), local(2, 11)
    if code == "slot_taken":
        BookingFactory(machine=machine, start=local(2, 9), end=local(2, 10, 30))
    elif code == "outside_opening_hours":
        ten, eleven = local(2, 6), local(2, 7)
    elif code == "maintenance":
        MaintenanceWindowFactory(machine=machine, start=local(2, 10, 30), end=local(2, 12))
    elif code in ("not_certified", "certification_expired"):
        machine.required_training = TrainingFactory()
        machine.save()
        if code == "certification_expired":
            # Valid now, but lapsed before the booking ends.
            CertificationFactory(
                member=maker, training=machine.required_training, expires_at=local(2, 10, 30)
            )
    elif code == "too_short":
        machine.min_duration_minutes = 60
        machine.save()
        eleven = local(2, 10, 30)
    elif code == "too_long":
        eleven = local(2, 15)
    elif code == "too_soon":
        machine.min_notice_minutes = 4 * 24 * 60
        machine.save()
    elif code == "too_far_ahead":
        ten, eleven = local(40, 10), local(40, 11)
    elif code == "quota_exceeded":
        QuotaPolicyFactory(machine_type=machine.machine_type, max_hours_per_week=1)
        eleven = local(2, 12)
    elif code == "too_many_bookings":
        QuotaPolicyFactory(machine_type=machine.machine_type, max_future_bookings=1)
        BookingFactory(machine=machine, member=maker, start=local(3, 10), end=local(3, 11))
    elif code == "invalid_range":
        ten, eleven = local(2, 11), local(2, 10)
    elif code == "bad_granularity":
        ten = local(2, 10, 15)
    elif code == "lab_closed":
        day = ten.date()
        Closure.objects.create(lab=machine.lab, starts_on=day, ends_on=day, reason="Holiday")
    elif code == "not_bookable":
        machine.bookable = False
        machine.save()
    elif code == "in_past":
        ten, eleven = local(-1, 10), local(-1, 11)
    else:
        raise AssertionError(code)
    return body(machine, ten, eleven)


CREATE_CODES = [
    "slot_taken",
    "outside_opening_hours",
    "maintenance",
    "not_certified",
    "certification_expired",
    "too_short",
    "too_long",
    "too_soon",
    "too_far_ahead",
    "quota_exceeded",
    "invalid_range",
    "bad_granularity",
    "lab_closed",
    "too_many_bookings",
    "not_bookable",
    "in_past",
]


@pytest.mark.parametrize("code", CREATE_CODES)
def test_each_rule_has_its_code(api, maker, machine, code):
    request = scenario(code, maker, machine)
    before = Booking.objects.count()
    response = api.post("/api/v1/bookings/", request, format="json")
    assert_error(response, RULES[code][0], code)
    assert response.json()["detail"] == str(RULES[code][1])
    assert Booking.objects.count() == before


def test_slot_taken_is_409():
    # The headline rule, spelled out: a second booking of the same time loses.
    machine = MachineFactory()
    first, second = client_for(UserFactory()), client_for(UserFactory())
    request = body(machine, local(2, 10), local(2, 11))
    assert first.post("/api/v1/bookings/", request, format="json").status_code == 201
    assert_error(second.post("/api/v1/bookings/", request, format="json"), 409, "slot_taken")
    assert Booking.objects.count() == 1


def test_messages_follow_the_members_language_unless_the_request_asks_for_one(machine):
    dutch = client_for(UserFactory(username="els", language="nl"))
    english = client_for(UserFactory(username="eve", language="en"))
    in_english = assert_error(english.post("/api/v1/bookings/", {}, format="json"), 400, "invalid")
    response = dutch.post("/api/v1/bookings/", {}, format="json")
    in_dutch = assert_error(response, 400, "invalid")
    assert response["Content-Language"] == "nl"
    # DRF ships Dutch and French messages, so this holds before our own catalogues exist.
    assert in_dutch["fields"]["start"] != in_english["fields"]["start"]
    response = dutch.post("/api/v1/bookings/", {}, format="json", HTTP_ACCEPT_LANGUAGE="fr")
    in_french = assert_error(response, 400, "invalid")
    assert response["Content-Language"] == "fr"
    assert (
        len(
            {
                in_french["fields"]["start"][0],
                in_dutch["fields"]["start"][0],
                in_english["fields"]["start"][0],
            }
        )
        == 3
    )


# The schema


def test_schema_validates_without_warnings(tmp_path):
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"))
    assert "/api/v1/bookings/{id}/approve/" in (tmp_path / "schema.yaml").read_text()


def test_schema_is_served_and_documents_the_error_codes(api):
    response = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = response.json()
    paths = schema["paths"]
    for path in [
        "/api/v1/auth/token/",
        "/api/v1/labs/",
        "/api/v1/machines/",
        "/api/v1/machines/{id}/availability/",
        "/api/v1/bookings/",
        "/api/v1/bookings/{id}/",
        "/api/v1/bookings/{id}/cancel/",
        "/api/v1/bookings/{id}/approve/",
        "/api/v1/bookings/{id}/decline/",
    ]:
        assert path in paths
    create = paths["/api/v1/bookings/"]["post"]["responses"]
    described = " ".join(create[status]["description"] for status in ("400", "403", "409"))
    for code in CREATE_CODES:
        assert f"`{code}`" in described
    assert create["409"]["content"]["application/json"]["schema"]["$ref"] == "#/components/schemas/Error"
    assert set(schema["components"]["schemas"]["Error"]["properties"]) == {"code", "detail", "fields"}
    # Swagger UI is served from vendored files.
    assert api.get("/api/docs/").status_code == 200
