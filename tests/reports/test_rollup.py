"""The daily rollups on hand-built cases with known answers (fablab.reports.rollup).

The lab of :class:`tests.factories.LabFactory` opens 08:00–20:00 every day in Europe/Brussels; a laser
keeps those hours, a printer is bookable around the clock.
"""

from __future__ import annotations

import datetime as dt
import io
import zoneinfo

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext, override_settings
from hypothesis import given
from hypothesis import strategies as st

from devices.models import Bridge, MachineLink, StateChange, UsageSession
from fablab.booking.models import Booking, Series, WorkshopRegistration
from fablab.labs.models import Closure, MaintenanceWindow
from fablab.members.models import MemberProfile
from fablab.reports import intervals as iv
from fablab.reports import rollup
from fablab.reports.models import MachineDay, MemberDay, Subject
from fablab.reports.subjects import subject_for
from fablab.trainings.models import Initiative, InitiativeParticipation, Registration, TrainingSession
from tests.factories import (
    BookingFactory,
    CertificationFactory,
    LabFactory,
    MachineFactory,
    ProgrammeFactory,
    TrainingFactory,
    UserFactory,
)

BXL = zoneinfo.ZoneInfo("Europe/Brussels")
NOW = dt.datetime(2028, 1, 1, 12, tzinfo=BXL)


def at(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> dt.datetime:
    return dt.datetime(y, mo, d, h, mi, tzinfo=BXL)


def day(y: int, mo: int, d: int) -> dt.date:
    return dt.date(y, mo, d)


def rebuild(first: dt.date, last: dt.date | None = None, **kw) -> dict:
    return rollup.rebuild(first, last or first, now=kw.pop("now", NOW), **kw)


def md(machine, d: dt.date) -> MachineDay:
    return MachineDay.objects.get(machine=machine, day=d)


def booking(machine, start, end, *, member=None, kind=Booking.Kind.MEMBER, **kw) -> Booking:
    if kind != Booking.Kind.MEMBER:
        member = None
    elif member is None:
        member = UserFactory()
    return BookingFactory(machine=machine, member=member, kind=kind, start=start, end=end, **kw)


def session(machine, start, end, **kw) -> UsageSession:
    kw.setdefault("outcome", UsageSession.Outcome.FINISHED if end else UsageSession.Outcome.RUNNING)
    return UsageSession.objects.create(machine=machine, started_at=start, ended_at=end, **kw)


@pytest.fixture
def lab():
    return LabFactory()


@pytest.fixture
def laser(lab):
    return MachineFactory(lab=lab)


@pytest.fixture
def printer(lab):
    return MachineFactory(lab=lab, bookable_around_the_clock=True)


# --------------------------------------------------------------------------------- interval helpers


def _cells(s):
    return {t for a, b in s for t in range(int(a), int(b))}


sets = st.lists(st.tuples(st.integers(0, 40), st.integers(0, 40)), max_size=6).map(iv.normalize)


@given(sets, sets)
def test_interval_set_operations_agree_with_unit_cells(a, b):
    assert _cells(iv.union(a, b)) == _cells(a) | _cells(b)
    assert _cells(iv.intersect(a, b)) == _cells(a) & _cells(b)
    assert _cells(iv.subtract(a, b)) == _cells(a) - _cells(b)
    assert _cells(iv.clip(a, 10, 25)) == {t for t in _cells(a) if 10 <= t < 25}
    for result in (iv.union(a, b), iv.intersect(a, b), iv.subtract(a, b)):
        assert result == iv.normalize(result)  # canonical
    pieces = iv.split(a, [0, 10, 20, 30, 40])
    assert {t for p in pieces.values() for t in _cells(p)} == _cells(a)
    assert all(10 * i <= lo and hi <= 10 * (i + 1) for i, p in pieces.items() for lo, hi in p)


# ------------------------------------------------------------------------------------- machine days

pytestmark = pytest.mark.django_db


def test_dst_days_last_23_and_25_hours_around_the_clock(laser, printer):
    rebuild(day(2027, 3, 27), day(2027, 3, 29))
    rebuild(day(2027, 10, 30), day(2027, 11, 1))
    assert [md(printer, d).open_h for d in (day(2027, 3, 27), day(2027, 3, 28), day(2027, 3, 29))] == [
        24,
        23,
        24,
    ]
    assert [md(printer, d).open_h for d in (day(2027, 10, 30), day(2027, 10, 31), day(2027, 11, 1))] == [
        24,
        25,
        24,
    ]
    assert md(printer, day(2027, 3, 28)).around_the_clock
    # Opening hours are wall-clock: 08:00–20:00 is 12 hours on both change days.
    assert md(laser, day(2027, 3, 28)).open_h == md(laser, day(2027, 10, 31)).open_h == 12
    assert not md(laser, day(2027, 3, 28)).around_the_clock
    # The repeated hour (02:00–03:00 twice) adds up in hour 2; the skipped one stays empty.
    session(printer, at(2027, 10, 31, 1, 30), at(2027, 10, 31, 4))
    session(printer, at(2027, 3, 28, 1, 30), at(2027, 3, 28, 4))
    rebuild(day(2027, 10, 31))
    rebuild(day(2027, 3, 28))
    autumn, spring = md(printer, day(2027, 10, 31)), md(printer, day(2027, 3, 28))
    assert autumn.used_h == 3.5 and autumn.used_by_hour[1:4] == [0.5, 2.0, 1.0]
    assert spring.used_h == 1.5 and spring.used_by_hour[1:4] == [0.5, 0.0, 1.0]
    assert sum(autumn.used_by_hour) == autumn.used_h


def test_a_booking_across_midnight_and_a_month_end(printer):
    member = UserFactory()
    b = booking(
        printer,
        at(2027, 1, 31, 22),
        at(2027, 2, 1, 2),
        member=member,
        status=Booking.Status.COMPLETED,
        checked_in_at=at(2027, 1, 31, 21, 55),
    )
    session(printer, at(2027, 1, 31, 22, 10), at(2027, 2, 1, 1, 30), booking=b, energy_wh=800)
    done = rebuild(day(2027, 1, 31), day(2027, 2, 1))
    assert done["chunks"] == 2 and done["machine_days"] == 2
    jan, feb = md(printer, day(2027, 1, 31)), md(printer, day(2027, 2, 1))
    assert (jan.booked_h, feb.booked_h) == (2, 2)
    assert (round(jan.used_h, 4), feb.used_h) == (1.8333, 1.5)
    assert (jan.realised_h, feb.realised_h) == (jan.used_h, feb.used_h)
    assert (jan.bookings_made, jan.bookings_kept, feb.bookings_made) == (1, 1, 0)
    # Energy and the job on the day the session ended, with all its hours.
    assert (jan.energy_kwh, feb.energy_kwh, round(feb.energy_used_h, 4)) == (0, 0.8, 3.3333)
    assert (jan.jobs_with_outcome, feb.jobs_with_outcome, feb.jobs_finished) == (0, 1, 1)
    assert round(jan.used_by_hour[22], 4) == 0.8333 and jan.used_by_hour[23] == 1
    assert feb.used_by_hour[:3] == [1, 0.5, 0]
    # One use row per day the session ran, each with that day's hours.
    rows = MemberDay.objects.order_by("day").values_list("day", "used_h", "kind", "machine_id", "subject_id")
    subject = subject_for(member.pk)
    assert [(d, round(h, 4), k, m, s) for d, h, k, m, s in rows] == [
        (day(2027, 1, 31), 1.8333, "use", printer.pk, subject),
        (day(2027, 2, 1), 1.5, "use", printer.pk, subject),
    ]


def test_sessions_across_booking_edges_realised_overrun_and_walk_in(laser):
    b = booking(
        laser,
        at(2027, 5, 4, 10),
        at(2027, 5, 4, 12),
        status=Booking.Status.COMPLETED,
        checked_in_at=at(2027, 5, 4, 9, 30),
    )
    session(laser, at(2027, 5, 4, 9, 30), at(2027, 5, 4, 10, 30), booking=b)  # started before the booking
    session(laser, at(2027, 5, 4, 11, 30), at(2027, 5, 4, 12, 45), booking=b)  # ran past its end
    session(laser, at(2027, 5, 4, 14), at(2027, 5, 4, 15), walk_in=True, outcome="failed")
    session(laser, at(2027, 5, 4, 19), at(2027, 5, 4, 21), walk_in=True)  # past closing: clipped
    rebuild(day(2027, 5, 4))
    row = md(laser, day(2027, 5, 4))
    assert row.used_h == 1 + 1.25 + 1 + 1
    assert row.booked_h == 2
    assert row.realised_h == 0.5 + 0.5
    assert row.overrun_h == 0.75
    assert row.walk_in_h == 2
    assert (row.jobs_with_outcome, row.jobs_finished) == (4, 3)
    member_row = MemberDay.objects.get()
    assert member_row.used_h == 2.25  # the member's two sessions, not the walk-ins


def test_a_no_show_stays_booked_and_its_released_time_is_kept_apart(laser):
    booking(
        laser,
        at(2027, 5, 4, 14),
        at(2027, 5, 4, 16),
        status=Booking.Status.NO_SHOW,
        released_at=at(2027, 5, 4, 14, 15),
        blocked_until=at(2027, 5, 4, 14, 15),
    )
    rebuild(day(2027, 5, 4))
    row = md(laser, day(2027, 5, 4))
    assert (row.booked_h, row.released_h, row.used_h) == (2, 1.75, 0)
    assert (row.bookings_made, row.bookings_kept, row.no_shows) == (1, 1, 1)
    assert not MemberDay.objects.exists()  # never checked in: not an active maker


def test_cancellations_late_early_after_start_pending_and_declined(lab, laser):
    lab.late_cancel_hours = 0  # no strikes: the reports still count 24 hours as late
    lab.save()
    start, end = at(2027, 5, 4, 10), at(2027, 5, 4, 11)
    cancelled = {"status": Booking.Status.CANCELLED, "cancel_reason": Booking.CancelReason.MEMBER}
    booking(laser, start, end, cancelled_at=at(2027, 5, 3, 12), **cancelled)  # 22 h before: late
    booking(laser, start, end, cancelled_at=at(2027, 5, 2, 9), **cancelled)  # 49 h before: not late
    booking(laser, at(2027, 5, 4, 12), at(2027, 5, 4, 14), cancelled_at=at(2027, 5, 4, 12, 30), **cancelled)
    booking(laser, at(2027, 5, 4, 15), at(2027, 5, 4, 16), status=Booking.Status.PENDING)
    declined = {"status": Booking.Status.CANCELLED, "cancel_reason": Booking.CancelReason.DECLINED}
    booking(laser, at(2027, 5, 4, 16), at(2027, 5, 4, 17), cancelled_at=at(2027, 5, 4, 16, 30), **declined)
    booking(
        laser,
        start,
        end,
        status=Booking.Status.CANCELLED,
        cancel_reason=Booking.CancelReason.MANAGER,
        cancelled_at=at(2027, 5, 4, 9),
    )
    rebuild(day(2027, 5, 4))
    row = md(laser, day(2027, 5, 4))
    assert (row.bookings_made, row.bookings_kept, row.late_cancels, row.no_shows) == (4, 1, 1, 0)
    assert row.booked_h == 2  # only the one cancelled after its start counts as booked


def test_planned_and_unplanned_downtime_and_held_hours(laser):
    d = day(2027, 5, 4)
    MaintenanceWindow.objects.create(machine=laser, start=at(2027, 5, 4, 6), end=at(2027, 5, 4, 10))
    MaintenanceWindow.objects.create(
        machine=laser, start=at(2027, 5, 4, 12), end=at(2027, 5, 4, 13), kind=MaintenanceWindow.Kind.BREAKDOWN
    )
    booking(laser, at(2027, 5, 4, 18), at(2027, 5, 4, 21), kind=Booking.Kind.MAINTENANCE)
    booking(laser, at(2027, 5, 4, 9), at(2027, 5, 4, 11))  # half inside the planned window
    booking(laser, at(2027, 5, 4, 14), at(2027, 5, 4, 16), kind=Booking.Kind.TRAINING)
    booking(laser, at(2027, 5, 4, 16), at(2027, 5, 4, 17), kind=Booking.Kind.WORKSHOP, status="cancelled")
    rebuild(d)
    row = md(laser, d)
    assert (row.open_h, row.plan_down_h, row.unpl_down_h) == (12, 2 + 2, 1)
    assert row.booked_h == 1
    assert (row.maintenance_h, row.training_h, row.workshop_h) == (3, 2, 0)


def test_status_history_counts_offline_and_error_after_the_first_change(laser):
    other = MachineFactory(lab=laser.lab)  # no link: its status history means nothing
    bridge = Bridge.objects.create(slug="bridge-r", lab=laser.lab)
    MachineLink.objects.create(machine=laser, bridge=bridge, adapter="shelly")
    for machine in (laser, other):
        for h, mi, state in [(9, 0, "idle"), (10, 0, "offline"), (11, 0, "idle"), (13, 0, "running")]:
            StateChange.objects.create(machine=machine, at=at(2027, 5, 4, h, mi), state=state)
        for h, mi, state in [(14, 0, "error"), (14, 30, "idle"), (19, 0, "offline")]:
            StateChange.objects.create(machine=machine, at=at(2027, 5, 4, h, mi), state=state)
    session(laser, at(2027, 5, 4, 12, 30), at(2027, 5, 4, 14, 15), walk_in=True)
    rebuild(day(2027, 5, 3), day(2027, 5, 5))
    # Before the first change the state is unknown: the empty 08:00–09:00 is not downtime.
    assert md(laser, day(2027, 5, 3)).unpl_down_h == 0
    row = md(laser, day(2027, 5, 4))
    assert row.unpl_down_h == 1 + 0.5 + 1  # offline 10–11, error 14–14:30, offline 19–20
    assert (row.used_h, row.busy_h) == (1.75, 1)
    # The next day starts offline (the state before it) and stays so all day.
    assert md(laser, day(2027, 5, 5)).unpl_down_h == 12
    assert md(other, day(2027, 5, 4)).unpl_down_h == 0


def test_a_closure_day_is_planned_downtime(lab, laser, printer):
    Closure.objects.create(lab=lab, starts_on=day(2027, 5, 4), ends_on=day(2027, 5, 4))
    booking(laser, at(2027, 5, 4, 10), at(2027, 5, 4, 12))
    rebuild(day(2027, 5, 4), day(2027, 5, 5))
    closed = md(laser, day(2027, 5, 4))
    assert (closed.open_h, closed.plan_down_h, closed.booked_h, closed.bookings_made) == (12, 12, 0, 1)
    assert (md(printer, day(2027, 5, 4)).open_h, md(printer, day(2027, 5, 4)).plan_down_h) == (24, 24)
    assert md(laser, day(2027, 5, 5)).plan_down_h == 0


def test_an_open_session_runs_until_now(laser):
    session(laser, at(2027, 5, 4, 10), None)
    rebuild(day(2027, 5, 4), now=at(2027, 5, 4, 11, 30))
    row = md(laser, day(2027, 5, 4))
    assert (row.used_h, row.jobs_with_outcome, row.energy_kwh) == (1.5, 0, 0)


# -------------------------------------------------------------------------------------- member days


def test_training_and_workshop_attendance_rows(lab, laser):
    programme = ProgrammeFactory(labs=[lab])
    young = Initiative.objects.create(programme=programme, slug="young", name="Young makers")
    training = TrainingFactory()
    ts = TrainingSession.objects.create(
        training=training,
        lab=lab,
        start=at(2027, 5, 4, 10),
        end=at(2027, 5, 4, 12),
        seats=4,
        initiative=young,
    )
    hold = booking(laser, ts.start, ts.end, kind=Booking.Kind.TRAINING)
    ts.holds.add(hold)
    session(laser, at(2027, 5, 4, 10), at(2027, 5, 4, 11), booking=hold)
    a, b, absent = UserFactory(), UserFactory(), UserFactory()
    cert = CertificationFactory(member=a, training=training)
    Registration.objects.create(session=ts, member=a, status="registered", attended=True, certification=cert)
    Registration.objects.create(session=ts, member=b, status="registered", attended=True)
    Registration.objects.create(session=ts, member=absent, status="registered", attended=False)
    series = Series.objects.create(
        kind=Series.Kind.WORKSHOP,
        lab=lab,
        rrule="FREQ=WEEKLY;COUNT=1",
        first_day=day(2027, 5, 5),
        start_time=dt.time(14),
        duration=dt.timedelta(hours=2),
        initiative=young,
    )
    occurrence = at(2027, 5, 5, 14)
    held = booking(laser, occurrence, at(2027, 5, 5, 16), kind=Booking.Kind.WORKSHOP, series=series)
    session(laser, at(2027, 5, 5, 14), at(2027, 5, 5, 14, 30), booking=held)
    for member, attended in ((a, True), (absent, False)):
        WorkshopRegistration.objects.create(
            series=series, occurrence_start=occurrence, member=member, attended=attended, registered_at=NOW
        )
    rebuild(day(2027, 5, 4), day(2027, 5, 5))
    rows = {(r.subject_id, r.kind): r for r in MemberDay.objects.select_related("subject").filter(lab=lab)}
    assert set(rows) == {
        (subject_for(a.pk), "training"),
        (subject_for(b.pk), "training"),
        (subject_for(a.pk), "workshop"),
    }
    ta, tb, wa = (
        rows[(subject_for(a.pk), "training")],
        rows[(subject_for(b.pk), "training")],
        rows[(subject_for(a.pk), "workshop")],
    )
    assert (ta.day, ta.training_id, ta.initiative_id, ta.machine_id) == (
        day(2027, 5, 4),
        training.pk,
        young.pk,
        None,
    )
    assert (ta.certified, tb.certified) == (True, False)
    assert ta.used_h == tb.used_h == 0.5  # one hour of use shared by two attendees
    assert (wa.day, wa.initiative_id, wa.training_id, wa.used_h) == (day(2027, 5, 5), young.pk, None, 0.5)
    assert md(laser, day(2027, 5, 4)).training_h == 2 and md(laser, day(2027, 5, 5)).workshop_h == 2


def test_snapshot_only_with_consent_and_the_age_band_of_the_activity_year(lab, laser):
    programme = ProgrammeFactory(labs=[lab])
    women = Initiative.objects.create(programme=programme, slug="women", name="Women in tech")
    consenting, silent = UserFactory(), UserFactory()
    MemberProfile.objects.filter(user=consenting).update(
        statistics_consent=True, gender="woman", birth_year=2009, user_category="student"
    )
    MemberProfile.objects.filter(user=silent).update(
        statistics_consent=False, gender="man", birth_year=1980, user_category="company"
    )
    InitiativeParticipation.objects.create(member=consenting, initiative=women)
    InitiativeParticipation.objects.create(member=silent, initiative=women)
    for member, hour in ((consenting, 10), (silent, 12)):
        for start in (at(2026, 12, 30, hour), at(2027, 1, 2, hour)):
            booking(
                laser,
                start,
                start + dt.timedelta(hours=1),
                member=member,
                status="completed",
                checked_in_at=start,
            )
    rebuild(day(2026, 12, 30), day(2027, 1, 2))
    mine = MemberDay.objects.filter(subject_id=subject_for(consenting.pk)).order_by("day")
    assert [(r.gender, r.age_band, r.user_category, r.declared_initiatives) for r in mine] == [
        ("woman", "13-17", "student", [women.pk]),
        ("woman", "18-25", "student", [women.pk]),
    ]
    assert all(r.used_h == 0 for r in mine)  # checked in, no session: the start day, no hours
    theirs = MemberDay.objects.filter(subject_id=subject_for(silent.pk))
    assert [(r.gender, r.age_band, r.user_category, r.declared_initiatives) for r in theirs] == [
        ("", "", "", [])
    ] * 2


def test_a_pseudonymised_booking_keeps_its_subject_and_merges_with_recent_use(laser):
    member = UserFactory()
    subject = subject_for(member.pk)
    start = at(2027, 5, 4, 10)
    old = booking(
        laser, start, start + dt.timedelta(hours=1), member=member, status="completed", checked_in_at=start
    )
    Booking.objects.filter(pk=old.pk).update(member=None, subject_id=subject)
    booking(
        laser, at(2027, 5, 4, 12), at(2027, 5, 4, 13), member=member, status="completed", checked_in_at=start
    )
    rebuild(day(2027, 5, 4))
    assert list(MemberDay.objects.values_list("subject_id", "kind")) == [(subject, "use")]
    assert Subject.objects.count() == 1


# ------------------------------------------------------------------------------- rebuild as a whole


def _snapshot():
    machine = list(MachineDay.objects.order_by("machine_id", "day").values_list())
    member = list(MemberDay.objects.order_by("subject_id", "day", "kind").values())
    strip = lambda rows, skip: [tuple(v for i, v in enumerate(r) if i not in skip) for r in rows]  # noqa: E731
    return strip(machine, {0, len(machine[0]) - 1} if machine else set()), [
        {k: v for k, v in r.items() if k != "id"} for r in member
    ]


def test_rebuilding_twice_gives_the_same_rows_and_a_chunk_costs_the_same_queries(lab, laser, printer):
    b = booking(
        printer, at(2027, 4, 30, 22), at(2027, 5, 1, 2), status="completed", checked_in_at=at(2027, 4, 30, 22)
    )
    session(printer, at(2027, 4, 30, 22), at(2027, 5, 1, 1), booking=b, energy_wh=300)
    booking(
        laser, at(2027, 5, 4, 14), at(2027, 5, 4, 16), status="no_show", released_at=at(2027, 5, 4, 14, 15)
    )
    rebuild(day(2027, 4, 1), day(2027, 5, 31))
    first = _snapshot()
    assert len(first[0]) == 2 * 61 and first[1]
    rebuild(day(2027, 4, 1), day(2027, 5, 31))
    assert _snapshot() == first
    # Rebuilding one day of it changes nothing either.
    rebuild(day(2027, 5, 1))
    assert _snapshot() == first
    # A chunk reads in batches: more machines, the same number of queries.
    with CaptureQueriesContext(connection) as few:
        rebuild(day(2027, 5, 1), day(2027, 5, 31))
    for _ in range(4):
        MachineFactory(lab=lab)
    with CaptureQueriesContext(connection) as many:
        rebuild(day(2027, 5, 1), day(2027, 5, 31))
    reads = lambda ctx: [q for q in ctx.captured_queries if q["sql"].startswith("SELECT")]  # noqa: E731
    assert len(reads(many)) == len(reads(few))


def test_scheduled_pass_rebuilds_yesterday_and_today_at_most_every_interval(laser):
    now = at(2027, 5, 4, 15)
    booking(laser, at(2027, 5, 3, 10), at(2027, 5, 3, 11))
    with override_settings(REPORTS_ROLLUP_INTERVAL_S=0):
        assert rollup.scheduled_pass(now) == 2
    assert set(MachineDay.objects.values_list("day", flat=True)) == {day(2027, 5, 3), day(2027, 5, 4)}
    assert md(laser, day(2027, 5, 3)).booked_h == 1
    with override_settings(REPORTS_ROLLUP_INTERVAL_S=3600):
        assert rollup.scheduled_pass(now) == 0


def test_the_command_rebuilds_from_the_first_activity(lab, laser):
    booking(laser, at(2027, 12, 30, 10), at(2027, 12, 30, 11))
    out = io.StringIO()
    call_command("rebuild_report_rollups", "--lab", lab.slug, "--to", "2027-12-31", stdout=out)
    assert "machine-days" in out.getvalue()
    assert set(MachineDay.objects.values_list("day", flat=True)) == {day(2027, 12, d) for d in (29, 30, 31)}
    call_command("rebuild_report_rollups", "--from", "2027-12-30", "--to", "2027-12-30", stdout=out)
    assert MachineDay.objects.count() == 3
