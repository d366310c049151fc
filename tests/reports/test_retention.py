"""Retention: bookings, sessions and commands older than the configured age (default three years) are
pseudonymised by the scheduler, and the report rollups of their days stay as they were."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest
from django.test.utils import override_settings
from django.urls import reverse
from rest_framework.test import APIClient

from devices.models import Alert, Command, UsageSession
from devices.scheduler import Scheduler
from fablab.booking.models import Booking, Series
from fablab.members.models import MemberProfile
from fablab.reports import retention, rollup
from fablab.reports.models import MachineDay, MemberDay, Subject
from tests.factories import BookingFactory, LabFactory, MachineFactory, UserFactory, api_token

pytestmark = pytest.mark.django_db

BXL = zoneinfo.ZoneInfo("Europe/Brussels")
NOW = dt.datetime(2029, 6, 15, 12, tzinfo=BXL)
OLD = (NOW - dt.timedelta(days=3 * 365 + 1)).replace(hour=10, minute=0)  # ended 3 years + 1 day ago
YOUNG = (NOW - dt.timedelta(days=3 * 365 - 1)).replace(hour=10, minute=0)


def used_booking(machine, member, start, **kw) -> Booking:
    booking = BookingFactory(
        machine=machine,
        member=member,
        start=start,
        end=start + dt.timedelta(hours=2),
        status=Booking.Status.COMPLETED,
        checked_in_at=start,
        checked_in_by=member,
        purpose="Present for Lena",
        fault_report="fan noisy",
        **kw,
    )
    UsageSession.objects.create(
        machine=machine,
        started_at=start,
        ended_at=start + dt.timedelta(hours=1),
        outcome="finished",
        job_name="mia_present.gcode",
        job_id="7",
        booking=booking,
    )
    Command.objects.create(
        machine=machine,
        action="unlock",
        issued_by=member,
        booking=booking,
        issued_at=start,
        expires_at=start + dt.timedelta(minutes=1),
    )
    return booking


@pytest.fixture
def scene():
    lab = LabFactory()
    laser = MachineFactory(lab=lab)
    mia = UserFactory(username="mia")
    MemberProfile.objects.filter(user=mia).update(statistics_consent=True, gender="woman", birth_year=1990)
    old = used_booking(laser, mia, OLD)
    young = used_booking(laser, mia, YOUNG)
    Alert.objects.create(
        machine=laser,
        kind=Alert.Kind.FAULT_REPORTED,
        booking=old,
        message=f"#{old.pk} mia: fan noisy",
        raised_at=old.end,
        cleared_at=old.end + dt.timedelta(hours=1),
    )
    return {"lab": lab, "laser": laser, "mia": mia, "old": old, "young": young}


def _rollup_rows(day: dt.date) -> tuple[list, list]:
    machine = list(
        MachineDay.objects.filter(day=day)
        .order_by("machine")
        .values_list("machine", "booked_h", "used_h", "realised_h", "bookings_kept", "used_by_hour")
    )
    member = list(
        MemberDay.objects.filter(day=day)
        .order_by("subject", "kind")
        .values_list("subject", "kind", "machine", "used_h", "gender", "age_band")
    )
    return machine, member


def test_a_booking_ended_three_years_and_a_day_ago_is_pseudonymised_a_younger_one_not(scene):
    old, young, mia = scene["old"], scene["young"], scene["mia"]
    assert retention.pseudonymise_pass(NOW) > 0

    old.refresh_from_db()
    assert old.member_id is None
    assert old.subject_id == Subject.objects.get(member=mia).pk
    assert (old.purpose, old.fault_report, old.checked_in_by_id) == ("", "", None)
    assert (old.status, old.start, old.used_minutes) == (Booking.Status.COMPLETED, OLD, young.used_minutes)
    old_session = UsageSession.objects.get(booking=old)
    assert (old_session.job_name, old_session.job_id) == ("", "")
    assert Command.objects.get(booking=old).issued_by_id is None
    assert Alert.objects.get(booking=old).message == ""

    young.refresh_from_db()
    assert (young.member_id, young.subject_id, young.purpose) == (mia.pk, None, "Present for Lena")
    assert UsageSession.objects.get(booking=young).job_name == "mia_present.gcode"
    assert Command.objects.get(booking=young).issued_by_id == mia.pk


def test_the_pass_is_idempotent(scene):
    first = retention.pseudonymise_pass(NOW)
    assert first == 4  # the booking, its session, its command, the alert
    assert retention.pseudonymise_pass(NOW) == 0


def test_the_rollup_of_a_pseudonymised_day_is_unchanged(scene):
    day = OLD.date()
    rollup.rebuild(day, day, now=NOW)
    before = _rollup_rows(day)
    assert before[1] and before[1][0][4] == "woman"  # a member-day with her consented answer

    retention.pseudonymise_pass(NOW)
    rollup.rebuild(day, day, now=NOW)

    assert _rollup_rows(day) == before


def test_the_age_is_configurable_and_the_batch_bounded(scene, monkeypatch):
    monkeypatch.setattr(retention, "BATCH", 1)
    with override_settings(FABLAB_PSEUDONYMISE_AFTER_DAYS=30):
        retention.pseudonymise_pass(NOW)
        assert Booking.objects.filter(member__isnull=True).count() == 1
        retention.pseudonymise_pass(NOW)
        assert Booking.objects.filter(member__isnull=True).count() == 2
        assert Booking.objects.filter(subject__isnull=False).count() == 2


def test_a_member_series_occurrence_leaves_its_series_which_goes_once_empty(scene):
    lab, laser, mia = scene["lab"], scene["laser"], scene["mia"]
    series = Series.objects.create(
        kind=Series.Kind.MEMBER,
        lab=lab,
        member=mia,
        rrule="FREQ=WEEKLY;COUNT=1",
        first_day=OLD.date(),
        until=OLD.date(),
        start_time=dt.time(15),
        duration=dt.timedelta(hours=1),
        purpose="Weekly prints for my shop",
    )
    occurrence = BookingFactory(
        machine=laser, member=mia, series=series, start=OLD.replace(hour=15), end=OLD.replace(hour=16)
    )
    retention.pseudonymise_pass(NOW)
    occurrence.refresh_from_db()
    assert (occurrence.series_id, occurrence.member_id) == (None, None)
    retention.pseudonymise_pass(NOW)
    assert not Series.objects.filter(pk=series.pk).exists()


def test_the_scheduler_runs_the_retention_step(scene):
    done = Scheduler().run_pass(NOW)
    assert done["retention"] > 0
    scene["old"].refresh_from_db()
    assert scene["old"].member_id is None


def test_pages_and_api_show_a_pseudonymised_booking_without_a_member(scene, client):
    manager = UserFactory()
    scene["lab"].managers.add(manager)
    retention.pseudonymise_pass(NOW)
    old = scene["old"]

    client.force_login(manager)
    response = client.get(reverse("booking:detail", args=[old.pk]))
    assert response.status_code == 200
    assert "mia" not in response.content.decode().lower()

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {api_token(manager)}")
    body = api.get(reverse("api:booking", args=[old.pk])).json()
    assert body["member"] is None
