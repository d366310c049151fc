"""The booking page and its check-in: the window, who may, the certification checked again, usage.

The clock is moved with ``time_machine``; every booking starts at 10:00 (Brussels) on a fixed day,
on a machine with the default 15-minute check-in window and 15-minute no-show grace.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.contrib.messages import get_messages
from django.urls import reverse

from fablab.booking.models import Booking
from tests.factories import (
    BookingFactory,
    CertificationFactory,
    LabFactory,
    MachineFactory,
    TrainingFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

BRUSSELS = ZoneInfo("Europe/Brussels")
DAY = dt.date(2031, 3, 12)


def at(hour: int, minute: int = 0, second: int = 0) -> dt.datetime:
    return dt.datetime.combine(DAY, dt.time(hour, minute, second), tzinfo=BRUSSELS)


START, END = at(10), at(11)


@pytest.fixture(autouse=True)
def _morning():
    """The whole test happens on DAY (logins included: a session from today would have expired)."""
    with time_machine.travel(at(7), tick=False):
        yield


@pytest.fixture
def maker():
    return UserFactory(username="maker")


@pytest.fixture
def training():
    return TrainingFactory(name="Laser safety")


@pytest.fixture
def machine(training):
    return MachineFactory(lab=LabFactory(name="Test Lab"), name="Laser Alpha", required_training=training)


@pytest.fixture
def booking(machine, maker, training):
    CertificationFactory(member=maker, training=training)
    return BookingFactory(machine=machine, member=maker, start=START, end=END, purpose="A sign")


@pytest.fixture
def manager(machine):
    user = UserFactory(username="boss", first_name="Bo", last_name="Ss")
    machine.lab.managers.add(user)
    return user


def page(client, booking) -> str:
    response = client.get(reverse("booking:detail", args=[booking.pk]))
    assert response.status_code == 200
    return response.content.decode()


def check_in(client, booking, **data):
    return client.post(reverse("booking:check_in", args=[booking.pk]), data)


def message_texts(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


CHECK_IN_FORM = 'action="/bookings/{pk}/check-in/"'


# The window


@pytest.mark.parametrize(
    ("moment", "open_"),
    [
        (at(9, 44, 59), False),  # one second before the window
        (at(9, 45), True),  # the window opens 15 minutes before the start
        (at(10, 14, 59), True),  # the last second before the no-show deadline
        (at(10, 15), False),  # the deadline itself is closed
    ],
)
def test_the_button_shows_only_inside_the_window(client, maker, booking, moment, open_):
    client.force_login(maker)
    with time_machine.travel(moment, tick=False):
        html = page(client, booking)
    assert (CHECK_IN_FORM.format(pk=booking.pk) in html) is open_
    if moment < at(9, 45):
        assert "Check-in opens at 09:45." in html
    elif not open_:
        assert "Check-in closed at 10:15." in html


def test_too_early_is_refused_with_the_rule(client, maker, booking):
    client.force_login(maker)
    with time_machine.travel(at(9, 44), tick=False):
        response = check_in(client, booking)
    assert response.status_code == 302
    assert response["Location"] == reverse("booking:detail", args=[booking.pk])
    assert message_texts(response) == ["Check-in for this booking has not opened yet."]
    booking.refresh_from_db()
    assert booking.status == Booking.Status.CONFIRMED and booking.checked_in_at is None


def test_check_in_when_open(client, maker, booking):
    client.force_login(maker)
    with time_machine.travel(at(9, 50), tick=False):
        response = check_in(client, booking)
        assert message_texts(response) == ["Checked in. Enjoy the machine!"]
        html = page(client, booking)
    booking.refresh_from_db()
    assert booking.status == Booking.Status.CHECKED_IN
    assert booking.checked_in_at == at(9, 50)
    assert booking.checked_in_by == maker
    assert booking.check_in_via == Booking.CheckInVia.PAGE
    assert "Checked in at 09:50 (Booking page)." in html
    assert CHECK_IN_FORM.format(pk=booking.pk) not in html


def test_closed_at_the_no_show_deadline(client, maker, booking):
    client.force_login(maker)
    with time_machine.travel(at(10, 15), tick=False):
        response = check_in(client, booking)
    assert message_texts(response) == ["This booking can no longer be checked in."]
    booking.refresh_from_db()
    assert booking.status == Booking.Status.CONFIRMED


def test_machine_unavailable_at_the_start_keeps_check_in_open_until_the_end(client, maker, booking):
    Booking.objects.filter(pk=booking.pk).update(unavailable=Booking.Unavailable.OFFLINE)
    client.force_login(maker)
    with time_machine.travel(at(10, 50), tick=False):
        html = page(client, booking)
        assert "Machine offline at the start: this is not a no-show" in html
        assert CHECK_IN_FORM.format(pk=booking.pk) in html
        assert "Check in by 11:00." in html
    with time_machine.travel(at(11), tick=False):
        html = page(client, booking)
        assert CHECK_IN_FORM.format(pk=booking.pk) not in html
        response = check_in(client, booking)
        assert message_texts(response) == ["This booking can no longer be checked in."]
    with time_machine.travel(at(10, 59), tick=False):
        check_in(client, booking)
    booking.refresh_from_db()
    assert booking.status == Booking.Status.CHECKED_IN and booking.checked_in_at == at(10, 59)


# Who may


def test_another_maker_gets_404_for_the_page_and_the_check_in(client, booking):
    client.force_login(UserFactory(username="other"))
    with time_machine.travel(at(9, 50), tick=False):
        assert client.get(reverse("booking:detail", args=[booking.pk])).status_code == 404
        assert check_in(client, booking).status_code == 404
    booking.refresh_from_db()
    assert booking.status == Booking.Status.CONFIRMED


def test_anonymous_is_sent_to_log_in(client, booking):
    response = client.get(reverse("booking:detail", args=[booking.pk]))
    assert response.status_code == 302 and response["Location"].startswith(reverse("members:login"))
    response = check_in(client, booking)
    assert response.status_code == 302 and response["Location"].startswith(reverse("members:login"))


def test_check_in_is_a_post(client, maker, booking):
    client.force_login(maker)
    assert client.get(reverse("booking:check_in", args=[booking.pk])).status_code == 405


def test_a_manager_of_another_lab_gets_404(client, booking):
    elsewhere = MachineFactory()
    stranger = UserFactory(username="elsewhere")
    elsewhere.lab.managers.add(stranger)
    client.force_login(stranger)
    assert client.get(reverse("booking:detail", args=[booking.pk])).status_code == 404


def test_a_manager_checks_the_member_in(client, manager, booking, maker):
    client.force_login(manager)
    with time_machine.travel(at(9, 55), tick=False):
        html = page(client, booking)
        assert "maker" in html and "Check the member in" in html
        check_in(client, booking)
    booking.refresh_from_db()
    assert booking.status == Booking.Status.CHECKED_IN
    assert booking.checked_in_by == manager
    assert booking.check_in_via == Booking.CheckInVia.MANAGER


def test_the_managers_day_view_checks_in_and_comes_back(client, manager, booking):
    client.force_login(manager)
    day_url = reverse("booking:day", kwargs={"lab": booking.machine.lab.slug}) + f"?date={DAY.isoformat()}"
    with time_machine.travel(at(9, 30), tick=False):
        assert CHECK_IN_FORM.format(pk=booking.pk) not in client.get(day_url).content.decode()
    with time_machine.travel(at(10, 5), tick=False):
        html = client.get(day_url).content.decode()
        assert CHECK_IN_FORM.format(pk=booking.pk) in html
        response = check_in(client, booking, next=day_url)
    assert response["Location"] == day_url
    booking.refresh_from_db()
    assert booking.check_in_via == Booking.CheckInVia.MANAGER


def test_next_may_not_leave_the_site(client, maker, booking):
    client.force_login(maker)
    with time_machine.travel(at(9, 50), tick=False):
        response = check_in(client, booking, next="https://evil.example/")
    assert response["Location"] == reverse("booking:detail", args=[booking.pk])


# The certification, checked again


def test_a_certification_revoked_since_booking_blocks_the_check_in(client, maker, booking):
    booking.member.certifications.update(revoked_at=at(8))
    client.force_login(maker)
    with time_machine.travel(at(9, 50), tick=False):
        response = check_in(client, booking)
    assert message_texts(response) == [
        "Your training for this machine is no longer valid, so this booking cannot be checked in."
    ]
    booking.refresh_from_db()
    assert booking.status == Booking.Status.CONFIRMED


def test_a_certification_that_expires_before_the_end_blocks_the_check_in(client, maker, booking):
    booking.member.certifications.update(expires_at=at(10, 30))
    client.force_login(maker)
    with time_machine.travel(at(9, 50), tick=False):
        response = check_in(client, booking)
    assert message_texts(response) == [
        "Your certification for this machine expires before the end of this booking."
    ]
    booking.refresh_from_db()
    assert booking.status == Booking.Status.CONFIRMED


def test_the_manager_is_told_about_the_members_certification(client, manager, booking):
    booking.member.certifications.update(revoked_at=at(8))
    client.force_login(manager)
    with time_machine.travel(at(9, 50), tick=False):
        response = check_in(client, booking)
    assert message_texts(response) == ["The member no longer has the training this machine needs."]


# Repeats and other states


def test_a_double_check_in_changes_nothing(client, maker, booking):
    client.force_login(maker)
    with time_machine.travel(at(9, 50), tick=False):
        check_in(client, booking)
    with time_machine.travel(at(9, 52), tick=False):
        response = check_in(client, booking)
    # The first answer's message was never shown (no page in between): both are there.
    assert message_texts(response) == ["Checked in. Enjoy the machine!"] * 2
    booking.refresh_from_db()
    assert booking.checked_in_at == at(9, 50)


def test_a_pending_booking_has_no_button_and_cannot_be_checked_in(client, maker, booking):
    Booking.objects.filter(pk=booking.pk).update(status=Booking.Status.PENDING)
    client.force_login(maker)
    with time_machine.travel(at(9, 50), tick=False):
        html = page(client, booking)
        assert CHECK_IN_FORM.format(pk=booking.pk) not in html
        assert "Check-in opens once a lab manager approves this booking." in html
        response = check_in(client, booking)
    assert message_texts(response) == ["This booking still awaits a lab manager's approval."]
    booking.refresh_from_db()
    assert booking.status == Booking.Status.PENDING


def test_a_no_show_says_when_the_machine_was_released(client, maker, booking):
    Booking.objects.filter(pk=booking.pk).update(status=Booking.Status.NO_SHOW, released_at=at(10, 15))
    client.force_login(maker)
    with time_machine.travel(at(10, 20), tick=False):
        html = page(client, booking)
    assert "No-show: nobody checked in, so the machine was released at 10:15." in html
    assert CHECK_IN_FORM.format(pk=booking.pk) not in html
    assert 'id="booking-live"' not in html


def test_a_training_without_a_member_shows_to_managers_without_a_check_in(client, manager, machine):
    training = BookingFactory(
        machine=machine, member=None, kind=Booking.Kind.TRAINING, title="Intro", start=START, end=END
    )
    client.force_login(manager)
    with time_machine.travel(at(9, 50), tick=False):
        html = page(client, training)
        assert "Training session: no check-in needed." in html
        assert CHECK_IN_FORM.format(pk=training.pk) not in html
        day = client.get(reverse("booking:day", kwargs={"lab": machine.lab.slug}) + f"?date={DAY}")
        assert day.status_code == 200 and "Intro" in day.content.decode()
        cancel = client.get(reverse("booking:cancel", args=[training.pk]))
        assert cancel.status_code == 200 and "Intro" in cancel.content.decode()
        response = check_in(client, training)
    assert message_texts(response) == ["Only a member's booking is checked in."]


# What the page shows


def test_the_page_shows_the_booking_in_lab_time_with_a_cancel_link(client, maker, booking):
    client.force_login(maker)
    with time_machine.travel(at(8), tick=False):
        html = page(client, booking)
    assert "Laser Alpha" in html and "Test Lab" in html and "A sign" in html
    assert 'datetime="2031-03-12T10:00:00+01:00"' in html
    assert reverse("booking:cancel", args=[booking.pk]) in html
    assert '<span class="badge status">Confirmed</span>' in html and 'id="status-sentence"' not in html
    assert 'id="booking-live"' in html and "booking-live-config" in html
    assert "/ws/labs/" + booking.machine.lab.slug + "/" in html
    with time_machine.travel(at(10, 5), tick=False):
        assert reverse("booking:cancel", args=[booking.pk]) not in page(client, booking)


def test_usage_shows_once_there_is_some(client, maker, booking):
    client.force_login(maker)
    with time_machine.travel(at(12), tick=False):
        assert "Time used" not in page(client, booking)
        Booking.objects.filter(pk=booking.pk).update(
            status=Booking.Status.COMPLETED,
            completed_at=at(11),
            used_minutes=62.4,
            overrun_minutes=4.6,
            energy_wh=1534.0,
            job_outcome="finished",
        )
        html = page(client, booking)
    assert "Completed at 11:00." in html
    assert "62 minutes" in html and "5 minutes" in html
    assert "1.53 kWh" in html and "Finished" in html


def test_small_energy_is_in_watt_hours(client, maker, booking):
    Booking.objects.filter(pk=booking.pk).update(used_minutes=1, energy_wh=12.4)
    client.force_login(maker)
    with time_machine.travel(at(10, 30), tick=False):
        html = page(client, booking)
    assert "1 minute" in html and "12 Wh" in html


def test_my_bookings_links_each_booking_page(client, maker, booking):
    client.force_login(maker)
    with time_machine.travel(at(8), tick=False):
        html = client.get(reverse("booking:mine")).content.decode()
    assert f'href="{reverse("booking:detail", args=[booking.pk])}"' in html
