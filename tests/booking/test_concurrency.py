"""The proof that nobody can double-book, through the real HTTP stack.

Each proof comes in two halves, as pretix does it: first the race is shown
to exist with the guard switched off (a barrier between the checks and the
insert makes it deterministic), then with the guard on exactly one of the
simultaneous requests wins and the others get 409.

The slot guard is PostgreSQL's exclusion constraint ``booking_no_overlap``;
the quota guard is the lock on the member's row. On SQLite the guard is the
IMMEDIATE write transaction, proven at the end of this module.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
import requests
from django.db import connection
from django.utils import timezone

from fablab.booking import services
from fablab.booking.errors import BookingError
from fablab.booking.models import Booking
from tests.factories import MachineFactory, QuotaPolicyFactory, UserFactory, api_token

N = 20


def next_day_at(hour: int, lab_tz, days: int = 2) -> dt.datetime:
    day = timezone.localdate(timezone=lab_tz) + dt.timedelta(days=days)
    return dt.datetime.combine(day, dt.time(hour), tzinfo=lab_tz)


def install_race_barrier(monkeypatch, parties: int, timeout: float) -> None:
    """Make every request wait between its checks and its insert until all have checked.

    When a guard serializes the requests the barrier can never fill; it then
    times out and each request goes on alone.
    """
    barrier = threading.Barrier(parties, timeout=timeout)

    def race_point() -> None:
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait()

    monkeypatch.setattr(services, "race_point", race_point)


def post_all(url: str, requests_: list[tuple[str, dict]]) -> list[requests.Response]:
    """Send every request at the same moment, each on its own connection."""
    start = threading.Barrier(len(requests_))

    def send(item):
        token, body = item
        start.wait(timeout=60)
        return requests.post(url, json=body, headers={"Authorization": f"Token {token}"}, timeout=120)

    with ThreadPoolExecutor(max_workers=len(requests_)) as pool:
        return list(pool.map(send, requests_))


def codes(responses) -> list[tuple[int, str | None]]:
    return sorted((r.status_code, r.json().get("code") if r.status_code >= 400 else None) for r in responses)


@pytest.fixture
def pg_only():
    if connection.vendor != "postgresql":
        pytest.skip("the exclusion constraint and row locks are PostgreSQL's; SQLite is proven below")


@pytest.fixture
def without_exclusion_constraint(pg_only):
    from fablab.booking.migrations import _no_overlap_sql

    with connection.cursor() as cursor:
        cursor.execute(_no_overlap_sql.DROP)
    yield
    # The double bookings this test made must go before the constraint can return.
    Booking.objects.all().delete()
    with connection.cursor() as cursor:
        cursor.execute(_no_overlap_sql.CREATE)


def slot_requests(machine, makers):
    start = next_day_at(10, machine.lab.tz)
    body = {
        "machine": machine.pk,
        "start": start.isoformat(),
        "end": (start + dt.timedelta(hours=1)).isoformat(),
    }
    return [(api_token(m), body) for m in makers]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_without_the_guard_simultaneous_requests_double_book(
    live_server, monkeypatch, without_exclusion_constraint
):
    machine = MachineFactory()
    makers = [UserFactory() for _ in range(N)]
    install_race_barrier(monkeypatch, N, timeout=30)
    responses = post_all(f"{live_server.url}/api/v1/bookings/", slot_requests(machine, makers))
    winners = [r for r in responses if r.status_code == 201]
    assert len(winners) > 1, codes(responses)
    assert Booking.objects.filter(machine=machine).count() == len(winners)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_with_the_guard_exactly_one_of_twenty_wins(live_server, monkeypatch, pg_only):
    machine = MachineFactory()
    makers = [UserFactory() for _ in range(N)]
    install_race_barrier(monkeypatch, N, timeout=30)
    responses = post_all(f"{live_server.url}/api/v1/bookings/", slot_requests(machine, makers))
    assert codes(responses) == [(201, None)] + [(409, "slot_taken")] * (N - 1)
    assert Booking.objects.filter(machine=machine).count() == 1


def quota_requests(member):
    first = MachineFactory()
    second = MachineFactory(lab=first.lab, machine_type=first.machine_type)
    QuotaPolicyFactory(machine_type=first.machine_type, max_hours_per_week=Decimal("3"))
    token = api_token(member)
    # Two bookings of two hours on the same day: each fits the quota, together they do not.
    start = next_day_at(10, first.lab.tz)
    end = start + dt.timedelta(hours=2)
    return [
        (token, {"machine": m.pk, "start": start.isoformat(), "end": end.isoformat()})
        for m in (first, second)
    ]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_without_the_member_lock_two_requests_exceed_the_quota(live_server, monkeypatch, pg_only):
    member = UserFactory()
    monkeypatch.setattr(services, "lock_member", False)
    install_race_barrier(monkeypatch, 2, timeout=30)
    responses = post_all(f"{live_server.url}/api/v1/bookings/", quota_requests(member))
    assert codes(responses) == [(201, None), (201, None)]
    assert Booking.objects.filter(member=member).count() == 2  # four hours against a quota of three


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_with_the_member_lock_the_quota_holds(live_server, monkeypatch, pg_only):
    member = UserFactory()
    # The lock lets only one request through at a time, so the barrier never
    # fills; keep its timeout short.
    install_race_barrier(monkeypatch, 2, timeout=3)
    responses = post_all(f"{live_server.url}/api/v1/bookings/", quota_requests(member))
    assert codes(responses) == [(201, None), (409, "quota_exceeded")]
    assert Booking.objects.filter(member=member).count() == 1


@pytest.mark.django_db(transaction=True)
def test_sqlite_serializes_check_and_insert(monkeypatch):
    """On SQLite, BEGIN IMMEDIATE lets one writer at a time check and insert."""
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's guard")
    machine = MachineFactory()
    makers = [UserFactory() for _ in range(8)]
    install_race_barrier(monkeypatch, len(makers), timeout=2)
    start = next_day_at(10, machine.lab.tz)
    gate = threading.Barrier(len(makers))

    def attempt(member):
        from django.db import connections

        gate.wait(timeout=60)
        try:
            services.booking_create(
                machine=machine, member=member, start=start, end=start + dt.timedelta(hours=1)
            )
            return "won"
        except BookingError as exc:
            return exc.code
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=len(makers)) as pool:
        results = sorted(pool.map(attempt, makers))
    assert results == ["slot_taken"] * (len(makers) - 1) + ["won"]
    assert Booking.objects.filter(machine=machine).count() == 1
