"""Strikes: no-shows (and late cancellations, where counted) block new bookings for a while; managers waive.

The lab's policy is the default one (3 strikes within 30 days block for 14 days) unless a test
changes it. Strikes are set up as rows (``released_at`` is when a no-show was marked); every rule
gets its ``now=``; the pages run under ``time_machine``.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core import mail
from django.core.cache import cache
from django.template.loader import render_to_string
from django.urls import reverse
from rest_framework.test import APIClient

from devices import scheduler
from fablab.booking import lifecycle, services, strikes
from fablab.booking.errors import BookingError
from fablab.booking.models import Booking, StrikeWaiver
from fablab.labs.models import Lab, MaintenanceWindow
from tests.factories import BookingFactory, LabFactory, MachineFactory, UserFactory, api_token

pytestmark = pytest.mark.django_db

BRUSSELS = ZoneInfo("Europe/Brussels")
DAY = dt.date(2031, 3, 3)


def at(day: int, hour: int = 10, minute: int = 0, second: int = 0) -> dt.datetime:
    """``day`` days after DAY, at the given Brussels time."""
    return dt.datetime.combine(DAY + dt.timedelta(days=day), dt.time(hour, minute, second), tzinfo=BRUSSELS)


@pytest.fixture(autouse=True)
def _clear_throttles():
    cache.clear()


@pytest.fixture
def lab():
    return LabFactory(slug="centre", name="Centre")


@pytest.fixture
def machine(lab):
    return MachineFactory(lab=lab, name="Printer")


@pytest.fixture
def maker():
    return UserFactory(username="maker", first_name="Mia", last_name="Maker")


@pytest.fixture
def manager(lab):
    user = UserFactory(username="manon")
    lab.managers.add(user)
    return user


def no_show(machine, member, day: int, *, hour: int = 10) -> Booking:
    """A booking at ``day``/``hour`` that was marked a no-show 15 minutes after its start."""
    start = at(day, hour)
    return BookingFactory(
        machine=machine,
        member=member,
        start=start,
        end=start + dt.timedelta(hours=1),
        status=Booking.Status.NO_SHOW,
        released_at=start + dt.timedelta(minutes=15),
    )


def three_no_shows(machine, member) -> list[Booking]:
    return [no_show(machine, member, day) for day in (0, 5, 10)]


# --- the rule --------------------------------------------------------------------------------------


def test_three_no_shows_in_30_days_block_for_14_days_from_the_third(lab, machine, maker):
    bookings = three_no_shows(machine, maker)
    third = bookings[-1].released_at

    assert strikes.blocked_until(maker, lab, third - dt.timedelta(seconds=1)) is None  # two only
    assert strikes.blocked_until(maker, lab, third) == third + dt.timedelta(days=14)
    with pytest.raises(BookingError) as exc:
        strikes.check_not_blocked(maker, lab, at(11))
    assert exc.value.code == "no_show_blocked" and exc.value.status == 403
    # Until when, in the lab's time: 10:15 on the 24th day after DAY (March 27, 2031).
    assert "until 27 March 2031, 10:15" in exc.value.detail


def test_the_block_ends_exactly_at_its_end(lab, machine, maker):
    until = three_no_shows(machine, maker)[-1].released_at + dt.timedelta(days=14)

    with pytest.raises(BookingError):
        strikes.check_not_blocked(maker, lab, until - dt.timedelta(seconds=1))
    strikes.check_not_blocked(maker, lab, until)  # no error
    assert strikes.blocked_until(maker, lab, until) is None


def test_a_strike_outside_the_window_does_not_count(lab, machine, maker):
    for day in (-31, 0, 5):
        no_show(machine, maker, day)
    assert strikes.blocked_until(maker, lab, at(6)) is None
    no_show(machine, maker, 10)
    assert strikes.blocked_until(maker, lab, at(11)) == at(10, 10, 15) + dt.timedelta(days=14)


def test_a_further_strike_while_blocked_extends_the_block(lab, machine, maker):
    three_no_shows(machine, maker)
    no_show(machine, maker, 12)
    assert strikes.blocked_until(maker, lab, at(13)) == at(26, 10, 15)


def test_no_policy_blocks_nobody(lab, machine, maker):
    three_no_shows(machine, maker)
    Lab.objects.filter(pk=lab.pk).update(strike_limit=0)
    lab.refresh_from_db()
    assert strikes.blocked_until(maker, lab, at(11)) is None


def test_strikes_count_per_lab(lab, machine, maker):
    three_no_shows(machine, maker)
    other_lab = LabFactory()
    assert strikes.blocked_until(maker, other_lab, at(11)) is None
    assert strikes.blocks_for(maker, at(11)) == [(lab, at(24, 10, 15))]


def test_unavailable_at_the_start_is_never_a_strike(lab, machine, maker):
    bookings = []
    for day in (0, 5, 10):
        booking = BookingFactory(machine=machine, member=maker, start=at(day), end=at(day, 11))
        assert lifecycle.mark_unavailable(booking.pk, Booking.Unavailable.OFFLINE, at(day, 10, 1))
        # The scheduler's no-show rule at and after the deadline leaves it alone.
        scheduler.no_shows(at(day, 10, 16))
        scheduler.no_shows(at(day, 10, 59))
        bookings.append(booking)

    assert [Booking.objects.get(pk=b.pk).status for b in bookings] == [Booking.Status.CONFIRMED] * 3
    assert strikes.strikes(maker, lab) == []
    assert strikes.blocked_until(maker, lab, at(11)) is None


def test_a_no_show_row_marked_unavailable_is_not_counted(lab, machine, maker):
    for booking in three_no_shows(machine, maker):
        Booking.objects.filter(pk=booking.pk).update(unavailable=Booking.Unavailable.ERROR)
    assert strikes.strikes(maker, lab) == []


def test_a_real_no_show_through_the_scheduler_is_a_strike(lab, machine, maker):
    booking = BookingFactory(machine=machine, member=maker, start=at(0), end=at(0, 11))
    scheduler.no_shows(at(0, 10, 16))
    (strike,) = strikes.strikes(maker, lab)
    assert (strike.booking.pk, strike.kind, strike.at) == (booking.pk, "no_show", at(0, 10, 16))


# --- late cancellations ----------------------------------------------------------------------------


def cancel(machine, member, *, hours_before: float, by=None, day: int = 1) -> Booking:
    booking = BookingFactory(machine=machine, member=member, start=at(day, 14), end=at(day, 15))
    return services.booking_cancel(
        booking=booking, by=by or member, now=booking.start - dt.timedelta(hours=hours_before)
    )


def test_a_late_cancellation_counts_only_when_the_lab_counts_them(lab, machine, maker):
    late = cancel(machine, maker, hours_before=2)
    assert strikes.strikes(maker, lab) == []  # late_cancel_hours = 0: never

    Lab.objects.filter(pk=lab.pk).update(late_cancel_hours=24)
    lab.refresh_from_db()
    cancel(machine, maker, hours_before=30, day=2)  # in time
    (strike,) = strikes.strikes(maker, lab)
    assert (strike.booking.pk, strike.kind, strike.at) == (late.pk, "late_cancel", late.cancelled_at)


def test_three_late_cancellations_block_like_no_shows(lab, machine, maker):
    Lab.objects.filter(pk=lab.pk).update(late_cancel_hours=24)
    lab.refresh_from_db()
    cancellations = [cancel(machine, maker, hours_before=1, day=day) for day in (1, 2, 3)]
    assert strikes.blocked_until(maker, lab, at(3, 14)) == cancellations[-1].cancelled_at + dt.timedelta(
        days=14
    )


def test_a_managers_cancellation_or_one_for_a_broken_machine_is_no_strike(lab, machine, maker, manager):
    Lab.objects.filter(pk=lab.pk).update(late_cancel_hours=24)
    lab.refresh_from_db()
    cancel(machine, maker, hours_before=1, by=manager)
    MaintenanceWindow.objects.create(
        machine=machine, start=at(2, 8), end=at(3, 8), kind=MaintenanceWindow.Kind.BREAKDOWN
    )
    cancel(machine, maker, hours_before=1, day=2)
    assert strikes.strikes(maker, lab) == []


# --- waivers ---------------------------------------------------------------------------------------


def test_a_waiver_lifts_the_block_and_is_audited(lab, machine, maker, manager):
    bookings = three_no_shows(machine, maker)
    waiver = strikes.waive(booking=bookings[1], by=manager, reason="  Phoned in sick\n ", now=at(11))

    assert strikes.blocked_until(maker, lab, at(11)) is None
    row = StrikeWaiver.objects.get()
    assert (row.pk, row.booking_id, row.by, row.reason, row.at) == (
        waiver.pk,
        bookings[1].pk,
        manager,
        "Phoned in sick",
        at(11),
    )
    listed = strikes.strikes(maker, lab, with_waived=True)
    assert [s.waiver for s in listed] == [None, row, None]


def test_a_waiver_needs_a_reason_and_a_manager_of_the_lab(lab, machine, maker, manager):
    booking = no_show(machine, maker, 0)
    with pytest.raises(ValueError):
        strikes.waive(booking=booking, by=manager, reason=" \n ", now=at(1))
    with pytest.raises(ValueError):
        strikes.waive(booking=booking, by=manager, reason="x" * 301, now=at(1))
    other_manager = UserFactory(username="elsewhere")
    LabFactory().managers.add(other_manager)
    for who in (other_manager, maker):
        with pytest.raises(BookingError) as exc:
            strikes.waive(booking=booking, by=who, reason="kind", now=at(1))
        assert exc.value.code == "forbidden"
    assert not StrikeWaiver.objects.exists()


def test_only_a_strike_is_waived_and_only_once(lab, machine, maker, manager):
    strike = no_show(machine, maker, 0)
    strikes.waive(booking=strike, by=manager, reason="first", now=at(1))
    with pytest.raises(BookingError) as exc:
        strikes.waive(booking=strike, by=manager, reason="again", now=at(1))
    assert exc.value.code == "not_waivable"
    fine = BookingFactory(machine=machine, member=maker, start=at(2), end=at(2, 11))
    with pytest.raises(BookingError) as exc:
        strikes.waive(booking=fine, by=manager, reason="nothing to waive", now=at(3))
    assert exc.value.code == "not_waivable"
    assert StrikeWaiver.objects.count() == 1


# --- the manager's pages ---------------------------------------------------------------------------


def test_the_manager_sees_the_members_with_strikes_and_their_strikes(client, lab, machine, maker, manager):
    bookings = three_no_shows(machine, maker)
    UserFactory(username="clean")
    with time_machine.travel(at(11), tick=False):
        client.force_login(manager)
        overview = client.get(reverse("booking:manage")).content.decode()
        listing = client.get(reverse("booking:strikes", args=[lab.slug]))
        detail = client.get(reverse("booking:member_strikes", args=[lab.slug, maker.pk]))
    assert reverse("booking:strikes", args=[lab.slug]) in overview
    html = listing.content.decode()
    assert listing.status_code == 200 and "Mia Maker" in html and "clean" not in html
    assert "27 March 2031, 10:15" in html  # blocked until, lab time
    html = detail.content.decode()
    assert detail.status_code == 200 and html.count("No-show") == 3 and html.count('name="reason"') == 3
    assert reverse("booking:waive_strike", args=[lab.slug, bookings[0].pk]) in html


def test_the_manager_waives_through_the_page(client, lab, machine, maker, manager):
    bookings = three_no_shows(machine, maker)
    url = reverse("booking:waive_strike", args=[lab.slug, bookings[2].pk])
    with time_machine.travel(at(11), tick=False):
        client.force_login(manager)
        refused = client.post(url, {"reason": "   "})
        done = client.post(url, {"reason": "Machine jammed, confirmed"}, follow=True)
    assert refused.status_code == 400 and "Give a reason" in refused.content.decode()
    assert done.status_code == 200
    html = done.content.decode()
    assert "Strike waived." in html and "Machine jammed, confirmed" in html and "Waived by manon" in html
    assert strikes.blocked_until(maker, lab, at(11)) is None


def test_the_pages_are_for_the_labs_managers_only(client, lab, machine, maker):
    booking = no_show(machine, maker, 0)
    stranger_manager = UserFactory(username="elsewhere")
    LabFactory(slug="other").managers.add(stranger_manager)
    with time_machine.travel(at(1), tick=False):
        for user in (maker, stranger_manager):
            client.force_login(user)
            assert client.get(reverse("booking:strikes", args=[lab.slug])).status_code == 403
            assert client.get(reverse("booking:member_strikes", args=[lab.slug, maker.pk])).status_code == 403
            waive_url = reverse("booking:waive_strike", args=[lab.slug, booking.pk])
            assert client.post(waive_url, {"reason": "x"}).status_code == 403
        assert client.get(reverse("booking:strikes", args=["nowhere"])).status_code == 404
        # Their own lab: another lab's member and booking are not found there.
        assert client.get(reverse("booking:member_strikes", args=["other", maker.pk])).status_code == 404
        waive_elsewhere = reverse("booking:waive_strike", args=["other", booking.pk])
        assert client.post(waive_elsewhere, {"reason": "x"}).status_code == 404
    assert not StrikeWaiver.objects.exists()


def test_the_lab_policy_is_edited_on_the_settings_page(client, lab, manager):
    with time_machine.travel(at(0), tick=False):
        client.force_login(manager)
        page = client.get(reverse("booking:lab_settings", args=[lab.slug])).content.decode()
        assert 'name="policy-strike_limit"' in page and reverse("booking:lab_policy", args=[lab.slug]) in page
        values = {
            "policy-strike_limit": "2",
            "policy-strike_window_days": "60",
            "policy-strike_block_days": "7",
            "policy-late_cancel_hours": "12",
            "policy-waitlist_hold_minutes": "30",
        }
        saved = client.post(reverse("booking:lab_policy", args=[lab.slug]), values)
        refused = client.post(
            reverse("booking:lab_policy", args=[lab.slug]), {**values, "policy-strike_window_days": "0"}
        )
    assert saved.status_code == 302 and saved["Location"] == reverse("booking:lab_settings", args=[lab.slug])
    lab.refresh_from_db()
    assert (lab.strike_limit, lab.strike_window_days, lab.strike_block_days) == (2, 60, 7)
    assert (lab.late_cancel_hours, lab.waitlist_hold_minutes) == (12, 30)
    assert refused.status_code == 400 and 'value="0"' in refused.content.decode()
    lab.refresh_from_db()
    assert lab.strike_window_days == 60


def test_a_member_cannot_change_the_policy(client, lab, maker):
    with time_machine.travel(at(0), tick=False):
        client.force_login(maker)
        response = client.post(reverse("booking:lab_policy", args=[lab.slug]), {"policy-strike_limit": "0"})
    assert response.status_code == 403
    assert Lab.objects.get(pk=lab.pk).strike_limit == 3


# --- the member ------------------------------------------------------------------------------------


def test_a_blocked_members_api_booking_is_refused_saying_until_when(lab, machine, maker):
    three_no_shows(machine, maker)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token(maker)}")
    body = {"machine": machine.pk, "start": "2031-03-15T10:00:00+01:00", "end": "2031-03-15T11:00:00+01:00"}
    with time_machine.travel(at(11), tick=False):
        response = client.post("/api/v1/bookings/", body, format="json")
    data = response.json()
    assert response.status_code == 403 and data["code"] == "no_show_blocked"
    assert "until 27 March 2031, 10:15" in data["detail"]
    assert not Booking.objects.filter(start=at(12)).exists()

    with time_machine.travel(at(24, 10, 15), tick=False):
        body = {
            "machine": machine.pk,
            "start": "2031-03-28T10:00:00+01:00",
            "end": "2031-03-28T11:00:00+01:00",
        }
        assert client.post("/api/v1/bookings/", body, format="json").status_code == 201


def test_the_strike_notice_says_where_and_until_when(lab, machine, maker):
    three_no_shows(machine, maker)
    html = render_to_string("booking/_strike_notice.html", {"blocks": strikes.blocks_for(maker, at(11))})
    assert "you cannot book in Centre until 27 March 2031, 10:15" in html
    assert render_to_string("booking/_strike_notice.html", {"blocks": []}).strip() == ""


def test_the_no_show_that_blocks_tells_the_member_until_when(
    lab, machine, maker, django_capture_on_commit_callbacks
):
    no_show(machine, maker, 0)
    no_show(machine, maker, 5)
    third = BookingFactory(machine=machine, member=maker, start=at(10), end=at(10, 11))
    with django_capture_on_commit_callbacks(execute=True):
        assert lifecycle.mark_no_show(third.pk, at(10, 10, 16))

    subjects = [m.subject for m in mail.outbox]
    assert "You cannot book in Centre for a while" in subjects
    (block_mail,) = [m for m in mail.outbox if m.subject == "You cannot book in Centre for a while"]
    assert "until 27 March 2031, 10:16" in block_mail.body and block_mail.to == [maker.email]

    mail.outbox.clear()
    fourth = BookingFactory(machine=machine, member=maker, start=at(11), end=at(11, 11))
    with django_capture_on_commit_callbacks(execute=True):
        assert lifecycle.mark_no_show(fourth.pk, at(11, 10, 16))
    assert any(m.subject == "You cannot book in Centre for a while" for m in mail.outbox)  # extended


def test_a_no_show_below_the_limit_sends_no_block_email(
    lab, machine, maker, django_capture_on_commit_callbacks
):
    booking = BookingFactory(machine=machine, member=maker, start=at(0), end=at(0, 11))
    with django_capture_on_commit_callbacks(execute=True):
        lifecycle.mark_no_show(booking.pk, at(0, 10, 16))
    assert [m.subject for m in mail.outbox] == ["Missed booking released: Printer"]
