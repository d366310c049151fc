"""Finishing a checked-in booking early, "I'm done" (lifecycle, API, booking page, kiosk).

Every booking runs 10:00–12:00 (Brussels) on a fixed day, on a machine with 30-minute slots; the
member checked in at 09:55. Times are passed as ``now=`` or set with ``time_machine``.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.contrib.auth.hashers import make_password
from django.core.cache import cache
from django.urls import reverse
from rest_framework.test import APIClient

from fablab.booking import kiosk as service
from fablab.booking import lifecycle, services
from fablab.booking.errors import BookingError
from fablab.booking.kiosk_views import COOKIE
from fablab.booking.models import Booking, FreedTime
from fablab.booking.signals import booking_changed
from fablab.labs.models import EndAction
from fablab.members.models import MemberProfile
from tests.factories import BookingFactory, LabFactory, MachineFactory, UserFactory, api_token

pytestmark = pytest.mark.django_db

BRUSSELS = ZoneInfo("Europe/Brussels")
DAY = dt.date(2031, 3, 12)
PIN = "4821"


def at(hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(DAY, dt.time(hour, minute), tzinfo=BRUSSELS)


@pytest.fixture(autouse=True)
def _clear_throttles():
    cache.clear()


@pytest.fixture
def lab():
    return LabFactory(slug="centre", name="Centre")


@pytest.fixture
def machine(lab):
    return MachineFactory(lab=lab, name="Printer", slot_minutes=30, min_duration_minutes=30)


@pytest.fixture
def maker():
    user = UserFactory(username="maker", first_name="Mia", last_name="Maker")
    MemberProfile.objects.filter(user=user).update(kiosk_pin=make_password(PIN))
    return user


@pytest.fixture
def manager(lab):
    user = UserFactory(username="manon")
    lab.managers.add(user)
    return user


@pytest.fixture
def booking(machine, maker):
    return BookingFactory(
        machine=machine,
        member=maker,
        start=at(10),
        end=at(12),
        status=Booking.Status.CHECKED_IN,
        checked_in_at=at(9, 55),
        check_in_via=Booking.CheckInVia.PAGE,
    )


def api(user) -> APIClient:
    client = APIClient()
    token = api_token(user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


# --- the lifecycle ---------------------------------------------------------------------------------


def test_finishing_completes_and_releases_the_rest_from_the_next_boundary(booking, maker):
    done = lifecycle.finish(booking=booking, by=maker, via="page", fault="", now=at(10, 20))

    assert done.status == Booking.Status.COMPLETED
    assert done.completed_at == at(10, 20)
    assert (done.start, done.end) == (at(10), at(12))  # as booked
    assert done.released_at == at(10, 30) and done.blocked_until == at(10, 30)
    freed = FreedTime.objects.get()
    assert (freed.machine_id, freed.start, freed.end) == (booking.machine_id, at(10, 30), at(12))
    assert freed.reason == FreedTime.Reason.FINISHED_EARLY and freed.booking_id == booking.pk


def test_the_released_time_can_be_booked_by_someone_else(booking, maker, machine):
    lifecycle.finish(booking=booking, by=maker, via="page", now=at(10, 20))
    other = UserFactory(username="other")

    with pytest.raises(BookingError) as exc:
        services.booking_create(machine=machine, member=other, start=at(10), end=at(10, 30), now=at(10, 21))
    assert exc.value.code == "in_past"
    made = services.booking_create(
        machine=machine, member=other, start=at(10, 30), end=at(11), now=at(10, 21)
    )
    assert made.status == Booking.Status.CONFIRMED


def test_finishing_in_the_last_slot_releases_nothing(booking, maker):
    done = lifecycle.finish(booking=booking, by=maker, via="page", now=at(11, 40))

    assert done.status == Booking.Status.COMPLETED
    assert done.released_at is None and done.blocked_until == at(12)
    assert not FreedTime.objects.exists()


def test_too_little_left_is_released_but_not_offered(booking, maker, machine):
    machine.min_duration_minutes = 60
    machine.save()

    done = lifecycle.finish(booking=booking, by=maker, via="page", now=at(11, 10))

    assert done.blocked_until == at(11, 30) and done.released_at == at(11, 30)
    assert not FreedTime.objects.exists()  # 30 minutes cannot be booked on this machine


def test_finishing_before_the_start_releases_from_the_start(machine, maker):
    early = BookingFactory(
        machine=machine,
        member=maker,
        start=at(10),
        end=at(11),
        status=Booking.Status.CHECKED_IN,
        checked_in_at=at(9, 10),
    )
    done = lifecycle.finish(booking=early, by=maker, via="kiosk", now=at(9, 12))

    # The boundary after 09:12 is 09:30, before the start: the booking never holds less than nothing.
    assert done.released_at == at(10) and done.blocked_until == at(10)
    assert FreedTime.objects.get().start == at(10)


def test_a_second_finish_changes_nothing_and_returns_the_booking(booking, maker):
    first = lifecycle.finish(booking=booking, by=maker, via="page", now=at(10, 20))
    again = lifecycle.finish(booking=booking, by=maker, via="api", now=at(10, 25))

    assert again.pk == first.pk and again.completed_at == at(10, 20)
    assert again.blocked_until == at(10, 30)
    assert FreedTime.objects.count() == 1


def test_a_fault_line_given_on_a_second_finish_is_kept(booking, maker):
    lifecycle.finish(booking=booking, by=maker, via="page", now=at(10, 20))
    again = lifecycle.finish(booking=booking, by=maker, via="page", fault="Bed\nnot level", now=at(10, 21))
    assert again.fault_report == "Bed not level"
    third = lifecycle.finish(booking=booking, by=maker, via="page", fault="other", now=at(10, 22))
    assert third.fault_report == "Bed not level"  # the first line stays


@pytest.mark.parametrize(
    "status",
    [Booking.Status.CONFIRMED, Booking.Status.PENDING, Booking.Status.NO_SHOW, Booking.Status.CANCELLED],
)
def test_only_a_checked_in_booking_is_finished(machine, maker, status):
    booking = BookingFactory(machine=machine, member=maker, start=at(10), end=at(12), status=status)
    with pytest.raises(BookingError) as exc:
        lifecycle.finish(booking=booking, by=maker, via="page", now=at(10, 20))
    assert exc.value.code == "not_checked_in" and exc.value.status == 409
    assert Booking.objects.get(pk=booking.pk).status == status


def test_another_member_may_not_finish_it(booking):
    with pytest.raises(BookingError) as exc:
        lifecycle.finish(booking=booking, by=UserFactory(username="stranger"), via="page", now=at(10, 20))
    assert exc.value.code == "forbidden"
    assert Booking.objects.get(pk=booking.pk).status == Booking.Status.CHECKED_IN


def test_a_manager_of_the_lab_may_finish_it(booking, manager):
    done = lifecycle.finish(booking=booking, by=manager, via="manager", now=at(10, 20))
    assert done.status == Booking.Status.COMPLETED


def test_a_manager_of_another_lab_may_not(booking):
    elsewhere = UserFactory(username="elsewhere")
    LabFactory().managers.add(elsewhere)
    with pytest.raises(BookingError) as exc:
        lifecycle.finish(booking=booking, by=elsewhere, via="manager", now=at(10, 20))
    assert exc.value.code == "forbidden"


def test_bad_arguments_are_the_callers_bug(booking, maker):
    with pytest.raises(ValueError):
        lifecycle.finish(booking=booking, by=maker, via="machine", now=at(10, 20))
    with pytest.raises(ValueError):
        lifecycle.finish(booking=booking, by=maker, via="page", fault="x" * 301, now=at(10, 20))
    assert Booking.objects.get(pk=booking.pk).status == Booking.Status.CHECKED_IN


def test_the_change_is_sent_after_the_commit_once(booking, maker, django_capture_on_commit_callbacks):
    sent = []

    def receiver(sender, **kwargs):
        sent.append((kwargs["booking_id"], kwargs["change"]))

    booking_changed.connect(receiver, dispatch_uid="test_finish")
    try:
        with django_capture_on_commit_callbacks(execute=True):
            lifecycle.finish(booking=booking, by=maker, via="page", now=at(10, 20))
        with django_capture_on_commit_callbacks(execute=True):
            lifecycle.finish(booking=booking, by=maker, via="page", now=at(10, 21))
    finally:
        booking_changed.disconnect(dispatch_uid="test_finish")
    assert sent == [(booking.pk, "completed")]


# --- the API ---------------------------------------------------------------------------------------


def post_finish(user, booking, body=None, *, moment=None):
    with time_machine.travel(moment or at(10, 20), tick=False):
        return api(user).post(f"/api/v1/bookings/{booking.pk}/finish/", body or {}, format="json")


def test_the_api_finishes_with_a_fault_line(booking, maker):
    response = post_finish(maker, booking, {"fault": "  Nozzle\nclogged  "})

    assert response.status_code == 200, response.json()
    data = response.json()
    assert data["status"] == "completed"
    assert data["released_at"] == "2031-03-12T10:30:00+01:00"
    assert Booking.objects.get(pk=booking.pk).fault_report == "Nozzle clogged"


def test_the_api_finishes_without_a_body(booking, maker):
    with time_machine.travel(at(10, 20), tick=False):
        response = api(maker).post(f"/api/v1/bookings/{booking.pk}/finish/")
    assert response.status_code == 200 and response.json()["status"] == "completed"


def test_the_api_refuses_a_fault_line_too_long_and_changes_nothing(booking, maker):
    response = post_finish(maker, booking, {"fault": "x" * 301})

    data = response.json()
    assert response.status_code == 400 and data["code"] == "invalid" and "fault" in data["fields"]
    assert Booking.objects.get(pk=booking.pk).status == Booking.Status.CHECKED_IN


def test_the_api_answers_not_checked_in(machine, maker):
    booking = BookingFactory(machine=machine, member=maker, start=at(10), end=at(12))
    response = post_finish(maker, booking)
    assert response.status_code == 409 and response.json()["code"] == "not_checked_in"


def test_the_api_hides_another_members_booking(booking):
    response = post_finish(UserFactory(username="stranger"), booking)
    assert response.status_code == 404
    assert Booking.objects.get(pk=booking.pk).status == Booking.Status.CHECKED_IN


def test_a_manager_finishes_through_the_api(booking, manager):
    response = post_finish(manager, booking)
    assert response.status_code == 200 and response.json()["status"] == "completed"


# --- the booking page ------------------------------------------------------------------------------


def test_the_booking_page_offers_im_done_while_checked_in(client, booking, maker):
    with time_machine.travel(at(10, 20), tick=False):
        client.force_login(maker)
        html = client.get(reverse("booking:detail", args=[booking.pk])).content.decode()
        assert "m done" in html and 'name="fault"' in html and 'maxlength="300"' in html

        response = client.post(reverse("booking:finish", args=[booking.pk]), {"fault": "Fan noisy"})
        assert response.status_code == 302
        assert response["Location"] == reverse("booking:detail", args=[booking.pk])
        html = client.get(response["Location"]).content.decode()
    assert "m done" not in html
    assert "the lab&#x27;s managers have been told" in html
    done = Booking.objects.get(pk=booking.pk)
    assert (done.status, done.fault_report) == (Booking.Status.COMPLETED, "Fan noisy")


@pytest.mark.parametrize(
    ("end_action", "says"),
    [
        (EndAction.FINISH, "The machine is locked, or locks as soon as the running job ends;"),
        (EndAction.STOP, "The machine is locked and the rest of the booking"),
    ],
)
def test_the_page_says_what_im_done_does_to_a_running_job(client, booking, maker, end_action, says):
    """A printer lets its print end (the interlock's ``finishing``): "locked" alone would not be true."""
    booking.machine.end_action = end_action
    booking.machine.save(update_fields=["end_action"])
    with time_machine.travel(at(10, 20), tick=False):
        client.force_login(maker)
        html = client.get(reverse("booking:detail", args=[booking.pk])).content.decode()
    assert says in html


def test_a_fault_line_too_long_shows_the_page_again_with_the_line(client, booking, maker):
    line = "The bed " + "wobbles " * 40
    with time_machine.travel(at(10, 20), tick=False):
        client.force_login(maker)
        response = client.post(reverse("booking:finish", args=[booking.pk]), {"fault": line})
    html = response.content.decode()
    assert response.status_code == 400
    assert "at most 300 characters" in html and "wobbles wobbles" in html
    assert Booking.objects.get(pk=booking.pk).status == Booking.Status.CHECKED_IN


def test_the_page_refuses_a_booking_not_checked_in(client, machine, maker):
    booking = BookingFactory(machine=machine, member=maker, start=at(10), end=at(12))
    with time_machine.travel(at(10, 5), tick=False):
        client.force_login(maker)
        response = client.post(reverse("booking:finish", args=[booking.pk]), follow=True)
    assert "Only a booking that is checked in can be finished." in response.content.decode()


def test_a_stranger_gets_404_from_the_page(client, booking):
    with time_machine.travel(at(10, 20), tick=False):
        client.force_login(UserFactory(username="stranger"))
        response = client.post(reverse("booking:finish", args=[booking.pk]))
    assert response.status_code == 404


# --- the kiosk -------------------------------------------------------------------------------------


def enrolled(client, lab):
    boss = UserFactory(username="kiosk-boss")
    lab.managers.add(boss)
    client.force_login(boss)
    client.post(reverse("kiosk:enrol", args=[lab.slug]), {"name": "Entrance"})
    cookie = client.cookies[COOKIE].value
    client.logout()
    client.cookies[COOKIE] = cookie
    return client


def number_of(user) -> str:
    return MemberProfile.objects.get(user=user).member_number


def test_the_kiosk_finishes_a_checked_in_booking(client, lab, booking, maker):
    screen = reverse("kiosk:screen", args=[lab.slug])
    with time_machine.travel(at(10, 20), tick=False):
        kiosk = enrolled(client, lab)
        response = kiosk.post(screen, {"number": number_of(maker), "pin": PIN})
        html = response.content.decode()
        assert "You are already checked in" in html and "m done" in html
        ticket = response.context["finishing"][0][1].initial["ticket"]

        response = kiosk.post(
            reverse("kiosk:finish", args=[lab.slug]),
            {"ticket": ticket, "booking": booking.pk, "fault": "Spool empty"},
        )
    assert response.status_code == 200
    assert "is finished" in response.content.decode()
    done = Booking.objects.get(pk=booking.pk)
    assert (done.status, done.fault_report, done.released_at) == (
        Booking.Status.COMPLETED,
        "Spool empty",
        at(10, 30),
    )


def test_the_kiosk_finishes_only_the_tickets_members_booking(client, lab, booking, machine, maker):
    other = UserFactory(username="other")
    MemberProfile.objects.filter(user=other).update(kiosk_pin=make_password(PIN))
    kiosk = enrolled(client, lab)
    with time_machine.travel(at(10, 20), tick=False):
        # The other member has nothing here; their ticket cannot finish maker's booking.
        ticket = service.pick_ticket(service.Kiosk.objects.get(lab=lab), other)
        response = kiosk.post(
            reverse("kiosk:finish", args=[lab.slug]), {"ticket": ticket, "booking": booking.pk}
        )
        assert "cannot be finished now" in response.content.decode()
        response = kiosk.post(
            reverse("kiosk:finish", args=[lab.slug]), {"ticket": "forged", "booking": booking.pk}
        )
        assert 'name="pin"' in response.content.decode()
    assert Booking.objects.get(pk=booking.pk).status == Booking.Status.CHECKED_IN


def test_the_kiosk_keeps_a_fault_line_too_long(client, lab, booking, maker):
    kiosk = enrolled(client, lab)
    with time_machine.travel(at(10, 20), tick=False):
        ticket = service.pick_ticket(service.Kiosk.objects.get(lab=lab), maker)
        response = kiosk.post(
            reverse("kiosk:finish", args=[lab.slug]),
            {"ticket": ticket, "booking": booking.pk, "fault": "wobbly " * 50},
        )
    html = response.content.decode()
    assert response.status_code == 400 and "at most 300 characters" in html and "wobbly wobbly" in html
    assert Booking.objects.get(pk=booking.pk).status == Booking.Status.CHECKED_IN


def test_a_member_with_one_to_check_in_and_one_to_finish_chooses(client, lab, booking, maker):
    second = MachineFactory(lab=lab, name="Laser")
    upcoming = BookingFactory(machine=second, member=maker, start=at(10, 30), end=at(11))
    kiosk = enrolled(client, lab)
    with time_machine.travel(at(10, 20), tick=False):
        response = kiosk.post(
            reverse("kiosk:screen", args=[lab.slug]), {"number": number_of(maker), "pin": PIN}
        )
    html = response.content.decode()
    assert "Which booking?" in html and "m done" in html
    assert Booking.objects.get(pk=upcoming.pk).status == Booking.Status.CONFIRMED  # not checked in unasked
