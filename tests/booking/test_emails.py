"""Booking emails through the API: who gets them, when, and in which language."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone, translation
from rest_framework.test import APIClient

from fablab.booking import emails
from fablab.booking.models import Booking
from tests.factories import BookingFactory, LabFactory, MachineFactory, UserFactory, api_token

pytestmark = pytest.mark.django_db

BRUSSELS = ZoneInfo("Europe/Brussels")
ENGLISH_MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
DUTCH_MONTHS = [
    "januari",
    "februari",
    "maart",
    "april",
    "mei",
    "juni",
    "juli",
    "augustus",
    "september",
    "oktober",
    "november",
    "december",
]
FRENCH_MONTHS = [
    "janvier",
    "février",
    "mars",
    "avril",
    "mai",
    "juin",
    "juillet",
    "août",
    "septembre",
    "octobre",
    "novembre",
    "décembre",
]


def local(days: int, hour: int) -> dt.datetime:
    day = timezone.localdate(timezone.now(), BRUSSELS) + dt.timedelta(days=days)
    return dt.datetime.combine(day, dt.time(hour), tzinfo=BRUSSELS)


def client_for(user, language: str | None = None) -> APIClient:
    client = APIClient()
    token = api_token(user)
    headers = {"HTTP_AUTHORIZATION": f"Token {token}"}
    if language:
        headers["HTTP_ACCEPT_LANGUAGE"] = language
    client.credentials(**headers)
    return client


def book(client, machine, start, end, purpose: str = ""):
    payload = {"machine": machine.pk, "start": start.isoformat(), "end": end.isoformat(), "purpose": purpose}
    return client.post("/api/v1/bookings/", payload, format="json")


@pytest.fixture
def languages_used(monkeypatch):
    """The active language at the moment each email is sent, by recipient."""
    seen: dict[str, str] = {}
    original = emails.send_mail

    def recording_send_mail(subject, body, sender, recipients, **kwargs):
        for recipient in recipients:
            seen[recipient] = translation.get_language()
        return original(subject, body, sender, recipients, **kwargs)

    monkeypatch.setattr(emails, "send_mail", recording_send_mail)
    return seen


@pytest.fixture
def machine():
    return MachineFactory(lab=LabFactory(name="Centre"), name="Prusa MK4")


def test_a_confirmed_booking_is_mailed_to_its_member(machine, mailoutbox, django_capture_on_commit_callbacks):
    ada = UserFactory(username="ada", email="ada@example.org")
    with django_capture_on_commit_callbacks(execute=True):
        response = book(client_for(ada), machine, local(2, 10), local(2, 11), "a lamp")
    assert response.status_code == 201
    (message,) = mailoutbox
    assert message.to == ["ada@example.org"]
    booking = Booking.objects.get()
    assert message.subject == emails.subject_for("confirmed", booking)
    assert "Prusa MK4" in message.subject
    # Lab-local time (10:00 in Brussels, whatever UTC says), in English.
    start = local(2, 10)
    assert f"{start.day} {ENGLISH_MONTHS[start.month - 1]} {start.year}, 10:00" in message.body
    assert "a lamp" in message.body
    assert "Centre" in message.body


def test_refused_bookings_send_nothing(machine, mailoutbox, django_capture_on_commit_callbacks):
    BookingFactory(machine=machine, start=local(2, 10), end=local(2, 11))
    with django_capture_on_commit_callbacks(execute=True):
        response = book(client_for(UserFactory()), machine, local(2, 10), local(2, 11))
    assert response.status_code == 409
    assert mailoutbox == []


def test_the_approval_flow_mails_each_step(machine, mailoutbox, django_capture_on_commit_callbacks):
    machine.approval_required = True
    machine.save()
    manager = UserFactory(username="boss")
    machine.lab.managers.add(manager)
    ada = UserFactory(username="ada", email="ada@example.org")
    boss = client_for(manager)

    with django_capture_on_commit_callbacks(execute=True):
        first = book(client_for(ada), machine, local(2, 10), local(2, 11)).json()
        second = book(client_for(ada), machine, local(3, 10), local(3, 11)).json()
    assert first["status"] == second["status"] == "pending"
    with django_capture_on_commit_callbacks(execute=True):
        assert boss.post(f"/api/v1/bookings/{first['id']}/approve/").status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        assert boss.post(f"/api/v1/bookings/{second['id']}/decline/").status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        assert client_for(ada).post(f"/api/v1/bookings/{first['id']}/cancel/").status_code == 200

    assert [m.to for m in mailoutbox] == [["ada@example.org"]] * 5
    first_booking, second_booking = Booking.objects.get(pk=first["id"]), Booking.objects.get(pk=second["id"])
    assert [m.subject for m in mailoutbox] == [
        emails.subject_for("requested", first_booking),
        emails.subject_for("requested", second_booking),
        emails.subject_for("approved", first_booking),
        emails.subject_for("declined", second_booking),
        emails.subject_for("cancelled", first_booking),
    ]
    assert len({m.subject for m in mailoutbox}) == 4  # requested twice, then three different kinds


def test_emails_are_in_the_members_language(
    machine, mailoutbox, languages_used, django_capture_on_commit_callbacks
):
    """Each member gets the email in their own language, not in the language of the request."""
    members = {
        language: UserFactory(
            username=f"member-{language}", email=f"{language}@example.org", language=language
        )
        for language in ("en", "nl", "fr")
    }
    machines = {"en": machine, "nl": MachineFactory(lab=machine.lab), "fr": MachineFactory(lab=machine.lab)}
    start, end = local(2, 10), local(2, 11)
    for language, member in members.items():
        # The request itself asks for another language.
        with django_capture_on_commit_callbacks(execute=True):
            assert book(client_for(member, language="de"), machines[language], start, end).status_code == 201

    assert languages_used == {"en@example.org": "en", "nl@example.org": "nl", "fr@example.org": "fr"}
    bodies = {m.to[0].split("@")[0]: m.body for m in mailoutbox}
    month = start.month - 1
    # Django's own month names: they differ even before our catalogues are complete.
    assert f"{start.day} {DUTCH_MONTHS[month]} {start.year} 10:00" in bodies["nl"]
    assert f"{start.day} {FRENCH_MONTHS[month]} {start.year} 10:00" in bodies["fr"]
    assert f"{start.day} {ENGLISH_MONTHS[month]} {start.year}, 10:00" in bodies["en"]


def test_a_managers_decision_is_mailed_in_the_members_language(
    machine, mailoutbox, languages_used, django_capture_on_commit_callbacks
):
    manager = UserFactory(username="boss", language="en")
    machine.lab.managers.add(manager)
    els = UserFactory(username="els", email="els@example.org", language="nl")
    pending = BookingFactory(
        machine=machine, member=els, start=local(2, 10), end=local(2, 11), status=Booking.Status.PENDING
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(manager, language="en").post(f"/api/v1/bookings/{pending.pk}/approve/")
    assert response.status_code == 200
    (message,) = mailoutbox
    assert message.to == ["els@example.org"]
    assert languages_used == {"els@example.org": "nl"}
    with translation.override("nl"):
        assert message.subject == emails.subject_for("approved", Booking.objects.get(pk=pending.pk))


def test_members_without_an_email_address_get_none(machine, mailoutbox, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = book(client_for(UserFactory(email="")), machine, local(2, 10), local(2, 11))
    assert response.status_code == 201
    assert mailoutbox == []


def test_a_mail_outage_does_not_undo_the_booking(
    machine, mailoutbox, monkeypatch, django_capture_on_commit_callbacks
):
    def broken_send_mail(*args, **kwargs):
        raise ConnectionRefusedError("smtp is down")

    monkeypatch.setattr(emails, "send_mail", broken_send_mail)
    with django_capture_on_commit_callbacks(execute=True):
        response = book(client_for(UserFactory()), machine, local(2, 10), local(2, 11))
    assert response.status_code == 201
    assert Booking.objects.filter(pk=response.json()["id"], status=Booking.Status.CONFIRMED).exists()
    assert mailoutbox == []
