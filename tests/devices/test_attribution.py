"""``devices.attribution``: every usage session belongs to the booking that held its machine, or is a walk-in.

Driven through the hub's appliers (statuses, events, energy) as the hub calls them, with the clock
frozen (``time_machine``) so that open sessions measure against a known "now".
"""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine

from devices import attribution, machines, sessions
from devices import events as live_events
from devices import status as live_status
from devices.machines import dt_to_ms
from devices.models import MachineLink, UsageSession
from fablab.booking import lifecycle
from fablab.booking.models import Booking
from firmware_bridge import protocol
from tests.devices.conftest import make_machine
from tests.factories import BookingFactory, LabFactory, UserFactory

pytestmark = pytest.mark.django_db

UTC = dt.UTC
DAY = dt.datetime(2026, 3, 2, tzinfo=UTC)


def at(hour: int, minute: int = 0) -> dt.datetime:
    return DAY.replace(hour=hour, minute=minute)


@pytest.fixture
def machine():
    return make_machine(LabFactory(slug="bxl"), slug="printer")


def info(machine) -> machines.MachineInfo:
    index = machines.MachineIndex()
    index.reload()
    return index.get(machine.lab.slug, machine.slug)


def status(state: str, when: dt.datetime, job: str | None = None) -> protocol.Status:
    ts = dt_to_ms(when)
    return protocol.Status(
        state=state,
        enabled=True,
        bridge="bridge-1",
        adapter="octoprint",
        ts=ts,
        job=protocol.Job(id=job, name=f"{job}.gcode", started_ts=ts, progress_pct=0.0) if job else None,
    )


def apply(machine, *msgs: protocol.Status) -> None:
    machine_info = info(machine)
    live_status.apply_statuses([(machine_info, m) for m in msgs])


def run(machine, start: dt.datetime, end: dt.datetime | None = None, job: str = "j1") -> None:
    apply(machine, status(protocol.RUNNING, start, job))
    if end is not None:
        apply(machine, status(protocol.IDLE, end))


def booking(machine, start, end, *, checked_in_at=None, **kwargs) -> Booking:
    kwargs.setdefault("status", Booking.Status.CHECKED_IN if checked_in_at else Booking.Status.CONFIRMED)
    if "member" not in kwargs:
        kwargs["member"] = UserFactory()
    return BookingFactory(machine=machine, start=start, end=end, checked_in_at=checked_in_at, **kwargs)


def usage(b: Booking) -> tuple:
    b.refresh_from_db()
    return (b.used_minutes, b.overrun_minutes, b.energy_wh, b.job_outcome)


def only_session(machine) -> UsageSession:
    (session,) = UsageSession.objects.filter(machine=machine)
    return session


def test_a_session_during_a_checked_in_booking_is_its_usage(machine):
    mine = booking(machine, at(10), at(11), checked_in_at=at(9, 55))
    with time_machine.travel(at(10, 50), tick=False):
        run(machine, at(10, 5), at(10, 45))
        live_events.apply_event(
            info(machine), protocol.Event(ts=dt_to_ms(at(10, 46)), sid="s1", seq=1, type="job_finished")
        )
    session = only_session(machine)
    assert (session.booking_id, session.walk_in) == (mine.pk, False)
    assert usage(mine) == (40.0, 0.0, None, "finished")


def test_an_open_session_counts_up_to_now_and_reads_running(machine):
    mine = booking(machine, at(10), at(11), checked_in_at=at(10))
    with time_machine.travel(at(10, 30), tick=False):
        run(machine, at(10, 10))
    assert usage(mine) == (20.0, 0.0, None, "running")
    with time_machine.travel(at(10, 40), tick=False):
        attribution.scheduled_pass()
    assert usage(mine)[0] == 30.0


def test_a_session_started_before_the_check_in_is_the_bookings_once_checked_in(
    machine, django_capture_on_commit_callbacks
):
    MachineLink.objects.filter(machine=machine).update(interlock=True)  # no check-in by the job
    mine = booking(machine, at(10), at(11))
    with time_machine.travel(at(9, 56), tick=False):
        run(machine, at(9, 50))
        assert only_session(machine).walk_in
        with django_capture_on_commit_callbacks(execute=True):
            lifecycle.check_in(booking=mine, by=mine.member, via=Booking.CheckInVia.PAGE, now=at(9, 55))
        session = only_session(machine)
        assert (session.booking_id, session.walk_in) == (mine.pk, False)
        assert usage(mine) == (6.0, 0.0, None, "running")


def test_check_ins_followed_together_each_claim_their_own_machines_session(
    machine, django_capture_on_commit_callbacks
):
    """Booking changes batched (as the scheduler's pass does) are attributed like one at a time."""
    from devices import follow

    other = make_machine(machine.lab, slug="laser")
    MachineLink.objects.filter(machine__in=[machine, other]).update(interlock=True)
    mine, theirs = booking(machine, at(10), at(11)), booking(other, at(10), at(11))
    later = booking(machine, at(12), at(13), checked_in_at=at(12))
    with time_machine.travel(at(9, 58), tick=False):
        run(machine, at(9, 50))
        run(other, at(9, 40), at(9, 57))
        with follow.batched():
            with django_capture_on_commit_callbacks(execute=True):
                for b, when in ((mine, at(9, 55)), (theirs, at(9, 56))):
                    lifecycle.check_in(booking=b, by=b.member, via=Booking.CheckInVia.PAGE, now=when)
            assert only_session(machine).walk_in  # committed, collected: followed when the batch ends
    assert (only_session(machine).booking_id, only_session(other).booking_id) == (mine.pk, theirs.pk)
    assert usage(mine) == (8.0, 0.0, None, "running")
    assert usage(theirs) == (17.0, 0.0, None, "interrupted")
    assert usage(later)[0] == 0.0


def test_a_session_with_no_booking_is_a_walk_in(machine):
    booking(machine, at(12), at(13), checked_in_at=at(12))  # later: not the session's
    with time_machine.travel(at(11), tick=False):
        run(machine, at(10), at(10, 30))
    session = only_session(machine)
    assert (session.booking_id, session.walk_in) == (None, True)


def test_minutes_past_the_end_are_overrun(machine):
    mine = booking(machine, at(10), at(11), checked_in_at=at(10))
    with time_machine.travel(at(12), tick=False):
        run(machine, at(10, 30), at(11, 20))
    assert usage(mine)[:2] == (50.0, 20.0)


def test_energy_is_the_sum_of_the_sessions_energy(machine):
    mine = booking(machine, at(10), at(12), checked_in_at=at(10))
    empty = booking(machine, at(13), at(14), checked_in_at=at(13))
    with time_machine.travel(at(12), tick=False):
        run(machine, at(10), job="a")
        sessions.add_energy({machine.pk: (100.0, 100.0)})
        sessions.add_energy({machine.pk: (150.0, None)})
        apply(machine, status(protocol.IDLE, at(10, 30)))
        run(machine, at(11), job="b")
        sessions.add_energy({machine.pk: (200.0, 200.0)})
        sessions.add_energy({machine.pk: (230.5, None)})
        apply(machine, status(protocol.IDLE, at(11, 30)))
        run(machine, at(13), at(13, 10), job="c")  # a plug without an energy counter
    assert usage(mine)[2] == 80.5
    assert usage(empty)[2] is None


def test_a_spool_replayed_late_and_out_of_order_is_attributed_by_the_bridges_clock(machine):
    mine = booking(machine, at(10), at(11), checked_in_at=at(10))
    # The bridge was cut off: its spool reaches the hub at 15:00, newest first, in one batch.
    with time_machine.travel(at(15), tick=False):
        apply(machine, status(protocol.IDLE, at(10, 40)), status(protocol.RUNNING, at(10, 10), "j1"))
        live_events.apply_event(
            info(machine), protocol.Event(ts=dt_to_ms(at(10, 40)), sid="s", seq=7, type="job_finished")
        )
        assert usage(mine) == (30.0, 0.0, None, "finished")
        session = only_session(machine)
        assert session.booking_id == mine.pk
        # Replayed again: the open of a closed session, the same event; nothing moves.
        apply(machine, status(protocol.RUNNING, at(10, 10), "j1"), status(protocol.IDLE, at(10, 40)))
        assert not live_events.apply_event(
            info(machine), protocol.Event(ts=dt_to_ms(at(10, 40)), sid="s", seq=7, type="job_finished")
        )
        assert attribution.attribute_sessions(machine.pk, at(0), at(23)) == 0
    assert only_session(machine).pk == session.pk
    assert usage(mine) == (30.0, 0.0, None, "finished")


def test_an_outcome_before_the_close_is_kept(machine):
    mine = booking(machine, at(10), at(11), checked_in_at=at(10))
    with time_machine.travel(at(12), tick=False):
        run(machine, at(10, 10))
        live_events.apply_event(
            info(machine), protocol.Event(ts=dt_to_ms(at(10, 29)), sid="s", seq=1, type="job_failed")
        )
        assert usage(mine)[3] == "running"  # still open
        apply(machine, status(protocol.IDLE, at(10, 30)))
    assert usage(mine) == (20.0, 0.0, None, "failed")


def test_recompute_is_idempotent_and_repairs(machine):
    mine = booking(machine, at(10), at(11), checked_in_at=at(10))
    with time_machine.travel(at(12), tick=False):
        run(machine, at(10), at(10, 30))
        run(machine, at(10, 40), at(11, 10), job="j2")
        expected = usage(mine)
        assert expected == (60.0, 10.0, None, "interrupted")
        assert attribution.recompute_booking([mine.pk]) == 0  # nothing to write
        Booking.objects.filter(pk=mine.pk).update(used_minutes=999, job_outcome="")
        assert attribution.recompute_booking([mine.pk, None]) == 1
        assert attribution.recompute_booking([mine.pk]) == 0
    assert usage(mine) == expected


def test_a_session_spanning_two_bookings_is_the_first_ones_with_overrun(machine):
    first = booking(machine, at(10), at(11), checked_in_at=at(10))
    second = booking(machine, at(11), at(12), checked_in_at=at(11, 2))
    with time_machine.travel(at(13), tick=False):
        run(machine, at(10, 30), at(11, 30))
        run(machine, at(11, 35), at(11, 55), job="j2")
    assert usage(first)[:2] == (60.0, 30.0)
    assert usage(second)[:2] == (20.0, 0.0)
    assert list(UsageSession.objects.order_by("started_at").values_list("booking_id", flat=True)) == [
        first.pk,
        second.pk,
    ]


def test_a_booking_that_loses_its_session_is_recomputed(machine):
    early = booking(machine, at(9), at(10), checked_in_at=at(9))
    later = booking(machine, at(10), at(11))
    with time_machine.travel(at(10, 30), tick=False):
        run(machine, at(10, 5))  # no interlock: the job checks ``later`` in
        session = only_session(machine)
        assert session.booking_id == later.pk
        # Pretend a buggy earlier pass gave it to ``early``; attributing again moves it back.
        UsageSession.objects.filter(pk=session.pk).update(booking=early, walk_in=False)
        attribution.recompute_booking([early.pk])
        assert usage(early)[0] == 25.0
        assert attribution.attribute_sessions(machine.pk, at(9), at(11)) == 1
    assert usage(early) == (0.0, 0.0, None, "")
    assert usage(later)[0] == 25.0


def test_a_job_during_a_confirmed_booking_checks_it_in_without_interlock(machine):
    mine = booking(machine, at(10), at(11))
    with time_machine.travel(at(10, 20), tick=False):
        run(machine, at(10, 3))
    mine.refresh_from_db()
    assert (mine.status, mine.check_in_via, mine.checked_in_at) == (
        Booking.Status.CHECKED_IN,
        Booking.CheckInVia.MACHINE,
        at(10, 3),
    )
    assert only_session(machine).booking_id == mine.pk


def test_with_an_interlock_a_job_does_not_check_in(machine):
    MachineLink.objects.filter(machine=machine).update(interlock=True)
    mine = booking(machine, at(10), at(11))
    with time_machine.travel(at(10, 20), tick=False):
        run(machine, at(10, 3))
    mine.refresh_from_db()
    assert mine.status == Booking.Status.CONFIRMED
    session = only_session(machine)
    assert (session.booking_id, session.walk_in) == (None, True)


def test_a_training_holds_the_machine_without_check_in(machine):
    training = booking(machine, at(10), at(12), kind=Booking.Kind.TRAINING, member=None, title="Intro")
    with time_machine.travel(at(12), tick=False):
        run(machine, at(10, 15), at(10, 45))
    assert only_session(machine).booking_id == training.pk
    assert usage(training)[0] == 30.0
