"""The demo's generated history (`seed_demo --history-days N`): deterministic, plausible, consistent with
the booking integrity and attribution, rolled up for the reports, and out of the way of today's demo."""

from __future__ import annotations

import datetime as dt
import io
import itertools

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import transaction
from django.utils import timezone

from devices import attribution
from devices.models import StateChange, UsageSession
from fablab.booking.models import Booking, WorkshopRegistration
from fablab.demo import history, scenes
from fablab.labs.models import Machine, MaintenanceWindow
from fablab.members.models import Certification, MemberProfile
from fablab.reports.models import MachineDay, MemberDay
from fablab.trainings.models import InitiativeParticipation, Registration

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 3, 18, 9, 30, tzinfo=dt.UTC)
DAYS = 30


def seed(*args: str) -> str:
    out = io.StringIO()
    call_command("seed_demo", *args, stdout=out)
    return out.getvalue()


class Rollback(Exception):
    pass


def generated(seed_value: int) -> dict:
    """What ``generate`` makes on top of the plain demo, rolled back afterwards."""
    try:
        with transaction.atomic():
            summary = history.generate(DAYS, seed_value, NOW, rollups=False)
            summary["rows"] = {
                model.__name__: model.objects.count()
                for model in (
                    Booking,
                    UsageSession,
                    StateChange,
                    Registration,
                    WorkshopRegistration,
                    Certification,
                )
            }
            summary["consenting"] = MemberProfile.objects.filter(
                user__username__startswith=history.PREFIX, statistics_consent=True
            ).count()
            summary.pop("seconds")
            raise Rollback
    except Rollback:
        return summary


def test_the_same_seed_makes_the_same_history_and_another_seed_another():
    with time_machine.travel(NOW, tick=False):
        seed()
        first, again, other = generated(12), generated(12), generated(13)
    assert first == again
    assert first["member_bookings"] > 100
    assert other != first


def test_a_month_of_history_is_plausible_consistent_and_rolled_up():
    with time_machine.travel(NOW, tick=False):
        output = seed("--history-days", str(DAYS))
    assert "demo history" in output
    tz = Machine.objects.select_related("lab").first().lab.tz
    today = timezone.localdate(NOW, timezone=tz)
    first_day, last_day = today - dt.timedelta(days=DAYS), today - dt.timedelta(days=1)
    midnight = dt.datetime.combine(today, dt.time(), tzinfo=tz)
    hist = Booking.objects.filter(member__username__startswith=history.PREFIX)

    # Everything of the history lies before today.
    assert not hist.filter(end__gt=midnight).exists()
    assert not UsageSession.objects.filter(
        job_id__startswith="hist-", ended_at__gt=midnight + dt.timedelta(hours=1)
    )
    # Members with opt-in statistics, some declaring an initiative.
    profiles = MemberProfile.objects.filter(user__username__startswith=history.PREFIX)
    assert 150 <= profiles.count() <= 190
    assert 0.45 <= profiles.filter(statistics_consent=True).count() / profiles.count() <= 0.75
    assert not profiles.filter(statistics_consent=False).exclude(gender="").exists()
    assert profiles.filter(statistics_consent=True).exclude(birth_year=None).exists()
    assert InitiativeParticipation.objects.filter(initiative__slug="young-makers").exists()
    assert (
        not get_user_model()
        .objects.filter(username__startswith=history.PREFIX)
        .exclude(password__startswith="!")
    )
    # Every way a booking ends, walk-ins, trainings that certify, workshops attended, downtime.
    assert hist.filter(status=Booking.Status.COMPLETED).count() > 100
    assert hist.filter(status=Booking.Status.NO_SHOW).exists()
    late = [
        b
        for b in hist.filter(status=Booking.Status.CANCELLED)
        if b.start - b.cancelled_at < dt.timedelta(hours=24)
    ]
    assert late
    assert UsageSession.objects.filter(walk_in=True, job_id__startswith="hist-").exists()
    assert hist.filter(overrun_minutes__gt=0).exists()
    assert Registration.objects.filter(attended=True, certification__isnull=False).exists()
    assert WorkshopRegistration.objects.filter(attended=True, series__initiative__isnull=False).exists()
    assert MaintenanceWindow.objects.filter(kind=MaintenanceWindow.Kind.PLANNED).exists()
    assert MaintenanceWindow.objects.filter(kind=MaintenanceWindow.Kind.BREAKDOWN).exists()
    assert StateChange.objects.filter(state="offline").exists()

    # The booking integrity: no two holding bookings of a machine overlap (buffer included), and no two
    # sessions of a machine overlap.
    for machine in Machine.objects.all():
        holding = Booking.objects.filter(machine=machine, status__in=Booking.ACTIVE).order_by("start")
        for before, after in itertools.pairwise(holding):
            assert before.blocked_until <= after.start, (machine.slug, before.pk, after.pk)
        sessions = UsageSession.objects.filter(machine=machine).order_by("started_at")
        for before, after in itertools.pairwise(sessions):
            assert before.ended_at <= after.started_at, (machine.slug, before.pk, after.pk)
        # Attribution would decide exactly what the history wrote, and the bookings carry its usage.
        assert (
            attribution.attribute_sessions(
                machine.pk, midnight - dt.timedelta(days=DAYS + 1), midnight, now=NOW
            )
            == 0
        )
    assert attribution.recompute_booking(hist.values_list("pk", flat=True), now=NOW) == 0

    # The rollups cover every machine and day of the history.
    machines = Machine.objects.count()
    assert MachineDay.objects.filter(day__gte=first_day, day__lte=last_day).count() == machines * DAYS
    assert (
        MemberDay.objects.filter(day__gte=first_day, kind=MemberDay.Kind.USE)
        .values("subject")
        .distinct()
        .count()
        > 30
    )
    assert MemberDay.objects.filter(kind=MemberDay.Kind.TRAINING, certified=True).exists()

    # Today's scenes are all there: Karim's no-show, the laser's past sessions.
    assert Booking.objects.filter(member__username="karim", status=Booking.Status.NO_SHOW).exists()
    assert UsageSession.objects.filter(job_id__startswith="demo-history-").count() == len(scenes.CARE_HISTORY)
    # However much history there is, the lens was cleaned about 21 run hours ago: the task is just due.
    from devices import care
    from devices.models import ServiceInterval

    lens = ServiceInterval.objects.get(machine__slug=scenes.CARE_MACHINE, name=scenes.CARE_TASKS[0][0])
    assert care.run_hours(lens.machine_id, lens.counted_from, NOW) == pytest.approx(
        scenes.CARE_RUN_HOURS_SINCE
    )

    # Generated once: a second seeding adds no history.
    counts = (get_user_model().objects.count(), hist.count(), UsageSession.objects.count())
    with time_machine.travel(NOW + dt.timedelta(minutes=5), tick=False):
        seed("--history-days", str(DAYS))
    assert (get_user_model().objects.count(), hist.count()) == counts[:2]
