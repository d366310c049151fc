"""The workshop pages and the member's "repeat weekly" (fablab.booking.series_views)."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest
import time_machine
from django.core import mail
from django.urls import reverse

from fablab.booking.models import Booking, Series, WorkshopRegistration
from fablab.labs.models import Closure
from tests.factories import BookingFactory, LabFactory, MachineFactory, UserFactory

pytestmark = pytest.mark.django_db

BXL = zoneinfo.ZoneInfo("Europe/Brussels")
NOW = dt.datetime(2027, 3, 1, 9, 0, tzinfo=BXL)
TUESDAY = dt.date(2027, 3, 2)


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield


def local(day: dt.date, hour: int) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour), tzinfo=BXL)


def test_a_manager_plans_sees_the_conflict_moves_it_and_confirms(client, django_capture_on_commit_callbacks):
    lab = LabFactory()
    manager = UserFactory()
    lab.managers.add(manager)
    laser, spare = MachineFactory(lab=lab), MachineFactory(lab=lab)
    member = UserFactory()
    theirs = BookingFactory(machine=laser, member=member, start=local(TUESDAY, 18), end=local(TUESDAY, 19))
    client.force_login(manager)
    url = reverse("booking:workshop_new", args=[lab.slug])
    form = {
        "title": "Laser basics",
        "machines": [laser.pk],
        "weekdays": ["1"],
        "first_day": TUESDAY.isoformat(),
        "start_time": "18:00",
        "duration_minutes": "180",
        "until": (TUESDAY + dt.timedelta(weeks=1)).isoformat(),
        "seats": "6",
        "target_group": "students",
        "plan": "",
    }
    page = client.post(url, form)
    assert page.status_code == 200
    (conflict,) = page.context["plan"].conflicts
    assert member.username in page.content.decode()
    assert not Series.objects.exists()
    del form["plan"]
    with django_capture_on_commit_callbacks(execute=True):
        done = client.post(url, {**form, "confirm": "", f"resolve-{conflict.key}": "move"})
    workshop = Series.objects.get()
    assert done.status_code == 302 and done["Location"] == reverse("booking:workshop", args=[workshop.pk])
    assert workshop.bookings.count() == 2
    theirs.refresh_from_db()
    assert theirs.machine == spare and [m.to for m in mail.outbox] == [[member.email]]

    # A member registers in one click; the manager ticks attendance.
    first = workshop.bookings.order_by("start").first()
    client.force_login(member)
    page = client.get(reverse("booking:workshop", args=[workshop.pk]))
    assert page.status_code == 200 and "students" in page.content.decode()
    client.post(reverse("booking:workshop_register", args=[workshop.pk, first.pk]))
    assert WorkshopRegistration.objects.filter(member=member, occurrence_start=first.start).exists()
    assert client.get(reverse("booking:workshop_attendance", args=[workshop.pk, first.pk])).status_code == 403
    client.force_login(manager)
    attendance = reverse("booking:workshop_attendance", args=[workshop.pk, first.pk])
    assert member.username in client.get(attendance).content.decode()
    client.post(attendance, {"attended": [str(member.pk)]})
    assert WorkshopRegistration.objects.get(member=member).attended is True


def test_a_member_repeats_a_booking_weekly_and_cancels_the_rest(client):
    lab = LabFactory()
    printer = MachineFactory(lab=lab)
    maker = UserFactory()
    client.force_login(maker)
    start = local(dt.date(2027, 3, 3), 10)
    response = client.post(
        reverse("booking:book", args=[printer.pk]),
        {"start": start.isoformat(), "duration": "60", "purpose": "", "repeat_until": "2027-04-14"},
    )
    assert response.status_code == 302
    series = Series.objects.get(member=maker)
    assert series.bookings.count() == 4  # within 28 days; the rest come as the horizon moves
    second = series.bookings.order_by("start")[1]
    page = client.get(reverse("booking:detail", args=[second.pk]))
    assert reverse("booking:cancel_series", args=[second.pk]) in page.content.decode()
    client.post(reverse("booking:cancel_series", args=[second.pk]))
    assert (
        list(series.bookings.order_by("start").values_list("status", flat=True))
        == [Booking.Status.CONFIRMED] + [Booking.Status.CANCELLED] * 3
    )
    # Somebody else may not.
    client.force_login(UserFactory())
    assert client.post(reverse("booking:cancel_series", args=[second.pk])).status_code == 404


def test_the_series_api_previews_then_books_a_workshop_and_lists_own_series(client):
    lab = LabFactory()
    manager = UserFactory()
    lab.managers.add(manager)
    laser = MachineFactory(lab=lab)
    BookingFactory(machine=laser, start=local(TUESDAY, 18), end=local(TUESDAY, 19))
    body = {
        "lab": lab.slug,
        "title": "Night course",
        "machines": [laser.pk],
        "rrule": "FREQ=WEEKLY;BYDAY=TU;COUNT=3",
        "first_day": TUESDAY.isoformat(),
        "start_time": "18:00",
        "duration_minutes": 120,
    }
    client.force_login(UserFactory())
    assert client.post("/api/v1/series/", body, content_type="application/json").status_code == 403
    client.force_login(manager)
    preview = client.post("/api/v1/series/", body, content_type="application/json")
    assert preview.status_code == 200
    occurrences = preview.json()["occurrences"]
    assert [len(o["conflicts"]) for o in occurrences] == [1, 0, 0]
    assert occurrences[0]["start"] == "2027-03-02T18:00:00+01:00"
    key = occurrences[0]["conflicts"][0]["key"]
    assert not Series.objects.exists()
    made = client.post(
        "/api/v1/series/",
        {**body, "preview": False, "resolutions": {key: "skip"}},
        content_type="application/json",
    )
    assert made.status_code == 201, made.content
    assert Series.objects.get().bookings.count() == 2
    listed = client.get("/api/v1/series/").json()
    assert [s["title"] for s in listed["results"]] == ["Night course"]
    bad = client.post("/api/v1/series/", {**body, "rrule": "FREQ=SECONDLY"}, content_type="application/json")
    assert (bad.status_code, bad.json()["code"]) == (400, "series_invalid_rule")


def test_a_closure_day_is_shown_as_a_conflict_of_the_whole_lab(client):
    lab = LabFactory()
    manager = UserFactory()
    lab.managers.add(manager)
    laser = MachineFactory(lab=lab, name="Laser")
    Closure.objects.create(lab=lab, starts_on=TUESDAY, ends_on=TUESDAY, reason="Carnival")
    client.force_login(manager)
    form = {
        "title": "Laser basics",
        "machines": [laser.pk],
        "weekdays": ["1"],
        "first_day": TUESDAY.isoformat(),
        "start_time": "18:00",
        "duration_minutes": "180",
        "until": (TUESDAY + dt.timedelta(weeks=1)).isoformat(),
        "plan": "",
    }
    page = client.post(reverse("booking:workshop_new", args=[lab.slug]), form).content.decode()
    assert "The lab is closed from" in page and "(Carnival)" in page and "Laser:" not in page
    body = {
        "lab": lab.slug,
        "title": "Laser basics",
        "machines": [laser.pk],
        "rrule": "FREQ=WEEKLY;BYDAY=TU;COUNT=2",
        "first_day": TUESDAY.isoformat(),
        "start_time": "18:00",
        "duration_minutes": 120,
    }
    occurrences = client.post("/api/v1/series/", body, content_type="application/json").json()["occurrences"]
    (closed,) = occurrences[0]["conflicts"]
    assert (closed["what"], closed["machine"], closed["movable"]) == ("closure", None, False)
    assert (closed["start"], closed["end"]) == ("2027-03-02T00:00:00+01:00", "2027-03-03T00:00:00+01:00")
    assert occurrences[1]["conflicts"] == []
