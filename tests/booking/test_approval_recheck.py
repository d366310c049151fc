"""Approving a pending booking checks the member's certification again (issue 8).

Between the request and the manager's decision the certification may be
revoked, or may now end before the booking does; approving must then be
refused with the booking rule's own code and the booking stays pending.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from fablab.booking import services
from fablab.booking.errors import BookingError
from fablab.booking.models import Booking
from fablab.members.services import certification_revoke
from tests.factories import (
    CertificationFactory,
    LabFactory,
    MachineFactory,
    TrainingFactory,
    UserFactory,
    api_token,
)

pytestmark = pytest.mark.django_db

BRUSSELS = zoneinfo.ZoneInfo("Europe/Brussels")


def at(days: int, hour: int) -> dt.datetime:
    day = timezone.localdate(timezone=BRUSSELS) + dt.timedelta(days=days)
    return dt.datetime.combine(day, dt.time(hour), tzinfo=BRUSSELS)


@pytest.fixture
def setting():
    """A lab manager, a member certified today, and the member's pending request on a trained machine."""
    lab = LabFactory(slug="centre")
    manager = UserFactory(username="manon")
    lab.managers.add(manager)
    training = TrainingFactory(name="Laser safety")
    machine = MachineFactory(lab=lab, required_training=training, approval_required=True)
    member = UserFactory(username="paula")
    cert = CertificationFactory(member=member, training=training, granted_by=manager)
    booking = services.booking_create(machine=machine, member=member, start=at(3, 10), end=at(3, 12))
    assert booking.status == Booking.Status.PENDING
    return manager, member, cert, booking


def test_approving_after_the_certification_was_revoked_is_not_certified(setting):
    manager, _member, cert, booking = setting
    certification_revoke(certification=cert, by=manager, reason="unsafe use")
    with pytest.raises(BookingError) as refused:
        services.booking_approve(booking=booking, by=manager)
    assert refused.value.code == "not_certified"
    assert refused.value.status == 403
    booking.refresh_from_db()
    assert booking.status == Booking.Status.PENDING and booking.decided_by is None


def test_approving_when_the_certification_now_ends_before_the_booking_is_certification_expired(setting):
    manager, _member, cert, booking = setting
    # Shortened since the request: it ends the day before the booking.
    cert.expires_at = booking.start - dt.timedelta(days=1)
    cert.save()
    with pytest.raises(BookingError) as refused:
        services.booking_approve(booking=booking, by=manager)
    assert refused.value.code == "certification_expired"
    booking.refresh_from_db()
    assert booking.status == Booking.Status.PENDING


def test_a_certification_ending_during_the_booking_also_refuses_the_approval(setting):
    manager, _member, cert, booking = setting
    cert.expires_at = booking.end - dt.timedelta(minutes=30)
    cert.save()
    with pytest.raises(BookingError) as refused:
        services.booking_approve(booking=booking, by=manager)
    assert refused.value.code == "certification_expired"


def test_a_still_certified_member_is_approved_and_declining_never_needs_the_certification(setting):
    manager, member, cert, booking = setting
    assert services.booking_approve(booking=booking, by=manager).status == Booking.Status.CONFIRMED
    other = services.booking_create(machine=booking.machine, member=member, start=at(4, 10), end=at(4, 11))
    certification_revoke(certification=cert, by=manager)
    # Declining frees the time; it must work whatever became of the certification.
    assert services.booking_decline(booking=other, by=manager).status == Booking.Status.CANCELLED


def test_the_approvals_page_shows_the_refusal_and_keeps_the_booking_pending(client, setting):
    manager, _member, cert, booking = setting
    certification_revoke(certification=cert, by=manager)
    client.force_login(manager)
    response = client.post(reverse("booking:approve", args=[booking.pk]), follow=True)
    html = response.content.decode()
    assert "The member no longer has the training this machine needs." in html
    assert "Booking approved" not in html
    booking.refresh_from_db()
    assert booking.status == Booking.Status.PENDING


def test_the_api_answers_403_with_the_rules_code(setting):
    manager, _member, cert, booking = setting
    cert.expires_at = booking.start - dt.timedelta(hours=1)
    cert.save()
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {api_token(manager)}")
    response = api.post(f"/api/v1/bookings/{booking.pk}/approve/")
    assert response.status_code == 403
    assert response.json() == {
        "code": "certification_expired",
        "detail": "The member's certification for this machine has expired or expires before the end of this booking.",
    }
    booking.refresh_from_db()
    assert booking.status == Booking.Status.PENDING
