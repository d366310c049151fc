"""The Idempotency-Key store is the database: shared by every process, decided by a unique constraint."""

from __future__ import annotations

import datetime as dt
import threading
import zoneinfo
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from django.db import IntegrityError, connections, transaction
from django.utils import timezone
from rest_framework.test import APIClient

from fablab.booking import api, idempotency
from fablab.booking.models import Booking, IdempotencyKey
from tests.factories import MachineFactory, UserFactory, api_token

BRUSSELS = zoneinfo.ZoneInfo("Europe/Brussels")


def at(hour: int, days: int = 2) -> dt.datetime:
    day = timezone.localdate(timezone=BRUSSELS) + dt.timedelta(days=days)
    return dt.datetime.combine(day, dt.time(hour), tzinfo=BRUSSELS)


def body(machine, hour: int = 10) -> dict:
    return {"machine": machine.pk, "start": at(hour).isoformat(), "end": at(hour + 1).isoformat()}


def client_for(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token(user)}")
    return client


@pytest.mark.django_db
def test_the_key_is_stored_hashed_with_its_booking_and_an_expiry():
    member, machine = UserFactory(), MachineFactory()
    response = client_for(member).post(
        "/api/v1/bookings/", body(machine), format="json", HTTP_IDEMPOTENCY_KEY="k-1"
    )
    assert response.status_code == 201
    row = IdempotencyKey.objects.get()
    assert row.member == member and row.booking_id == response.json()["id"]
    assert "k-1" not in (row.key_hash, row.fingerprint)
    assert row.expires_at - row.claimed_at == idempotency.TTL


@pytest.mark.django_db
def test_one_key_per_member_is_enforced_by_the_database():
    member = UserFactory()
    now = timezone.now()
    fields = {"member": member, "key_hash": "a" * 64, "fingerprint": "b" * 64, "claimed_at": now}
    IdempotencyKey.objects.create(expires_at=now + idempotency.TTL, **fields)
    with pytest.raises(IntegrityError), transaction.atomic():
        IdempotencyKey.objects.create(expires_at=now + idempotency.TTL, **fields)


@pytest.mark.django_db
def test_a_refused_request_gives_its_key_back_so_the_retry_is_judged_again():
    member = UserFactory()
    machine = MachineFactory(bookable=False)
    client = client_for(member)
    first = client.post("/api/v1/bookings/", body(machine), format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert first.json()["code"] == "not_bookable"
    assert not IdempotencyKey.objects.exists()
    machine.bookable = True
    machine.save()
    again = client.post("/api/v1/bookings/", body(machine), format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert again.status_code == 201 and "Idempotent-Replayed" not in again


@pytest.mark.django_db
def test_an_expired_key_is_forgotten_and_the_retry_finds_its_identical_booking():
    member, machine = UserFactory(), MachineFactory()
    client = client_for(member)
    first = client.post("/api/v1/bookings/", body(machine), format="json", HTTP_IDEMPOTENCY_KEY="k")
    IdempotencyKey.objects.update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    again = client.post("/api/v1/bookings/", body(machine), format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert again.status_code == 201 and again["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    # The expired row went; the key now points at the booking again, for another day.
    row = IdempotencyKey.objects.get()
    assert row.booking_id == first.json()["id"] and row.expires_at > timezone.now()


@pytest.mark.django_db
def test_an_expired_key_may_be_used_for_another_request():
    member, machine = UserFactory(), MachineFactory()
    client = client_for(member)
    client.post("/api/v1/bookings/", body(machine, 10), format="json", HTTP_IDEMPOTENCY_KEY="k")
    IdempotencyKey.objects.update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    other = client.post("/api/v1/bookings/", body(machine, 14), format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert other.status_code == 201 and "Idempotent-Replayed" not in other
    assert Booking.objects.count() == 2


@pytest.mark.django_db
def test_a_claim_left_by_a_request_that_died_is_taken_over_after_the_timeout():
    member, machine = UserFactory(), MachineFactory()
    fingerprint = idempotency.fingerprint(
        api._fingerprint(api._valid(api.BookingCreateSerializer, body(machine)))
    )
    assert idempotency.begin(member, "k", fingerprint) is None  # claimed, then the worker died
    client = client_for(member)
    in_flight = client.post("/api/v1/bookings/", body(machine), format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert in_flight.status_code == 409 and in_flight.json()["code"] == "idempotency_key_in_flight"
    IdempotencyKey.objects.update(claimed_at=timezone.now() - idempotency.IN_FLIGHT_TIMEOUT)
    retry = client.post("/api/v1/bookings/", body(machine), format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert retry.status_code == 201
    assert Booking.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_while_the_first_request_runs_a_second_with_the_key_gets_409_in_flight_then_the_replay(monkeypatch):
    """Two threads, each with its own database connection, as two server processes would be."""
    member, machine = UserFactory(), MachineFactory()
    token = api_token(member)
    claimed, release = threading.Event(), threading.Event()
    real_create = api._create

    def slow_create(request, data):
        # The first request holds the key and pauses before booking.
        claimed.set()
        assert release.wait(timeout=60)
        return real_create(request, data)

    monkeypatch.setattr(api, "_create", slow_create)

    def post():
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
        try:
            return client.post("/api/v1/bookings/", body(machine), format="json", HTTP_IDEMPOTENCY_KEY="twin")
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=1) as pool:
        first = pool.submit(post)
        assert claimed.wait(timeout=60)
        monkeypatch.setattr(api, "_create", real_create)
        second = APIClient()
        second.credentials(HTTP_AUTHORIZATION=f"Token {token}")
        during = second.post("/api/v1/bookings/", body(machine), format="json", HTTP_IDEMPOTENCY_KEY="twin")
        release.set()
        made = first.result(timeout=60)
    assert during.status_code == 409, during.json()
    assert during.json()["code"] == "idempotency_key_in_flight"
    assert made.status_code == 201 and "Idempotent-Replayed" not in made
    after = second.post("/api/v1/bookings/", body(machine), format="json", HTTP_IDEMPOTENCY_KEY="twin")
    assert after.status_code == 201 and after["Idempotent-Replayed"] == "true"
    assert after.json() == made.json()
    assert Booking.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_simultaneous_requests_with_one_key_make_one_booking_and_the_rest_replay_or_wait(live_server):
    member, machine = UserFactory(), MachineFactory()
    token = api_token(member)
    n = 6
    gate = threading.Barrier(n)

    def send(_i):
        gate.wait(timeout=60)
        return requests.post(
            f"{live_server.url}/api/v1/bookings/",
            json=body(machine),
            headers={"Authorization": f"Token {token}", "Idempotency-Key": "same"},
            timeout=120,
        )

    with ThreadPoolExecutor(max_workers=n) as pool:
        responses = list(pool.map(send, range(n)))
    made = [r for r in responses if r.status_code == 201 and "Idempotent-Replayed" not in r.headers]
    replayed = [r for r in responses if r.headers.get("Idempotent-Replayed") == "true"]
    waiting = [r for r in responses if r.status_code == 409]
    assert len(made) == 1, [(r.status_code, r.text) for r in responses]
    assert len(made) + len(replayed) + len(waiting) == n
    assert all(r.json()["code"] == "idempotency_key_in_flight" for r in waiting)
    assert all(r.json()["id"] == made[0].json()["id"] for r in replayed)
    assert Booking.objects.count() == 1
