"""The scheduler's rollup pass over activity that did not change writes nothing, so the report snapshots
stay current; a changed booking moves exactly the days it touches (fablab.reports.rollup.replace_rows)."""

from __future__ import annotations

import datetime as dt
import io
import zoneinfo

import pytest
import time_machine
from django.core.management import call_command
from django.test.utils import override_settings

from fablab.booking.models import Booking
from fablab.reports import rollup, snapshots
from fablab.reports.models import MachineDay, MemberDay

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 3, 18, 9, 30, tzinfo=dt.UTC)
MINUTE = dt.timedelta(minutes=1)
BXL = zoneinfo.ZoneInfo("Europe/Brussels")  # the demo labs' time zone


def machine_days() -> dict[tuple, tuple]:
    """``{(machine id, day): (id, computed_at)}`` of every machine-day."""
    return {
        (machine, day): (pk, at)
        for pk, machine, day, at in MachineDay.objects.values_list("pk", "machine", "day", "computed_at")
    }


def member_days() -> dict[int, dt.date]:
    return dict(MemberDay.objects.values_list("pk", "day"))


def scheduler_pass(now: dt.datetime) -> tuple[int, int]:
    """The scheduler's "reports" step at ``now``: the rollup rows written, the snapshots built."""
    with time_machine.travel(now, tick=False), override_settings(REPORTS_ROLLUP_INTERVAL_S=0):
        return rollup.scheduled_pass(now), snapshots.scheduled_pass(now)


@pytest.fixture
def demo(monkeypatch):
    """The demo with two weeks of history, and a first scheduler pass over it (rollups of today and
    yesterday, every scope's snapshot)."""
    monkeypatch.setattr(rollup, "_last_pass", None)
    monkeypatch.setattr(snapshots, "_last_pass", None)
    with time_machine.travel(NOW, tick=False):
        call_command("seed_demo", "--history-days", "14", stdout=io.StringIO())
    written, built = scheduler_pass(NOW + MINUTE)
    assert written and built


def test_a_pass_over_unchanged_activity_writes_nothing_and_rebuilds_no_snapshot(demo):
    machines, members = machine_days(), member_days()
    assert scheduler_pass(NOW + 6 * MINUTE) == (0, 0)
    assert machine_days() == machines and member_days() == members


def test_a_changed_booking_moves_exactly_its_day(demo):
    yesterday = dt.date(2026, 3, 17)
    booking = (
        Booking.objects.filter(
            kind=Booking.Kind.MEMBER,
            status=Booking.Status.COMPLETED,
            start__gte=dt.datetime(2026, 3, 17, tzinfo=BXL),
            end__lte=dt.datetime(2026, 3, 18, tzinfo=BXL),
        )
        .order_by("pk")
        .first()
    )
    machines, members = machine_days(), member_days()
    # The member cancelled it the day before after all (written past the services, like the demo's history).
    Booking.objects.filter(pk=booking.pk).update(
        status=Booking.Status.CANCELLED,
        cancel_reason=Booking.CancelReason.MEMBER,
        cancelled_at=booking.start - dt.timedelta(days=1),
        checked_in_at=None,
    )
    written, built = scheduler_pass(NOW + 6 * MINUTE)
    assert written and built  # the snapshots follow the change
    after = machine_days()
    moved = {key for key in after if after[key] != machines.get(key)}
    assert moved == {(booking.machine_id, yesterday)}
    assert machines.keys() == after.keys()
    # The member days of every other day keep their rows.
    assert {pk for pk, day in members.items() if day != yesterday} <= member_days().keys()
