"""Lab manager pages: who gets in, approvals, certifications, maintenance, the day's bookings."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest
from django.urls import reverse
from django.utils import timezone

from fablab.booking.models import Booking
from fablab.labs.models import MaintenanceWindow
from fablab.members.models import Certification
from tests.factories import (
    BookingFactory,
    CertificationFactory,
    LabFactory,
    MachineFactory,
    MaintenanceWindowFactory,
    TrainingFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

BRUSSELS = zoneinfo.ZoneInfo("Europe/Brussels")


def day_after_tomorrow() -> dt.date:
    return timezone.localdate(timezone=BRUSSELS) + dt.timedelta(days=2)


def at(hour: int, minute: int = 0, day: dt.date | None = None) -> dt.datetime:
    return dt.datetime.combine(day or day_after_tomorrow(), dt.time(hour, minute), tzinfo=BRUSSELS)


@pytest.fixture
def lab():
    return LabFactory(slug="centre", name="Centre")


@pytest.fixture
def training():
    return TrainingFactory(name="Laser safety", validity_days=365)


@pytest.fixture
def machine(lab, training):
    # The lab's machine needs the training, so its managers may grant it.
    return MachineFactory(lab=lab, name="Big laser", required_training=training)


@pytest.fixture
def manager(lab):
    user = UserFactory(username="manon")
    lab.managers.add(user)
    return user


def manager_urls(lab, machine, booking=None, cert=None, window=None):
    gets = [
        reverse("booking:manage"),
        reverse("booking:approvals"),
        reverse("booking:certifications"),
        reverse("booking:maintenance", args=[machine.pk]),
        reverse("booking:day", args=[lab.slug]),
    ]
    posts = []
    if booking:
        posts += [
            reverse("booking:approve", args=[booking.pk]),
            reverse("booking:decline", args=[booking.pk]),
        ]
    if cert:
        posts.append(reverse("booking:revoke_certification", args=[cert.pk]))
    if window:
        posts.append(reverse("booking:delete_maintenance", args=[window.pk]))
    return gets, posts


def test_makers_get_403_on_every_manager_page_and_change_nothing(client, lab, machine):
    booking = BookingFactory(machine=machine, start=at(10), end=at(11), status=Booking.Status.PENDING)
    cert = CertificationFactory()
    window = MaintenanceWindowFactory(machine=machine, start=at(12), end=at(13))
    client.force_login(UserFactory())
    gets, posts = manager_urls(lab, machine, booking, cert, window)
    for url in gets:
        assert client.get(url).status_code == 403, url
    for url in posts:
        assert client.post(url).status_code == 403, url
    assert client.post(reverse("booking:certifications"), {"member": "x"}).status_code == 403
    booking.refresh_from_db()
    cert.refresh_from_db()
    assert booking.status == Booking.Status.PENDING
    assert cert.revoked_at is None
    assert MaintenanceWindow.objects.filter(pk=window.pk).exists()


def test_anonymous_visitors_are_sent_to_log_in(client, lab, machine):
    gets, _posts = manager_urls(lab, machine)
    for url in gets:
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("members:login"))


def test_a_manager_sees_every_page_of_their_lab(client, lab, machine, manager):
    client.force_login(manager)
    gets, _posts = manager_urls(lab, machine)
    for url in gets:
        assert client.get(url).status_code == 200, url
    assert "Manage" in client.get(reverse("labs:list")).content.decode()


def test_a_manager_of_another_lab_is_refused(client, machine, lab):
    elsewhere = UserFactory()
    LabFactory().managers.add(elsewhere)
    booking = BookingFactory(machine=machine, start=at(10), end=at(11), status=Booking.Status.PENDING)
    client.force_login(elsewhere)
    assert client.get(reverse("booking:maintenance", args=[machine.pk])).status_code == 403
    assert client.get(reverse("booking:day", args=[lab.slug])).status_code == 403
    assert client.post(reverse("booking:approve", args=[booking.pk])).status_code == 403
    html = client.get(reverse("booking:approvals")).content.decode()
    assert booking.member.username not in html
    booking.refresh_from_db()
    assert booking.status == Booking.Status.PENDING


def test_approving_and_declining_go_through_the_services(client, machine, manager):
    member = UserFactory(username="paula", first_name="Paula", last_name="Peeters")
    CertificationFactory(member=member, training=machine.required_training)
    first = BookingFactory(
        machine=machine, member=member, start=at(10), end=at(11), status=Booking.Status.PENDING
    )
    second = BookingFactory(
        machine=machine, member=member, start=at(14), end=at(15), status=Booking.Status.PENDING
    )
    client.force_login(manager)
    html = client.get(reverse("booking:approvals")).content.decode()
    assert "Paula Peeters" in html
    assert html.count('class="card booking"') == 2

    client.post(reverse("booking:approve", args=[first.pk]))
    client.post(reverse("booking:decline", args=[second.pk]))

    first.refresh_from_db()
    second.refresh_from_db()
    assert first.status == Booking.Status.CONFIRMED and first.decided_by == manager
    assert second.status == Booking.Status.CANCELLED
    assert second.cancel_reason == Booking.CancelReason.DECLINED
    response = client.post(reverse("booking:approve", args=[second.pk]), follow=True)
    assert "Only bookings awaiting approval can be approved or declined." in response.content.decode()
    assert client.get(reverse("booking:approve", args=[first.pk])).status_code == 405


def test_granting_by_username_or_email_with_an_optional_expiry(client, manager, machine, training):
    ines = UserFactory(username="ines", email="ines@example.org")
    joe = UserFactory(username="joe", email="Joe@Example.org")
    client.force_login(manager)
    until = day_after_tomorrow() + dt.timedelta(days=30)

    response = client.post(
        reverse("booking:certifications"),
        {"member": "ines", "training": training.pk, "expires_on": until.isoformat()},
    )
    client.post(reverse("booking:certifications"), {"member": "joe@example.org", "training": training.pk})

    assert response.status_code == 302
    cert = Certification.objects.get(member=ines)
    assert cert.training == training and cert.granted_by == manager
    assert cert.expires_at == dt.datetime.combine(until + dt.timedelta(days=1), dt.time(0), tzinfo=BRUSSELS)
    joes = Certification.objects.get(member=joe)
    # Without a date, the training's own validity applies.
    assert timezone.now() + dt.timedelta(days=364) < joes.expires_at < timezone.now() + dt.timedelta(days=366)
    html = client.get(reverse("booking:certifications")).content.decode()
    assert "ines" in html and "joe" in html


@pytest.mark.parametrize(
    "data",
    [
        {"member": "nobody"},
        {"member": ""},
        {"member": "ines", "expires_on": "2001-01-01"},
        {"member": "ines", "expires_on": "not a date"},
        {"member": "ines", "training": "999999"},
        # The day after it would overflow the calendar (once a 500).
        {"member": "ines", "expires_on": "9999-12-31"},
    ],
)
def test_granting_with_bad_input_shows_errors_and_saves_nothing(client, manager, machine, training, data):
    UserFactory(username="ines")
    client.force_login(manager)
    response = client.post(reverse("booking:certifications"), {"training": training.pk, **data})
    assert response.status_code == 200
    assert 'class="error"' in response.content.decode()
    assert not Certification.objects.exists()


def test_revoking_records_when_and_by_whom(client, manager, machine, training):
    cert = CertificationFactory(training=training)
    client.force_login(manager)
    client.post(reverse("booking:revoke_certification", args=[cert.pk]))
    cert.refresh_from_db()
    assert cert.revoked_at is not None and cert.revoked_by == manager
    first_revocation = cert.revoked_at
    client.post(reverse("booking:revoke_certification", args=[cert.pk]))
    cert.refresh_from_db()
    assert cert.revoked_at == first_revocation
    html = client.get(reverse("booking:certifications")).content.decode()
    listed, audit = html.split("Grants and revocations")
    assert f"({cert.member.username})" not in listed
    assert f"({cert.member.username})" in audit  # the revocation stays on record


def test_a_maintenance_window_is_read_in_lab_time_and_cancels_overlapping_bookings_once_confirmed(
    client, machine, manager
):
    member = UserFactory(username="omar", first_name="Omar", last_name="Overlap")
    booking = BookingFactory(machine=machine, member=member, start=at(10), end=at(11))
    day = day_after_tomorrow()
    client.force_login(manager)
    data = {"start": f"{day.isoformat()}T09:30", "end": f"{day.isoformat()}T12:00", "reason": "New lens"}

    asked = client.post(reverse("booking:maintenance", args=[machine.pk]), data)
    assert "Omar Overlap" in asked.content.decode()
    assert not MaintenanceWindow.objects.exists()  # nothing happens before the manager confirms

    client.post(reverse("booking:maintenance", args=[machine.pk]), {**data, "confirm": "1"})
    window = MaintenanceWindow.objects.get(machine=machine)
    assert window.start == at(9, 30) and window.end == at(12)
    assert window.created_by == manager
    booking.refresh_from_db()
    assert booking.cancel_reason == Booking.CancelReason.OUT_OF_SERVICE


def test_a_maintenance_window_must_end_after_it_starts(client, machine, manager):
    day = day_after_tomorrow().isoformat()
    client.force_login(manager)
    response = client.post(
        reverse("booking:maintenance", args=[machine.pk]), {"start": f"{day}T12:00", "end": f"{day}T09:00"}
    )
    assert response.status_code == 200
    assert "The end must be after the start." in response.content.decode()
    assert not MaintenanceWindow.objects.exists()


def test_deleting_a_maintenance_window(client, machine, manager):
    window = MaintenanceWindowFactory(machine=machine, start=at(12), end=at(13))
    client.force_login(manager)
    response = client.post(reverse("booking:delete_maintenance", args=[window.pk]))
    assert response.status_code == 302
    assert not MaintenanceWindow.objects.exists()


def test_the_days_bookings_show_names_to_managers(client, lab, machine, manager):
    day = day_after_tomorrow()
    BookingFactory(
        machine=machine, member=UserFactory(first_name="Nadia", last_name="Named"), start=at(10), end=at(11)
    )
    BookingFactory(
        machine=machine,
        start=at(10, day=day + dt.timedelta(days=1)),
        end=at(11, day=day + dt.timedelta(days=1)),
    )
    BookingFactory(machine=MachineFactory(), start=at(12), end=at(13))  # another lab
    client.force_login(manager)

    html = client.get(reverse("booking:day", args=[lab.slug]), {"date": day.isoformat()}).content.decode()

    assert "Nadia Named" in html
    assert html.count('<tr class="status-') == 1
    assert f"?date={(day + dt.timedelta(days=1)).isoformat()}" in html
    for bad in ("garbage", "0001-01-01", "9999-12-31"):
        assert client.get(reverse("booking:day", args=[lab.slug]), {"date": bad}).status_code == 200


def test_a_manager_can_cancel_a_members_booking_from_the_day_view(client, machine, manager):
    booking = BookingFactory(machine=machine, start=at(10), end=at(11))
    client.force_login(manager)
    client.post(reverse("booking:cancel", args=[booking.pk]))
    booking.refresh_from_db()
    assert booking.status == Booking.Status.CANCELLED
    assert booking.cancel_reason == Booking.CancelReason.MANAGER


@pytest.mark.parametrize(
    "start",
    ["2027-03-28T02:30", "2027-10-31T02:30", "garbage", "99999-01-01T10:00", "", "0001-01-01T00:00"],
)
def test_a_nonexistent_ambiguous_or_bad_time_is_a_form_error(client, machine, manager, start):
    # 28 March 2027 02:30 does not exist in Brussels; 31 October 2027 02:30 happens twice.
    client.force_login(manager)
    end = "0001-01-01T01:00" if start.startswith("0001") else "2027-12-01T10:00"
    response = client.post(reverse("booking:maintenance", args=[machine.pk]), {"start": start, "end": end})
    assert response.status_code == 200
    assert 'class="error"' in response.content.decode()
    assert not MaintenanceWindow.objects.exists()
