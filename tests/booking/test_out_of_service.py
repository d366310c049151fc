"""Out of service: a window from now until a date cancels the bookings it hits, tells their members
where else they could go, refuses new bookings, and gives its time back when it ends early.

The clock stands still at 09:00 (Brussels) on a fixed Wednesday; the services are also given that
moment as ``now``. The lab opens 08:00–20:00 every day (``LabFactory``).
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.urls import reverse
from django.utils import translation
from rest_framework.test import APIClient

from fablab.booking import emails, out_of_service, services
from fablab.booking.errors import BookingError
from fablab.booking.models import Booking, FreedTime
from fablab.booking.signals import booking_changed, machine_back_in_service
from fablab.labs.models import MaintenanceWindow
from tests.factories import (
    BookingFactory,
    CertificationFactory,
    LabFactory,
    MachineFactory,
    MaintenanceWindowFactory,
    TrainingFactory,
    UserFactory,
    api_token,
)

pytestmark = pytest.mark.django_db

BRUSSELS = ZoneInfo("Europe/Brussels")
DAY = dt.date(2031, 3, 12)
DUTCH_MONTHS = ("maart",)


def at(hour: int, minute: int = 0, *, days: int = 0) -> dt.datetime:
    return dt.datetime.combine(DAY + dt.timedelta(days=days), dt.time(hour, minute), tzinfo=BRUSSELS)


NOW = at(9)


@pytest.fixture(autouse=True)
def _clock():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def lab():
    return LabFactory(slug="centre", name="Centre")


@pytest.fixture
def training():
    return TrainingFactory(name="Printer basics")


@pytest.fixture
def broken(lab, training):
    return MachineFactory(lab=lab, name="Printer A", required_training=training)


@pytest.fixture
def twin(lab, training):
    """Same type, same training: where the members can go."""
    return MachineFactory(lab=lab, name="Printer B", required_training=training)


@pytest.fixture
def resin(lab):
    """Same type, free earlier than the twin, but it needs a training nobody here has."""
    return MachineFactory(lab=lab, name="Printer C", required_training=TrainingFactory(name="Resin safety"))


@pytest.fixture
def manager(lab):
    user = UserFactory(username="manon", first_name="Manon")
    lab.managers.add(user)
    return user


def certified(username: str, training, language: str = "en"):
    member = UserFactory(username=username, first_name=username.title(), language=language)
    CertificationFactory(member=member, training=training)
    return member


def api_for(user) -> APIClient:
    client = APIClient()
    token = api_token(user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


@pytest.fixture
def changes():
    seen: list[tuple[int, str]] = []

    def listen(sender, booking_id, machine_id, change, **kwargs):
        seen.append((booking_id, change))

    booking_changed.connect(listen, dispatch_uid="test-out-of-service")
    yield seen
    booking_changed.disconnect(dispatch_uid="test-out-of-service")


@pytest.fixture
def back_in_service_sent():
    seen: list[tuple[int, dt.datetime, object]] = []

    def listen(sender, machine_id, at, by, **kwargs):
        seen.append((machine_id, at, by))

    machine_back_in_service.connect(listen, dispatch_uid="test-back-in-service")
    yield seen
    machine_back_in_service.disconnect(dispatch_uid="test-back-in-service")


@pytest.fixture
def languages_used(monkeypatch):
    seen: dict[str, str] = {}
    original = emails.send_mail

    def recording(subject, body, sender, recipients, **kwargs):
        for recipient in recipients:
            seen[recipient] = translation.get_language()
        return original(subject, body, sender, recipients, **kwargs)

    monkeypatch.setattr(emails, "send_mail", recording)
    return seen


def test_a_breakdown_cancels_the_bookings_it_hits_and_tells_each_member_where_else_to_go(
    broken,
    twin,
    resin,
    manager,
    training,
    mailoutbox,
    django_capture_on_commit_callbacks,
    changes,
    languages_used,
):
    ada = certified("ada", training)
    bert = certified("bert", training, language="nl")
    carla = certified("carla", training)
    ada_booking = BookingFactory(machine=broken, member=ada, start=at(10), end=at(11))
    bert_booking = BookingFactory(machine=broken, member=bert, start=at(14), end=at(15, 30))
    in_use = BookingFactory(
        machine=broken, member=carla, start=at(8, 30), end=at(9, 30), status=Booking.Status.CHECKED_IN
    )
    session = BookingFactory(
        machine=broken, member=None, kind=Booking.Kind.TRAINING, title="Intro", start=at(16), end=at(17)
    )
    after = BookingFactory(machine=broken, member=ada, start=at(10, days=2), end=at(11, days=2))
    # The twin is taken until 12:00; the resin printer is free all day but ada may not use it.
    BookingFactory(machine=twin, start=at(9), end=at(12))

    with django_capture_on_commit_callbacks(execute=True):
        result = out_of_service.put_out_of_service(
            machine=broken,
            kind=MaintenanceWindow.Kind.BREAKDOWN,
            until=at(12, days=1),
            reason="Nozzle jammed",
            by=manager,
            now=NOW,
        )

    window = result.window
    assert (window.start, window.end, window.kind) == (NOW, at(12, days=1), "breakdown")
    assert window.created_by == manager
    for booking in (ada_booking, bert_booking, session):
        booking.refresh_from_db()
        assert booking.status == Booking.Status.CANCELLED
        assert booking.cancel_reason == Booking.CancelReason.OUT_OF_SERVICE
        assert booking.cancelled_by == manager
    in_use.refresh_from_db()
    after.refresh_from_db()
    assert in_use.status == Booking.Status.CHECKED_IN  # the member is using it
    assert after.status == Booking.Status.CONFIRMED  # after the window
    assert [b.pk for b in result.hits.cancelled] == [ada_booking.pk, bert_booking.pk]
    assert [b.pk for b in result.hits.sessions] == [session.pk]
    assert [b.pk for b in result.hits.kept] == [in_use.pk]
    assert sorted(changes) == sorted(
        [(ada_booking.pk, "cancelled"), (bert_booking.pk, "cancelled"), (session.pk, "cancelled")]
    )

    by_member = {m.to[0]: m for m in mailoutbox}
    assert sorted(by_member) == ["ada@example.org", "bert@example.org"]
    assert languages_used == {"ada@example.org": "en", "bert@example.org": "nl"}
    ada_mail = by_member["ada@example.org"]
    assert "Printer A" in ada_mail.subject
    assert "Nozzle jammed" in ada_mail.body
    assert "13 March 2031" in ada_mail.body  # until when, lab-local
    # The nearest free hour from 10:00 she may book: the twin at 12:00, not the resin printer at 10:00.
    assert "Printer B, 12 March 2031, 12:00 – 13:00" in ada_mail.body
    assert "Printer C" not in ada_mail.body
    assert f"/book/{twin.pk}/?start=2031-03-12T12%3A00%3A00%2B01%3A00" in ada_mail.body
    bert_mail = by_member["bert@example.org"]
    assert "maart" in bert_mail.body  # dates in Dutch
    # Bert's 90 minutes from 14:00 fit on the twin straight away.
    assert "Printer B" in bert_mail.body and "14:00" in bert_mail.body


def test_without_a_machine_the_member_may_use_the_email_says_so(
    broken, manager, training, mailoutbox, django_capture_on_commit_callbacks
):
    ada = certified("ada", training)
    BookingFactory(machine=broken, member=ada, start=at(10), end=at(11))
    broken.max_days_ahead = 1
    broken.save()
    with django_capture_on_commit_callbacks(execute=True):
        out_of_service.put_out_of_service(
            machine=broken, kind="breakdown", until=at(12, days=5), reason="", by=manager, now=NOW
        )
    (mail,) = mailoutbox
    assert "We found no free time of the same length" in mail.body
    assert "/book/" not in mail.body


def test_new_bookings_are_refused_saying_until_when_on_the_page_and_the_api(
    client, broken, manager, training, django_capture_on_commit_callbacks
):
    ada = certified("ada", training)
    response = api_for(manager).post(
        f"/api/v1/machines/{broken.pk}/out-of-service/",
        {"kind": "breakdown", "until": at(12, days=1).isoformat(), "reason": "Belt snapped"},
        format="json",
    )
    assert response.status_code == 201, response.content
    assert response.json()["window"]["kind"] == "breakdown"
    assert response.json()["window"]["end"] == "2031-03-13T12:00:00+01:00"

    body = {"machine": broken.pk, "start": at(14).isoformat(), "end": at(15).isoformat()}
    refused = api_for(ada).post("/api/v1/bookings/", body, format="json")
    assert refused.status_code == 409, refused.content
    assert refused.json()["code"] == "machine_out_of_service"
    assert "13 March 2031" in refused.json()["detail"]

    client.force_login(ada)
    page = client.post(
        reverse("booking:book", args=[broken.pk]), {"start": at(14).isoformat(), "duration": 60}
    )
    assert page.status_code == 200
    assert "out of service until" in page.content.decode()
    assert "13 March 2031" in page.content.decode()
    assert not Booking.objects.filter(member=ada).exists()
    # After the window the machine books again.
    later = {"machine": broken.pk, "start": at(13, days=1).isoformat(), "end": at(14, days=1).isoformat()}
    assert api_for(ada).post("/api/v1/bookings/", later, format="json").status_code == 201
    # The public pages say so.
    week = client.get(reverse("labs:machine", args=[broken.lab.slug, broken.slug])).content.decode()
    assert "Out of service until 13 March 2031" in week and "Breakdown" in week
    assert (
        "Out of service until" in client.get(reverse("labs:detail", args=[broken.lab.slug])).content.decode()
    )


def test_planned_maintenance_ahead_is_maintenance_and_cancels_what_it_hits(
    broken, manager, training, mailoutbox, django_capture_on_commit_callbacks
):
    ada = certified("ada", training)
    hit = BookingFactory(machine=broken, member=ada, start=at(10, days=1), end=at(11, days=1))
    with django_capture_on_commit_callbacks(execute=True):
        result = out_of_service.schedule_maintenance(
            machine=broken, start=at(8, days=1), end=at(12, days=1), reason="New belt", by=manager, now=NOW
        )
    assert result.window.kind == MaintenanceWindow.Kind.PLANNED
    hit.refresh_from_db()
    assert hit.cancel_reason == Booking.CancelReason.OUT_OF_SERVICE
    (mail,) = mailoutbox
    assert "out of service for maintenance until" in mail.body and "New belt" in mail.body
    with pytest.raises(BookingError) as refused:
        services.booking_create(machine=broken, member=ada, start=at(9, days=1), end=at(10, days=1), now=NOW)
    assert refused.value.code == "maintenance"


def test_the_maintenance_page_asks_before_cancelling_then_cancels(client, broken, manager, training):
    ada = certified("ada", training)
    hit = BookingFactory(machine=broken, member=ada, start=at(10, days=1), end=at(11, days=1))
    client.force_login(manager)
    url = reverse("booking:maintenance", args=[broken.pk])
    data = {"start": "2031-03-13T09:30", "end": "2031-03-13T12:00", "reason": "New lens"}

    asked = client.post(url, data)
    assert asked.status_code == 200
    assert "these bookings will be cancelled" in asked.content.decode()
    assert "Ada" in asked.content.decode()
    assert not MaintenanceWindow.objects.exists()
    hit.refresh_from_db()
    assert hit.status == Booking.Status.CONFIRMED

    done = client.post(url, {**data, "confirm": "1"}, follow=True)
    window = MaintenanceWindow.objects.get()
    assert (window.start, window.end, window.kind) == (at(9, 30, days=1), at(12, days=1), "planned")
    hit.refresh_from_db()
    assert hit.status == Booking.Status.CANCELLED
    assert "1 booking cancelled" in done.content.decode()


def test_putting_out_of_service_from_the_page_confirms_and_back_in_service_frees_the_rest(
    client, broken, manager, training
):
    ada = certified("ada", training)
    hit = BookingFactory(machine=broken, member=ada, start=at(10), end=at(11))
    client.force_login(manager)
    url = reverse("booking:out_of_service", args=[broken.pk])
    data = {"kind": "breakdown", "until": "2031-03-14T12:00", "reason": "Smoke"}
    asked = client.post(url, data)
    assert "these bookings will be cancelled" in asked.content.decode()
    assert not MaintenanceWindow.objects.exists()
    client.post(url, {**data, "confirm": "1"})
    window = MaintenanceWindow.objects.get()
    hit.refresh_from_db()
    assert hit.status == Booking.Status.CANCELLED
    page = client.get(reverse("booking:maintenance", args=[broken.pk])).content.decode()
    assert "Breakdown" in page and reverse("booking:back_in_service", args=[window.pk]) in page
    day = client.get(reverse("booking:day", args=[broken.lab.slug])).content.decode()
    assert "Out of service now" in day

    with time_machine.travel(at(10, 40), tick=False):
        client.post(reverse("booking:back_in_service", args=[window.pk]))
    window.refresh_from_db()
    assert window.start == NOW and window.end == at(10, 40)  # on record as the downtime it was
    freed = FreedTime.objects.get()
    assert freed.reason == FreedTime.Reason.MAINTENANCE
    assert (freed.start, freed.end) == (at(11), at(12, days=2))  # from the next slot boundary


def test_a_past_until_is_a_form_error_and_changes_nothing(client, broken, manager):
    client.force_login(manager)
    response = client.post(
        reverse("booking:out_of_service", args=[broken.pk]),
        {"kind": "breakdown", "until": "2031-03-12T08:00"},
    )
    assert response.status_code == 400
    assert "Give a moment after now." in response.content.decode()
    assert not MaintenanceWindow.objects.exists()
    with pytest.raises(BookingError) as refused:
        out_of_service.put_out_of_service(
            machine=broken, kind="breakdown", until=NOW, reason="", by=manager, now=NOW
        )
    assert refused.value.code == "invalid_range"


def test_back_in_service_through_the_api_ends_the_window_and_frees_the_rest(broken, manager):
    window = MaintenanceWindowFactory(machine=broken, start=at(8), end=at(18), kind="breakdown")
    response = api_for(manager).post(f"/api/v1/machines/{broken.pk}/back-in-service/")
    assert response.status_code == 200, response.content
    assert response.json()[0]["end"] == "2031-03-12T09:00:00+01:00"
    window.refresh_from_db()
    assert window.end == NOW
    freed = FreedTime.objects.get()
    assert (freed.start, freed.end, freed.reason) == (NOW, at(18), "maintenance")
    again = api_for(manager).post(f"/api/v1/machines/{broken.pk}/back-in-service/")
    assert again.status_code == 400 and again.json()["code"] == "invalid_range"


def test_back_in_service_tells_the_machine_side_once_after_the_commit(
    broken, manager, back_in_service_sent, django_capture_on_commit_callbacks
):
    """The machine side closes the fault members reported; a refusal, or a window ending later, says nothing."""
    ahead = MaintenanceWindowFactory(machine=broken, start=at(10, days=1), end=at(16, days=1))
    with django_capture_on_commit_callbacks(execute=True):
        out_of_service.shorten_maintenance(ahead, at(12, days=1), manager, now=NOW)
        with pytest.raises(BookingError):
            out_of_service.back_in_service_machine(machine=broken, by=manager, now=NOW)
    assert back_in_service_sent == []

    MaintenanceWindowFactory(machine=broken, start=at(8), end=at(18), kind="breakdown")
    MaintenanceWindowFactory(machine=broken, start=at(8, 30), end=at(12), kind="planned")
    with django_capture_on_commit_callbacks() as on_commit:
        ended = out_of_service.back_in_service_machine(machine=broken, by=manager, now=NOW)
    assert len(ended) == 2 and back_in_service_sent == []  # not before the commit
    for callback in on_commit:
        callback()
    assert back_in_service_sent == [(broken.pk, NOW, manager)]  # once for the machine, not per window


def test_shortening_and_deleting_planned_windows_give_their_time_back(broken, manager):
    ahead = MaintenanceWindowFactory(machine=broken, start=at(10, days=1), end=at(16, days=1))
    out_of_service.shorten_maintenance(ahead, at(12, days=1), manager, now=NOW)
    ahead.refresh_from_db()
    assert ahead.end == at(12, days=1)
    freed = FreedTime.objects.get()
    assert (freed.start, freed.end, freed.reason) == (at(12, days=1), at(16, days=1), "maintenance")

    out_of_service.remove_maintenance(window=ahead, by=manager, now=NOW)
    assert not MaintenanceWindow.objects.exists()
    assert FreedTime.objects.filter(start=at(10, days=1), end=at(12, days=1), reason="maintenance").exists()

    under_way = MaintenanceWindowFactory(machine=broken, start=at(8), end=at(12))
    with pytest.raises(BookingError):
        out_of_service.remove_maintenance(window=under_way, by=manager, now=NOW)  # end it instead
    with pytest.raises(BookingError):
        out_of_service.shorten_maintenance(under_way, at(13), manager, now=NOW)  # not earlier


def test_out_of_service_again_extends_the_same_kind_and_replaces_the_other(broken, manager):
    first = out_of_service.put_out_of_service(
        machine=broken, kind="breakdown", until=at(18), reason="Smoke", by=manager, now=NOW
    ).window
    later = at(10)
    longer = out_of_service.put_out_of_service(
        machine=broken, kind="breakdown", until=at(18, days=1), reason="", by=manager, now=later
    ).window
    assert longer.pk == first.pk
    assert (longer.start, longer.end, longer.reason) == (NOW, at(18, days=1), "Smoke")
    planned = out_of_service.put_out_of_service(
        machine=broken, kind="planned", until=at(12, days=1), reason="Repair", by=manager, now=at(11)
    ).window
    first.refresh_from_db()
    assert first.end == at(11)  # the breakdown ends when the repair starts
    assert (planned.start, planned.end, planned.kind) == (at(11), at(12, days=1), "planned")
    # The breakdown held until 18:00 tomorrow; the repair gives back what follows its end.
    assert FreedTime.objects.filter(start=at(12, days=1), end=at(18, days=1), reason="maintenance").exists()


def test_non_managers_get_403_and_another_labs_machine_or_window_is_404(client, broken, training):
    maker = certified("maker", training)
    window = MaintenanceWindowFactory(machine=broken, start=at(8), end=at(18))
    body = {"kind": "breakdown", "until": at(12, days=1).isoformat()}

    refused = api_for(maker).post(f"/api/v1/machines/{broken.pk}/out-of-service/", body, format="json")
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
    assert api_for(maker).post(f"/api/v1/machines/{broken.pk}/back-in-service/").status_code == 403
    client.force_login(maker)
    page_body = {"kind": "breakdown", "until": "2031-03-13T12:00"}
    assert client.post(reverse("booking:out_of_service", args=[broken.pk]), page_body).status_code == 403
    assert client.post(reverse("booking:back_in_service", args=[window.pk])).status_code == 403
    with pytest.raises(BookingError) as forbidden:
        out_of_service.back_in_service(window=window, by=maker, now=NOW)
    assert forbidden.value.code == "forbidden"

    elsewhere = UserFactory(username="other-manager")
    LabFactory(slug="elsewhere").managers.add(elsewhere)
    assert (
        api_for(elsewhere)
        .post(f"/api/v1/machines/{broken.pk}/out-of-service/", body, format="json")
        .status_code
        == 404
    )
    assert api_for(elsewhere).post(f"/api/v1/machines/{broken.pk}/back-in-service/").status_code == 404
    client.force_login(elsewhere)
    assert client.post(reverse("booking:out_of_service", args=[broken.pk]), page_body).status_code == 404
    assert client.post(reverse("booking:back_in_service", args=[window.pk])).status_code == 404
    assert client.post(reverse("booking:shorten_maintenance", args=[window.pk])).status_code == 404
    window.refresh_from_db()
    assert window.end == at(18)
    assert not MaintenanceWindow.objects.exclude(pk=window.pk).exists()
