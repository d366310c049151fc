"""The Django admin books, approves, declines and cancels through the services, with the same rules."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from fablab.booking.errors import RULES
from fablab.booking.models import Booking
from tests.factories import BookingFactory, LabFactory, MachineFactory, TrainingFactory, UserFactory

pytestmark = pytest.mark.django_db

BRUSSELS = zoneinfo.ZoneInfo("Europe/Brussels")
ADD_URL = reverse("admin:booking_booking_add")
LIST_URL = reverse("admin:booking_booking_changelist")


def at(hour: int, minute: int = 0) -> dt.datetime:
    day = timezone.localdate(timezone=BRUSSELS) + dt.timedelta(days=2)
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=BRUSSELS)


def add_form(machine, member, start: dt.datetime, end: dt.datetime, purpose: str = "") -> dict:
    # The admin reads its split date and time fields in the site's zone, Europe/Brussels.
    return {
        "machine": machine.pk,
        "member": member.pk,
        "start_0": start.strftime("%Y-%m-%d"),
        "start_1": start.strftime("%H:%M:%S"),
        "end_0": end.strftime("%Y-%m-%d"),
        "end_1": end.strftime("%H:%M:%S"),
        "purpose": purpose,
    }


@pytest.fixture
def machine():
    return MachineFactory(lab=LabFactory(), buffer_minutes=15)


@pytest.fixture
def admin(admin_user):
    admin_user.email = "admin@example.org"
    admin_user.save()
    return admin_user


def texts(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def test_adding_a_booking_runs_the_service(
    client, admin, machine, mailoutbox, django_capture_on_commit_callbacks
):
    member = UserFactory()
    client.force_login(admin)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(ADD_URL, add_form(machine, member, at(10), at(11), "Lamp"))
    assert response.status_code == 302, response.content.decode()[:2000]
    booking = Booking.objects.get()
    assert (booking.member, booking.status, booking.purpose) == (member, Booking.Status.CONFIRMED, "Lamp")
    assert booking.start == at(10)
    # Only the service sets the buffer and mails the member.
    assert booking.blocked_until == at(11, 15)
    assert [m.to for m in mailoutbox] == [[member.email]]


def test_the_add_form_refuses_an_overlapping_slot_with_the_rules_message(client, admin, machine):
    BookingFactory(machine=machine, start=at(10), end=at(11))
    client.force_login(admin)
    # 11:00 would touch the first booking's 15-minute buffer.
    response = client.post(ADD_URL, add_form(machine, UserFactory(), at(11), at(12)))
    assert response.status_code == 200
    assert escape(str(RULES["slot_taken"][1])) in response.content.decode()
    assert response.context["adminform"].form.errors["__all__"].as_data()[0].code == "slot_taken"
    assert Booking.objects.count() == 1


@pytest.mark.parametrize(
    ("setup", "start", "end", "code"),
    [
        ("none", (11, 0), (10, 0), "invalid_range"),
        ("none", (6, 0), (7, 0), "outside_opening_hours"),
        ("none", (10, 10), (11, 0), "bad_granularity"),
        ("training", (10, 0), (11, 0), "not_certified"),
        ("approval", (10, 0), (11, 0), None),
    ],
)
def test_the_add_form_applies_every_rule(client, admin, machine, setup, start, end, code):
    if setup == "training":
        machine.required_training = TrainingFactory()
        machine.save()
    if setup == "approval":
        machine.approval_required = True
        machine.save()
    client.force_login(admin)
    response = client.post(ADD_URL, add_form(machine, UserFactory(), at(*start), at(*end)))
    if code is None:
        assert response.status_code == 302
        assert Booking.objects.get().status == Booking.Status.PENDING
        return
    assert response.status_code == 200
    assert escape(str(RULES[code][1])) in response.content.decode()
    assert not Booking.objects.exists()


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (dt.datetime(1, 1, 1, 0, 0, tzinfo=BRUSSELS), dt.datetime(1, 1, 1, 1, 0, tzinfo=BRUSSELS)),
        (
            dt.datetime(9999, 12, 31, 22, 0, tzinfo=BRUSSELS),
            dt.datetime(9999, 12, 31, 23, 0, tzinfo=BRUSSELS),
        ),
    ],
    ids=["year-1", "year-9999"],
)
def test_the_add_form_refuses_dates_at_the_ends_of_the_calendar(client, admin, machine, start, end):
    # Year 1 in Brussels is before the first moment UTC can hold: this was a 500.
    client.force_login(admin)
    response = client.post(ADD_URL, add_form(machine, UserFactory(), start, end))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert set(errors) == {"start", "end"}
    assert not Booking.objects.exists()


@pytest.fixture
def pending(machine):
    machine.approval_required = True
    machine.save()
    return BookingFactory(machine=machine, start=at(10), end=at(11), status=Booking.Status.PENDING)


def act(client, action: str, *bookings):
    return client.post(
        LIST_URL, {"action": action, "_selected_action": [b.pk for b in bookings]}, follow=True
    )


def test_the_approve_action_goes_through_the_service(
    client, admin, pending, mailoutbox, django_capture_on_commit_callbacks
):
    client.force_login(admin)
    with django_capture_on_commit_callbacks(execute=True):
        response = act(client, "approve", pending)
    pending.refresh_from_db()
    assert (pending.status, pending.decided_by) == (Booking.Status.CONFIRMED, admin)
    assert pending.decided_at is not None
    assert "1 bookings approved." in texts(response)
    assert [m.subject for m in mailoutbox] == [f"Booking approved: {pending.machine.name}"]


def test_the_decline_action_goes_through_the_service(
    client, admin, pending, mailoutbox, django_capture_on_commit_callbacks
):
    client.force_login(admin)
    with django_capture_on_commit_callbacks(execute=True):
        act(client, "decline", pending)
    pending.refresh_from_db()
    assert pending.status == Booking.Status.CANCELLED
    assert (pending.cancel_reason, pending.cancelled_by) == (Booking.CancelReason.DECLINED, admin)
    assert [m.subject for m in mailoutbox] == [f"Booking declined: {pending.machine.name}"]


def test_the_cancel_action_goes_through_the_service(
    client, admin, machine, mailoutbox, django_capture_on_commit_callbacks
):
    booking = BookingFactory(machine=machine, start=at(10), end=at(11))
    client.force_login(admin)
    with django_capture_on_commit_callbacks(execute=True):
        act(client, "cancel", booking)
    booking.refresh_from_db()
    assert booking.status == Booking.Status.CANCELLED
    assert (booking.cancel_reason, booking.cancelled_by) == (Booking.CancelReason.MANAGER, admin)
    assert booking.cancelled_at is not None
    assert [m.subject for m in mailoutbox] == [f"Booking cancelled: {machine.name}"]


def test_an_action_the_rules_refuse_changes_nothing_and_says_why(client, admin, machine):
    confirmed = BookingFactory(machine=machine, start=at(10), end=at(11))
    client.force_login(admin)
    response = act(client, "approve", confirmed)
    confirmed.refresh_from_db()
    assert confirmed.status == Booking.Status.CONFIRMED
    assert confirmed.decided_by is None
    messages = texts(response)
    assert any(str(RULES["not_pending"][1]) in m for m in messages)
    assert "0 bookings approved." in messages


def test_a_staff_member_who_is_not_a_superuser_cannot_decide_in_the_admin(client, pending):
    staff = UserFactory(is_staff=True)
    staff.user_permissions.add(*_booking_permissions())
    pending.machine.lab.managers.add(staff)  # even as a manager of the lab (they use /manage/)
    client.force_login(staff)
    assert client.get(LIST_URL).status_code == 302
    response = act(client, "approve", pending)
    assert response.redirect_chain[0][0].startswith(reverse("admin:login"))
    pending.refresh_from_db()
    assert pending.status == Booking.Status.PENDING
    assert pending.decided_by is None


def _booking_permissions():
    from django.contrib.auth.models import Permission

    return Permission.objects.filter(content_type__app_label="booking", content_type__model="booking")


def test_times_and_status_cannot_be_edited_in_the_admin(client, admin, machine):
    booking = BookingFactory(machine=machine, start=at(10), end=at(11), purpose="Old")
    client.force_login(admin)
    url = reverse("admin:booking_booking_change", args=[booking.pk])
    data = add_form(machine, UserFactory(), at(14), at(15), "New")
    response = client.post(url, {**data, "status": "cancelled"})
    assert response.status_code == 302
    booking.refresh_from_db()
    assert (booking.start, booking.end, booking.status, booking.purpose) == (
        at(10),
        at(11),
        Booking.Status.CONFIRMED,
        "New",
    )


def test_bookings_cannot_be_deleted_only_cancelled(client, admin, machine):
    booking = BookingFactory(machine=machine, start=at(10), end=at(11))
    client.force_login(admin)
    response = client.post(reverse("admin:booking_booking_delete", args=[booking.pk]), {"post": "yes"})
    assert response.status_code == 403
    act(client, "delete_selected", booking)
    assert Booking.objects.filter(pk=booking.pk).exists()


def test_a_network_administrator_sees_and_books_every_labs_machines(client, admin, machine):
    elsewhere = MachineFactory(lab=LabFactory())
    mine = BookingFactory(machine=machine, start=at(10), end=at(11))
    theirs = BookingFactory(machine=elsewhere, start=at(10), end=at(11))
    client.force_login(admin)
    assert set(client.get(LIST_URL).context["cl"].result_list) == {mine, theirs}
    assert client.get(reverse("admin:booking_booking_change", args=[theirs.pk])).status_code == 200
    booked = client.post(ADD_URL, add_form(elsewhere, UserFactory(), at(14), at(15)))
    assert booked.status_code == 302
    assert Booking.objects.count() == 3
