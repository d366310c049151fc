"""The last seat goes to exactly one of 20 simultaneous registrations; the others wait.

A barrier between the seat count and the insert (``services.race_point``) makes the race
deterministic: without the lock on the session row every request would count a free seat.
On PostgreSQL the guard is ``SELECT … FOR UPDATE`` on the session; on SQLite the IMMEDIATE
transaction (one writer at a time), so there the barrier can never fill and times out.
"""

from __future__ import annotations

import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection, connections

from fablab.trainings import services
from fablab.trainings.models import Registration
from tests.factories import UserFactory

from .helpers import scene

N = 20


def _race(monkeypatch, *, barrier_timeout: float):
    _lab, _manager, _trainer, _training, _laser, session, now = scene(seats=1)
    members = [UserFactory() for _ in range(N)]
    barrier = threading.Barrier(N, timeout=barrier_timeout)

    def race_point() -> None:
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait()

    monkeypatch.setattr(services, "race_point", race_point)
    gate = threading.Barrier(N)

    def attempt(member) -> str:
        gate.wait(timeout=60)
        try:
            return services.register(session=session, member=member, now=now).status
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=N) as pool:
        results = sorted(pool.map(attempt, members))
    return session, results


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_postgres_last_seat_to_exactly_one_of_twenty(monkeypatch):
    if connection.vendor != "postgresql":
        pytest.skip("row locks are PostgreSQL's; SQLite is proven below")
    session, results = _race(monkeypatch, barrier_timeout=2)
    assert results == ["registered"] + ["waitlisted"] * (N - 1)
    assert Registration.objects.filter(session=session, status="registered").count() == 1


@pytest.mark.django_db(transaction=True)
def test_sqlite_last_seat_to_exactly_one_of_twenty(monkeypatch):
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's guard")
    session, results = _race(monkeypatch, barrier_timeout=0.2)
    assert results == ["registered"] + ["waitlisted"] * (N - 1)
    assert Registration.objects.filter(session=session, status="registered").count() == 1
