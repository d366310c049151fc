"""The scheduler's pass: no-shows at the right minute, unavailable machines, completion, side-by-side schedulers.

Time is the test's (``time_machine``, not ticking); each pass is given the same ``now``. The machine's
past is written as the hub would have (state changes, usage sessions, the live status).
"""

from __future__ import annotations

import datetime as dt
import threading

import pytest
import time_machine
from django.core import mail
from django.db import connection

from devices.models import Alert, MachineLink, MachineStatus, StateChange, UsageSession
from devices.scheduler import Scheduler
from fablab.booking import services
from fablab.booking.models import Booking
from fablab.booking.signals import booking_changed
from tests.devices.conftest import make_machine
from tests.factories import BookingFactory, MaintenanceWindowFactory, UserFactory

T0 = dt.datetime(2030, 1, 7, 9, 0, tzinfo=dt.UTC)  # 10:00 in the lab (Europe/Brussels), open 08-20


def at(minutes: float = 0, seconds: float = 0) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes, seconds=seconds)


@pytest.fixture
def clock():
    with time_machine.travel(at(-30), tick=False) as traveller:
        yield traveller


def machine_that_was(state: str, *, interlock: bool = False):
    """A linked machine whose state since well before the start is ``state`` (15 min grace, 15 min slots)."""
    machine = make_machine(adapter="octoprint")
    machine.slot_minutes = machine.min_duration_minutes = 15
    machine.save()
    MachineLink.objects.filter(machine=machine).update(interlock=interlock)
    StateChange.objects.create(machine=machine, state=state, previous_state="", at=at(-120))
    MachineStatus.objects.create(machine=machine, state=state, online=state != "offline", since=at(-120))
    return machine


def booking_of(machine, **kwargs) -> Booking:
    return BookingFactory(machine=machine, start=at(0), end=at(60), **kwargs)


def run(clock, minutes: float, seconds: float = 0, capture=None) -> dict[str, int]:
    clock.move_to(at(minutes, seconds))
    if capture is None:
        return Scheduler().run_pass(at(minutes, seconds))
    with capture(execute=True):
        return Scheduler().run_pass(at(minutes, seconds))


@pytest.mark.django_db
def test_a_booking_without_check_in_is_a_no_show_at_start_plus_grace_and_not_a_minute_before(
    clock, django_capture_on_commit_callbacks
):
    machine = machine_that_was("idle")
    booking = booking_of(machine)
    run(clock, 14, 59, django_capture_on_commit_callbacks)
    assert Booking.objects.get(pk=booking.pk).status == Booking.Status.CONFIRMED
    assert mail.outbox == []

    run(clock, 15, 0, django_capture_on_commit_callbacks)
    booking.refresh_from_db()
    assert booking.status == Booking.Status.NO_SHOW and booking.released_at == at(15)
    assert (booking.start, booking.end) == (at(0), at(60))  # never shortened
    assert len(mail.outbox) == 1 and mail.outbox[0].to == [booking.member.email]

    # The rest of the slot is bookable again, by someone else.
    other = UserFactory()
    again = services.booking_create(machine=machine, member=other, start=at(15), end=at(60), now=at(15))
    assert again.status == Booking.Status.CONFIRMED
    run(clock, 16, 0, django_capture_on_commit_callbacks)
    assert sum(m.subject.startswith("Missed booking released") for m in mail.outbox) == 1


@pytest.mark.django_db
def test_a_booking_whose_machine_was_offline_at_its_start_is_unavailable_never_a_no_show(
    clock, django_capture_on_commit_callbacks
):
    machine = machine_that_was("offline")
    booking = booking_of(machine)
    run(clock, 0, 5, django_capture_on_commit_callbacks)
    booking.refresh_from_db()
    assert booking.unavailable == Booking.Unavailable.OFFLINE and booking.status == Booking.Status.CONFIRMED
    alert = Alert.objects.get(machine=machine, kind=Alert.Kind.BOOKED_OFFLINE)
    assert alert.booking_id == booking.pk and alert.cleared_at is None

    run(clock, 20, 0, django_capture_on_commit_callbacks)
    assert Booking.objects.get(pk=booking.pk).status == Booking.Status.CONFIRMED
    assert mail.outbox == []

    MachineStatus.objects.filter(machine=machine).update(online=True, state="idle")
    run(clock, 21, 0, django_capture_on_commit_callbacks)
    assert Alert.objects.get(pk=alert.pk).cleared_at == at(21)
    # The check-in stays open until the end, and the booking completes at its end.
    run(clock, 60, 0, django_capture_on_commit_callbacks)
    assert Booking.objects.get(pk=booking.pk).status == Booking.Status.COMPLETED


@pytest.mark.django_db
def test_a_machine_in_error_or_in_maintenance_at_the_start_makes_the_booking_unavailable(clock):
    in_error = booking_of(machine_that_was("error"))
    maintained = machine_that_was("idle")
    MaintenanceWindowFactory(machine=maintained, start=at(-10), end=at(30))
    in_maintenance = booking_of(maintained)
    run(clock, 1)
    assert Booking.objects.get(pk=in_error.pk).unavailable == Booking.Unavailable.ERROR
    assert Booking.objects.get(pk=in_maintenance.pk).unavailable == Booking.Unavailable.OUT_OF_SERVICE
    assert list(
        Alert.objects.filter(kind=Alert.Kind.BOOKED_OFFLINE).values_list("booking_id", flat=True)
    ) == [in_error.pk]


@pytest.mark.django_db
def test_a_job_checks_in_a_machine_without_interlock_but_is_no_excuse_on_an_interlocked_one(clock):
    free = machine_that_was("idle")
    locked = machine_that_was("idle", interlock=True)
    free_booking, locked_booking = booking_of(free), booking_of(locked)
    for machine in (free, locked):
        UsageSession.objects.create(machine=machine, started_at=at(-5), ended_at=at(3))
    run(clock, 15)
    free_booking.refresh_from_db()
    assert free_booking.status == Booking.Status.CHECKED_IN
    assert (free_booking.check_in_via, free_booking.checked_in_at) == ("machine", at(-5))
    # Someone else's job ran on the locked machine; its member never checked in.
    assert Booking.objects.get(pk=locked_booking.pk).status == Booking.Status.NO_SHOW


@pytest.mark.django_db
def test_a_machine_running_at_the_deadline_counts_as_activity(clock):
    machine = machine_that_was("running")
    booking = booking_of(machine)
    run(clock, 15)
    assert Booking.objects.get(pk=booking.pk).status == Booking.Status.CHECKED_IN


@pytest.mark.django_db
def test_bookings_complete_at_their_end(clock):
    machine = machine_that_was("idle")
    checked_in = booking_of(machine, status=Booking.Status.CHECKED_IN, checked_in_at=at(0))
    workshop = BookingFactory(
        machine=machine, start=at(60), end=at(90), kind=Booking.Kind.WORKSHOP, member=None, title="Workshop"
    )
    run(clock, 59, 59)
    assert Booking.objects.get(pk=checked_in.pk).status == Booking.Status.CHECKED_IN
    run(clock, 60)
    assert Booking.objects.get(pk=checked_in.pk).completed_at == at(60)
    run(clock, 90)
    assert Booking.objects.get(pk=workshop.pk).status == Booking.Status.COMPLETED


@pytest.mark.django_db
def test_a_pass_survives_a_failing_step_and_says_so(clock, monkeypatch):
    from devices import scheduler

    def broken(now):
        raise RuntimeError("database gone")

    monkeypatch.setattr(scheduler, "no_shows", broken)
    booking = booking_of(machine_that_was("idle"), status=Booking.Status.CHECKED_IN, checked_in_at=at(0))
    done = run(clock, 60)
    assert done["no_show"] == -1 and done["completed"] == 1
    assert Booking.objects.get(pk=booking.pk).status == Booking.Status.COMPLETED


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_schedulers_side_by_side_release_a_no_show_once(clock):
    if connection.vendor != "postgresql":
        pytest.skip("concurrent writers need PostgreSQL; the claim is the same conditional UPDATE on SQLite")
    machines = [machine_that_was("idle") for _ in range(5)]
    bookings = [booking_of(m) for m in machines]
    changes: list[tuple[int, str]] = []
    lock = threading.Lock()

    def count(sender, *, booking_id, machine_id, change, **kwargs):
        with lock:
            changes.append((booking_id, change))

    booking_changed.connect(count, dispatch_uid="test-scheduler-count")
    clock.move_to(at(15))
    start = threading.Barrier(2)
    results: list[dict[str, int]] = []
    errors: list[BaseException] = []

    def scheduler() -> None:
        try:
            start.wait(timeout=30)
            results.append(Scheduler().run_pass(at(15)))
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=scheduler) for _ in range(2)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    finally:
        booking_changed.disconnect(dispatch_uid="test-scheduler-count")
    assert not errors, errors
    assert sum(r["no_show"] for r in results) == len(bookings)
    assert sorted(changes) == sorted((b.pk, "no_show") for b in bookings)
    assert len(mail.outbox) == len(bookings)
    assert set(Booking.objects.values_list("status", flat=True)) == {Booking.Status.NO_SHOW}


@pytest.mark.django_db(transaction=True)
def test_a_pass_follows_its_booking_changes_together_one_interlock_reconcile_for_all(clock, monkeypatch):
    """Committed for real (the follow-ups run on commit, inside the pass): each change is still followed
    (attribution, the board), but the interlocks of the machines concerned are reconciled in one call."""
    from devices import interlock, live

    free = machine_that_was("idle")
    locked = [machine_that_was("idle", interlock=True) for _ in range(2)]
    free_booking = booking_of(free)
    locked_bookings = [booking_of(m) for m in locked]
    session = UsageSession.objects.create(machine=free, started_at=at(-5), ended_at=at(3))
    reconciled: list[list[int]] = []
    pushed: list[int] = []
    real_reconcile, real_push = interlock.reconcile, live.push_booking_change

    def spy_reconcile(machines, now=None):
        reconciled.append(sorted(m if isinstance(m, int) else m.pk for m in machines))
        return real_reconcile(machines, now)

    def spy_push(*, machine_id, **details):
        pushed.append(machine_id)
        real_push(machine_id=machine_id, **details)

    monkeypatch.setattr(interlock, "reconcile", spy_reconcile)
    monkeypatch.setattr(live, "push_booking_change", spy_push)
    done = run(clock, 15)

    assert done["no_show"] == 3
    locked_ids = sorted(m.pk for m in locked)
    # The follow-ups' one reconcile (every machine whose booking changed), then the pass's own step.
    assert reconciled == [sorted([free.pk, *locked_ids]), locked_ids]
    assert sorted(pushed) == sorted([free.pk, *locked_ids])
    # The job checked the free machine's booking in, and the follow-up gave it the job's session.
    assert Booking.objects.get(pk=free_booking.pk).status == Booking.Status.CHECKED_IN
    assert UsageSession.objects.get(pk=session.pk).booking_id == free_booking.pk
    assert {b.status for b in Booking.objects.filter(pk__in=[b.pk for b in locked_bookings])} == {
        Booking.Status.NO_SHOW
    }
