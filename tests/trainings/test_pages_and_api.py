"""Pages (machine page, public lab page, session page, attendance) and the API's permissions."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from fablab.members.models import Certification
from fablab.trainings import services
from fablab.trainings.models import Registration
from tests.factories import CertificationFactory, UserFactory

from .helpers import day_at, scene

pytestmark = pytest.mark.django_db


def test_the_machine_page_tells_an_uncertified_member_which_training_and_hides_booking(client):
    lab, _manager, _trainer, training, laser, session, _now = scene()
    client.force_login(UserFactory())
    page = client.get(f"/labs/{lab.slug}/{laser.slug}/").content.decode()
    assert f"You need {training.name}" in page
    assert f"/trainings/{session.pk}/register/" in page
    assert f"/book/{laser.pk}/" not in page and "/book/" not in page.split('id="week"')[1]


def test_a_registered_member_is_not_offered_the_seat_again(client):
    lab, _manager, _trainer, _training, laser, session, now = scene()
    member = UserFactory()
    services.register(session=session, member=member, now=now)
    client.force_login(member)
    page = client.get(f"/labs/{lab.slug}/{laser.slug}/").content.decode()
    assert "You are registered." in page
    assert f"/trainings/{session.pk}/register/" not in page


def test_a_certified_member_sees_bookable_slots_and_no_training_note(client):
    lab, _manager, _trainer, training, laser, _session, _now = scene()
    member = UserFactory()
    CertificationFactory(member=member, training=training)
    client.force_login(member)
    page = client.get(f"/labs/{lab.slug}/{laser.slug}/").content.decode()
    assert "training-needed" not in page
    assert 'class="slot free" href=' in page


def test_the_public_lab_page_lists_sessions_to_anonymous_visitors(client):
    lab, _manager, _trainer, training, _laser, session, _now = scene()
    page = client.get(f"/labs/{lab.slug}/").content.decode()
    assert f"/trainings/{session.pk}/" in page and training.name in page
    detail = client.get(f"/trainings/{session.pk}/").content.decode()
    assert "to register for this session" in detail
    assert client.post(f"/trainings/{session.pk}/register/").status_code == 302
    assert not Registration.objects.exists()


def test_one_click_register_and_the_attendance_page(client):
    _lab, _manager, trainer, _training, _laser, session, _now = scene()
    member = UserFactory()
    client.force_login(member)
    client.post(f"/trainings/{session.pk}/register/")
    registration = Registration.objects.get(member=member)
    assert registration.status == "registered"
    assert client.get(f"/trainings/{session.pk}/attendance/").status_code == 403
    client.force_login(trainer)
    assert client.get(f"/trainings/{session.pk}/attendance/").status_code == 200


def test_api_permissions():
    lab, _manager, trainer, training, laser, session, _now = scene()
    member = UserFactory()
    api = APIClient()
    assert api.get("/api/v1/training-sessions/").status_code == 401
    api.force_authenticate(member)
    listed = api.get("/api/v1/training-sessions/").json()
    assert [s["id"] for s in listed["results"]] == [session.pk]
    body = {
        "training": training.slug,
        "lab": lab.slug,
        "machines": [laser.pk],
        "start": day_at(lab, 14).isoformat(),
        "end": day_at(lab, 16).isoformat(),
        "seats": 4,
    }
    refused = api.post("/api/v1/training-sessions/", body, format="json")
    assert (refused.status_code, refused.json()["code"]) == (403, "forbidden")
    assert (
        api.patch(f"/api/v1/training-sessions/{session.pk}/", {"seats": 9}, format="json").status_code == 403
    )
    assert api.get(f"/api/v1/training-sessions/{session.pk}/attendance/").status_code == 403
    registered = api.post(f"/api/v1/training-sessions/{session.pk}/register/")
    assert (registered.status_code, registered.json()["status"]) == (201, "registered")
    again = api.post(f"/api/v1/training-sessions/{session.pk}/register/")
    assert (again.status_code, again.json()["code"]) == (409, "already_registered")

    api.force_authenticate(trainer)
    created = api.post("/api/v1/training-sessions/", body, format="json")
    assert created.status_code == 201, created.json()
    clash = api.post("/api/v1/training-sessions/", body, format="json")
    assert (clash.status_code, clash.json()["code"]) == (409, "machine_busy")
    assert (
        api.patch(f"/api/v1/training-sessions/{session.pk}/", {"seats": 9}, format="json").json()["seats"]
        == 9
    )
    early = api.post(
        f"/api/v1/training-sessions/{session.pk}/attendance/",
        {"member": member.pk, "present": True},
        format="json",
    )
    assert (early.status_code, early.json()["code"]) == (409, "session_not_started")
    assert not Certification.objects.filter(member=member).exists()
    cancelled = APIClient()
    cancelled.force_authenticate(member)
    assert (
        cancelled.delete(f"/api/v1/training-sessions/{session.pk}/register/").json()["status"] == "cancelled"
    )


def test_the_calendar_feed_has_the_members_sessions(client):
    _lab, _manager, _trainer, training, _laser, session, now = scene()
    member = UserFactory()
    services.register(session=session, member=member, now=now)
    from fablab.members.models import profile_for

    token = profile_for(member).calendar_token
    body = client.get(f"/calendar/member/{token}.ics").content.decode()
    assert f"training-{Registration.objects.get().pk}@" in body
    assert training.name in body
