"""Workshops and members' recurring bookings (fablab.booking.series)."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest
from django.core import mail

from fablab.booking import series as series_mod
from fablab.booking.errors import BookingError
from fablab.booking.models import Booking, Series, WorkshopRegistration
from fablab.booking.series import MOVE, SKIP, Recurrence
from fablab.labs.models import Closure, MaintenanceWindow
from tests.factories import (
    BookingFactory,
    LabFactory,
    MachineFactory,
    MaintenanceWindowFactory,
    QuotaPolicyFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

BXL = zoneinfo.ZoneInfo("Europe/Brussels")
NOW = dt.datetime(2027, 3, 1, 9, 0, tzinfo=BXL)  # a Monday


def local(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=BXL)


def tuesdays(first: dt.date, until: dt.date, hour: int = 18, hours: int = 3) -> Recurrence:
    return Recurrence(
        series_mod.weekly_rule([1]), first, dt.time(hour), dt.timedelta(hours=hours), until=until
    )


@pytest.fixture
def lab():
    return LabFactory()


@pytest.fixture
def manager(lab):
    user = UserFactory()
    lab.managers.add(user)
    return user


# ------------------------------------------------------------------------------------ recurrence


def test_weekly_rule_keeps_local_wall_clock_across_both_dst_changes():
    # Sundays 18:00 around the last Sunday of March and of October 2027.
    rule = Recurrence(series_mod.weekly_rule([6]), dt.date(2027, 3, 21), dt.time(18), dt.timedelta(hours=3))
    spring = series_mod.occurrences(dataclass_replace(rule, until=dt.date(2027, 4, 4)), BXL)
    assert [s.astimezone(BXL).time() for s, _e in spring] == [dt.time(18)] * 3
    assert [s.astimezone(dt.UTC).hour for s, _e in spring] == [17, 16, 16]
    assert all(e.astimezone(BXL).time() == dt.time(21) for _s, e in spring)
    autumn = series_mod.occurrences(
        dataclass_replace(rule, first_day=dt.date(2027, 10, 24), until=dt.date(2027, 11, 7)), BXL
    )
    assert [s.astimezone(BXL).time() for s, _e in autumn] == [dt.time(18)] * 3
    assert [s.astimezone(dt.UTC).hour for s, _e in autumn] == [16, 17, 17]


def dataclass_replace(obj, **changes):
    import dataclasses

    return dataclasses.replace(obj, **changes)


@pytest.mark.parametrize(
    "rule",
    ["FREQ=HOURLY;COUNT=3", "FREQ=WEEKLY", "NOT A RULE", "DTSTART:20270101T000000\nRRULE:FREQ=DAILY"],
)
def test_unusable_rules_are_refused(rule):
    with pytest.raises(BookingError) as info:
        series_mod.occurrences(Recurrence(rule, dt.date(2027, 3, 2), dt.time(18), dt.timedelta(hours=1)), BXL)
    assert info.value.code == "series_invalid_rule"


def test_count_and_until_end_a_series_and_too_many_is_refused():
    rule = Recurrence("FREQ=WEEKLY;COUNT=4", dt.date(2027, 3, 2), dt.time(18), dt.timedelta(hours=1))
    assert len(series_mod.occurrences(rule, BXL)) == 4
    assert len(series_mod.occurrences(dataclass_replace(rule, until=dt.date(2027, 3, 16)), BXL)) == 3
    with pytest.raises(BookingError) as info:
        series_mod.occurrences(
            Recurrence("FREQ=DAILY;COUNT=400", rule.first_day, rule.start_time, rule.duration), BXL
        )
    assert info.value.code == "series_too_long"


# ------------------------------------------------------------------------------------ workshops


def test_plan_lists_conflicts_then_books_the_rest_atomically(
    lab, manager, django_capture_on_commit_callbacks
):
    laser, laser2 = MachineFactory(lab=lab), MachineFactory(lab=lab)
    printer = MachineFactory(lab=lab)
    # A member booking in the second occurrence (movable), a training in the third, maintenance in the fourth.
    member = UserFactory()
    d1, d2, d3, d4 = (dt.date(2027, 3, 2) + dt.timedelta(weeks=i) for i in range(4))
    member_booking = BookingFactory(machine=laser, member=member, start=local(d2, 17), end=local(d2, 19))
    BookingFactory(
        machine=printer, member=None, kind=Booking.Kind.TRAINING, start=local(d3, 18), end=local(d3, 19)
    )
    MaintenanceWindowFactory(machine=laser, start=local(d4, 20), end=local(d4, 22))
    # The lab closes at 20:00: a workshop 18:00-21:00 lies partly outside the opening hours, and
    # its last occurrence beyond the machines' 28 days: neither matters to a workshop.
    the_plan = series_mod.plan(
        lab=lab,
        machines=[laser, printer],
        recurrence=tuesdays(d1, d4 + dt.timedelta(weeks=2)),
        title="Laser for beginners",
        seats=8,
        target_group="teenagers",
        now=NOW,
    )
    assert len(the_plan.occurrences) == 6
    conflicts = the_plan.conflicts
    assert [(c.occurrence, bool(c.booking), c.movable) for c in conflicts] == [
        (1, True, True),
        (2, True, False),
        (3, False, False),
    ]
    move = conflicts[0]
    assert move.suggestion is not None and move.suggestion.machine == laser2
    assert Booking.objects.filter(kind=Booking.Kind.WORKSHOP).count() == 0  # plan writes nothing

    with pytest.raises(BookingError) as info:
        series_mod.create_workshop(the_plan, {}, manager, now=NOW)  # the member's booking: no choice made
    assert info.value.code == "series_unresolved"

    with django_capture_on_commit_callbacks(execute=True):
        result = series_mod.create_workshop(the_plan, {move.key: MOVE}, manager, now=NOW)
    workshop = result.series
    assert workshop.kind == Series.Kind.WORKSHOP and workshop.target_group == "teenagers"
    assert set(workshop.machines.all()) == {laser, printer}
    assert [o.index for o in result.skipped] == [2, 3]
    starts = sorted({b.start for b in result.bookings})
    assert len(starts) == 4 and len(result.bookings) == 8
    assert all(b.kind == Booking.Kind.WORKSHOP and b.member is None for b in result.bookings)
    assert all(b.title == "Laser for beginners" and b.series == workshop for b in result.bookings)
    member_booking.refresh_from_db()
    assert member_booking.status == Booking.Status.CONFIRMED
    assert (member_booking.machine, member_booking.start) == (laser2, local(d2, 17))
    assert [m.to for m in mail.outbox] == [[member.email]]
    assert "moved" in mail.outbox[0].subject.lower()
    assert laser2.name in mail.outbox[0].body


def test_skipping_the_member_conflict_leaves_their_booking(lab, manager):
    laser = MachineFactory(lab=lab)
    d1 = dt.date(2027, 3, 2)
    mine = BookingFactory(machine=laser, start=local(d1, 19), end=local(d1, 20))
    the_plan = series_mod.plan(
        lab=lab, machines=[laser], recurrence=tuesdays(d1, d1 + dt.timedelta(weeks=1)), title="CNC", now=NOW
    )
    result = series_mod.create_workshop(the_plan, {the_plan.conflicts[0].key: SKIP}, manager, now=NOW)
    assert [b.start for b in result.bookings] == [local(d1 + dt.timedelta(weeks=1), 18)]
    mine.refresh_from_db()
    assert (mine.status, mine.start) == (Booking.Status.CONFIRMED, local(d1, 19))
    assert mail.outbox == []


def test_a_conflict_appearing_after_the_plan_aborts_everything(lab, manager):
    laser, laser2 = MachineFactory(lab=lab), MachineFactory(lab=lab)
    d1 = dt.date(2027, 3, 2)
    member_booking = BookingFactory(machine=laser, start=local(d1, 18), end=local(d1, 19))
    the_plan = series_mod.plan(
        lab=lab, machines=[laser], recurrence=tuesdays(d1, d1 + dt.timedelta(weeks=2)), title="X", now=NOW
    )
    # Meanwhile a maintenance window is planned on the third occurrence.
    MaintenanceWindowFactory(
        machine=laser, start=local(d1 + dt.timedelta(weeks=2), 17), end=local(d1 + dt.timedelta(weeks=2), 19)
    )
    with pytest.raises(BookingError) as info:
        series_mod.create_workshop(the_plan, {the_plan.conflicts[0].key: MOVE}, manager, now=NOW)
    assert info.value.code == "series_conflict"
    assert not Series.objects.exists()
    assert not Booking.objects.filter(kind=Booking.Kind.WORKSHOP).exists()
    member_booking.refresh_from_db()
    assert (member_booking.machine, member_booking.status) == (laser, Booking.Status.CONFIRMED)
    assert laser2.bookings.count() == 0


def test_a_move_with_no_free_time_left_aborts_everything(lab, manager):
    laser = MachineFactory(lab=lab, max_days_ahead=0)  # the only machine of its type: today only
    d1 = dt.date(2027, 3, 2)
    now = local(d1, 8)
    booking = BookingFactory(machine=laser, start=local(d1, 18), end=local(d1, 20))
    the_plan = series_mod.plan(lab=lab, machines=[laser], recurrence=tuesdays(d1, d1), title="X", now=now)
    assert the_plan.conflicts[0].suggestion is None
    with pytest.raises(BookingError) as info:
        series_mod.create_workshop(the_plan, {the_plan.conflicts[0].key: MOVE}, manager, now=now)
    assert info.value.code == "series_cannot_move"
    booking.refresh_from_db()
    assert booking.status == Booking.Status.CONFIRMED and not Series.objects.exists()


def test_only_a_manager_of_the_lab_creates_a_workshop(lab):
    laser = MachineFactory(lab=lab)
    the_plan = series_mod.plan(
        lab=lab,
        machines=[laser],
        recurrence=tuesdays(dt.date(2027, 3, 2), dt.date(2027, 3, 2)),
        title="X",
        now=NOW,
    )
    with pytest.raises(BookingError) as info:
        series_mod.create_workshop(the_plan, {}, UserFactory(), now=NOW)
    assert info.value.code == "forbidden"


def test_registration_respects_seats_and_attendance_is_recorded(lab, manager):
    laser = MachineFactory(lab=lab)
    d1 = dt.date(2027, 3, 2)
    the_plan = series_mod.plan(
        lab=lab, machines=[laser], recurrence=tuesdays(d1, d1), title="X", seats=1, now=NOW
    )
    workshop = series_mod.create_workshop(the_plan, {}, manager, now=NOW).series
    first, second = UserFactory(), UserFactory()
    start = local(d1, 18)
    series_mod.register(workshop, start, first, now=NOW)
    for who, code in ((first, "already_in_workshop"), (second, "workshop_full")):
        with pytest.raises(BookingError) as info:
            series_mod.register(workshop, start, who, now=NOW)
        assert info.value.code == code
    with pytest.raises(BookingError) as info:
        series_mod.register(workshop, local(d1, 19), second, now=NOW)
    assert info.value.code == "no_occurrence"
    assert series_mod.unregister(workshop, start, first)
    series_mod.register(workshop, start, second, now=NOW)
    assert series_mod.record_attendance(workshop, start, {second.pk: True}, manager) == 1
    rows = series_mod.occurrence_rows(workshop)
    assert [(r["registered"], r["attended"], r["seats_left"]) for r in rows] == [(1, 1, 0)]
    stats = series_mod.workshop_stats(lab, local(d1, 0), local(d1 + dt.timedelta(days=1), 0))
    assert stats == {"sessions": 1, "booked_hours": 3.0, "used_hours": 0.0, "participants": 1, "reach": 1}
    assert WorkshopRegistration.objects.filter(member=first).get().status == "cancelled"


# ------------------------------------------------------------------------------------ members' series


def test_member_series_respects_quota_per_occurrence_and_extends_with_the_horizon(
    lab, django_capture_on_commit_callbacks
):
    printer = MachineFactory(lab=lab, max_days_ahead=14)
    QuotaPolicyFactory(machine_type=printer.machine_type, max_hours_per_week=2)
    maker = UserFactory()
    d1 = dt.date(2027, 3, 3)  # Wednesday

    def week(n: int, hour: int = 10, minute: int = 0) -> dt.datetime:
        return local(d1 + dt.timedelta(weeks=n), hour, minute)

    # Week 2: the maker already has 1.5 hours booked, so that week's occurrence breaks the quota.
    BookingFactory(machine=printer, member=maker, start=week(2, 8), end=week(2, 9, 30))
    series, ext = series_mod.create_member_series(
        member=maker,
        machine=printer,
        start=week(0),
        duration=dt.timedelta(hours=1),
        until=d1 + dt.timedelta(weeks=5),
        now=NOW,
    )
    # Within 14 days of 1 March: the 3rd and the 10th.
    assert [b.start for b in ext.created] == [week(0), week(1)]
    assert ext.refused == []
    assert all(b.series_id == series.pk for b in ext.created)
    assert series_mod.extend_member_series(NOW) == 0

    # A week later the 17th comes within the horizon: refused by the quota, reported to the maker.
    later = NOW + dt.timedelta(weeks=1)
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        assert series_mod.extend_member_series(later) == 0
    assert [m.to for m in mail.outbox] == [[maker.email]]
    assert not series.bookings.filter(start=week(2)).exists()
    # The next week's occurrence is booked, once however many times the step runs.
    assert series_mod.extend_member_series(later + dt.timedelta(weeks=1)) == 1
    assert series_mod.extend_member_series(later + dt.timedelta(weeks=1)) == 0
    assert [b.start for b in series.bookings.order_by("start")] == [week(0), week(1), week(3)]
    # The maker cancels one occurrence: it is never booked again.
    from fablab.booking.services import booking_cancel

    booking_cancel(booking=series.bookings.get(start=week(3)), by=maker, now=later)
    series.extended_to = None  # even if the record of what was tried were lost
    series.save(update_fields=["extended_to"])
    assert series_mod.extend_member_series(later + dt.timedelta(weeks=1, hours=1)) == 0
    assert series.bookings.filter(start=week(3)).get().status == Booking.Status.CANCELLED
    assert series_mod.extend_member_series(NOW + dt.timedelta(weeks=10)) == 0  # past the last day


def test_the_first_occurrence_must_pass(lab):
    printer = MachineFactory(lab=lab)
    d1 = dt.date(2027, 3, 3)
    BookingFactory(machine=printer, start=local(d1, 10), end=local(d1, 11))
    with pytest.raises(BookingError) as info:
        series_mod.create_member_series(
            member=UserFactory(),
            machine=printer,
            start=local(d1, 10),
            duration=dt.timedelta(hours=1),
            until=d1 + dt.timedelta(weeks=3),
            now=NOW,
        )
    assert info.value.code == "slot_taken"
    assert not Series.objects.exists()


def test_cancel_the_rest_of_a_series(lab):
    printer = MachineFactory(lab=lab)
    maker = UserFactory()
    d1 = dt.date(2027, 3, 3)
    series, ext = series_mod.create_member_series(
        member=maker,
        machine=printer,
        start=local(d1, 10),
        duration=dt.timedelta(hours=1),
        until=d1 + dt.timedelta(weeks=5),
        now=NOW,
    )
    assert len(ext.created) == 4  # 28 days ahead
    with pytest.raises(BookingError) as info:
        series_mod.cancel_series_from(series, ext.created[1].start, UserFactory(), now=NOW)
    assert info.value.code == "forbidden"
    cancelled = series_mod.cancel_series_from(series, ext.created[1].start, maker, now=NOW)
    assert len(cancelled) == 3
    series.refresh_from_db()
    assert series.until == d1 and series.cancelled_at is None
    assert [b.status for b in series.bookings.order_by("start")] == ["confirmed"] + ["cancelled"] * 3
    assert series_mod.extend_member_series(NOW + dt.timedelta(weeks=3)) == 0


def test_maintenance_is_a_conflict_that_only_skips(lab, manager):
    laser = MachineFactory(lab=lab)
    d1 = dt.date(2027, 3, 2)
    MaintenanceWindowFactory(
        machine=laser, start=local(d1, 18), end=local(d1, 19), kind=MaintenanceWindow.Kind.PLANNED
    )
    the_plan = series_mod.plan(
        lab=lab, machines=[laser], recurrence=tuesdays(d1, d1 + dt.timedelta(weeks=1)), title="X", now=NOW
    )
    key = the_plan.conflicts[0].key
    with pytest.raises(BookingError) as info:
        series_mod.create_workshop(the_plan, {key: MOVE}, manager, now=NOW)
    assert info.value.code == "series_unresolved"
    result = series_mod.create_workshop(the_plan, {}, manager, now=NOW)
    assert len(result.bookings) == 1


def test_a_closure_of_the_lab_is_a_conflict_that_only_skips(lab, manager):
    """A workshop may run after hours, never on a day the lab is closed (as a member's booking)."""
    printer, printer2 = MachineFactory(lab=lab), MachineFactory(lab=lab)
    d1 = dt.date(2027, 3, 2)
    closure = Closure.objects.create(
        lab=lab, starts_on=d1 + dt.timedelta(days=6), ends_on=d1 + dt.timedelta(days=8)
    )
    the_plan = series_mod.plan(
        lab=lab,
        machines=[printer, printer2],
        recurrence=tuesdays(d1, d1 + dt.timedelta(weeks=2)),
        title="X",
        now=NOW,
    )
    (conflict,) = the_plan.conflicts  # one for the lab, not one per machine
    assert (conflict.occurrence, conflict.closure, conflict.machine, conflict.movable) == (
        1,
        closure,
        None,
        False,
    )
    assert conflict.span == (local(closure.starts_on, 0), local(closure.ends_on + dt.timedelta(days=1), 0))
    with pytest.raises(BookingError) as info:
        series_mod.create_workshop(the_plan, {conflict.key: MOVE}, manager, now=NOW)
    assert info.value.code == "series_unresolved"
    result = series_mod.create_workshop(the_plan, {}, manager, now=NOW)
    assert sorted({b.start for b in result.bookings}) == [
        local(d1, 18),
        local(d1 + dt.timedelta(weeks=2), 18),
    ]


def test_a_closure_decided_after_the_plan_aborts_everything(lab, manager):
    printer = MachineFactory(lab=lab)
    d1 = dt.date(2027, 3, 2)
    the_plan = series_mod.plan(
        lab=lab, machines=[printer], recurrence=tuesdays(d1, d1 + dt.timedelta(weeks=1)), title="X", now=NOW
    )
    Closure.objects.create(lab=lab, starts_on=d1 + dt.timedelta(weeks=1), ends_on=d1 + dt.timedelta(weeks=1))
    with pytest.raises(BookingError) as info:
        series_mod.create_workshop(the_plan, {}, manager, now=NOW)
    assert info.value.code == "series_conflict"
    assert not Series.objects.exists() and not Booking.objects.exists()


def test_a_workshop_belongs_to_an_initiative_of_its_labs_programme(lab, manager):
    from fablab.booking.series_forms import WorkshopForm
    from fablab.members.models import Programme
    from fablab.trainings.models import Initiative

    programme = Programme.objects.create(name="Digital inclusion")
    programme.labs.add(lab)
    young = Initiative.objects.create(programme=programme, slug="young-makers", name="Young makers")
    elsewhere = Initiative.objects.create(
        programme=Programme.objects.create(name="Elsewhere"), slug="other", name="Other"
    )
    assert list(WorkshopForm(lab=lab).fields["initiative"].queryset) == [young]
    assert elsewhere not in WorkshopForm(lab=lab).fields["initiative"].queryset
    laser = MachineFactory(lab=lab)
    d1 = dt.date(2027, 3, 2)
    the_plan = series_mod.plan(
        lab=lab, machines=[laser], recurrence=tuesdays(d1, d1), title="Code club", initiative=young, now=NOW
    )
    result = series_mod.create_workshop(the_plan, {}, manager, now=NOW)
    assert Series.objects.get(pk=result.series.pk).initiative == young
