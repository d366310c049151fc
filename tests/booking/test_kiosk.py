"""The lab kiosk: enrolled screens, member number or badge + PIN, throttling, check-in."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import time_machine
from django.contrib.auth.hashers import make_password
from django.core import signing
from django.test import Client
from django.urls import reverse
from django.utils import timezone, translation

from fablab.booking import kiosk as service
from fablab.booking.kiosk_views import COOKIE
from fablab.booking.lifecycle import NOT_CERTIFIED_AT_CHECK_IN
from fablab.booking.models import Booking, Kiosk, KioskPinFailure
from fablab.members.models import MemberProfile
from tests.factories import (
    BookingFactory,
    CertificationFactory,
    LabFactory,
    MachineFactory,
    TrainingFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

PIN = "4821"


@pytest.fixture
def lab():
    return LabFactory(slug="centre", name="Centre")


@pytest.fixture
def machine(lab):
    return MachineFactory(lab=lab, name="Laser cutter")


@pytest.fixture
def manager(lab):
    user = UserFactory(username="manon")
    lab.managers.add(user)
    return user


@pytest.fixture
def maker():
    user = UserFactory(username="maker", first_name="Mia")
    set_pin(user, PIN)
    return user


def set_pin(user, pin: str) -> None:
    MemberProfile.objects.filter(user=user).update(kiosk_pin=make_password(pin))


def number_of(user) -> str:
    return MemberProfile.objects.get(user=user).member_number


def enrolled(client: Client, lab, manager=None, name: str = "Entrance") -> Kiosk:
    """Enrol a kiosk through the manager's page in ``client``'s browser, then log the manager out."""
    manager = manager or _manager_of(lab)
    client.force_login(manager)
    response = client.post(reverse("kiosk:enrol", args=[lab.slug]), {"name": name})
    assert response.status_code == 302
    cookie = client.cookies[COOKIE]
    # A real browser keeps its other cookies on logout; the test client drops them all.
    client.logout()
    client.cookies[COOKIE] = cookie.value
    for attribute in ("path", "httponly", "samesite", "max-age", "secure"):
        client.cookies[COOKIE][attribute] = cookie[attribute]
    return Kiosk.objects.get(lab=lab, name=name)


def _manager_of(lab):
    user = UserFactory()
    lab.managers.add(user)
    return user


def screen_url(lab) -> str:
    return reverse("kiosk:screen", args=[lab.slug])


def booking_now(machine, member, *, starts_in: int = 5, minutes: int = 60) -> Booking:
    start = timezone.now().replace(microsecond=0) + dt.timedelta(minutes=starts_in)
    return BookingFactory(
        machine=machine, member=member, start=start, end=start + dt.timedelta(minutes=minutes)
    )


def type_in(client: Client, lab, number: str, pin: str):
    return client.post(screen_url(lab), {"number": number, "pin": pin})


def page_text(response) -> str:
    """The page without its per-request CSRF token, for comparing two answers."""
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]*"', "", response.content.decode())


# --- enrolling, the token ------------------------------------------------------------------------


def test_without_an_enrolled_token_the_kiosk_explains_and_refuses(client, lab):
    response = client.get(screen_url(lab))
    assert response.status_code == 403
    assert "must enrol this screen" in response.content.decode()
    assert 'name="pin"' not in response.content.decode()


def test_enrolling_sets_a_strict_http_only_cookie_and_keeps_only_the_secrets_hash(client, lab, manager):
    kiosk = enrolled(client, lab, manager)
    cookie = client.cookies[COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "Strict"
    assert cookie["path"] == screen_url(lab)
    assert int(cookie["max-age"]) > 300 * 24 * 3600
    payload = signing.loads(cookie.value, salt=service.TOKEN_SALT)
    assert payload["k"] == kiosk.pk
    assert payload["s"] not in kiosk.secret_hash and len(kiosk.secret_hash) == 64
    assert kiosk.enrolled_by == manager and kiosk.revoked_at is None
    response = client.get(screen_url(lab))
    assert response.status_code == 200
    assert 'name="number"' in response.content.decode() and "autofocus" in response.content.decode()
    assert Kiosk.objects.get(pk=kiosk.pk).last_seen_at is not None


def test_the_cookie_is_secure_when_enrolled_over_https(client, lab, manager):
    client.force_login(manager)
    client.post(reverse("kiosk:enrol", args=[lab.slug]), {"name": "Hall"}, secure=True)
    assert client.cookies[COOKIE]["secure"]


def test_only_a_manager_of_the_lab_enrols_or_sees_its_kiosks(client, lab):
    other_lab = LabFactory()
    outsider = UserFactory()
    other_lab.managers.add(outsider)
    client.force_login(outsider)
    assert client.get(reverse("kiosk:manage", args=[lab.slug])).status_code == 403
    assert client.post(reverse("kiosk:enrol", args=[lab.slug]), {"name": "X"}).status_code == 403
    assert not Kiosk.objects.exists()
    assert COOKIE not in client.cookies


def test_a_revoked_kiosk_is_refused_and_the_revocation_is_audited(client, lab, manager):
    kiosk = enrolled(client, lab, manager)
    assert client.get(screen_url(lab)).status_code == 200
    manager_browser = Client()
    manager_browser.force_login(manager)
    response = manager_browser.post(reverse("kiosk:revoke", args=[lab.slug, kiosk.pk]))
    assert response.status_code == 302
    kiosk.refresh_from_db()
    assert kiosk.revoked_by == manager and kiosk.revoked_at is not None
    assert client.get(screen_url(lab)).status_code == 403
    assert type_in(client, lab, "00001", PIN).status_code == 403


def test_a_tampered_token_is_refused(client, lab):
    enrolled(client, lab)
    token = client.cookies[COOKIE].value
    client.cookies[COOKIE] = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    assert client.get(screen_url(lab)).status_code == 403


def test_a_validly_signed_token_with_a_guessed_secret_is_refused(client, lab):
    """A leaked SECRET_KEY alone does not make a kiosk: the secret's hash must match too."""
    kiosk = enrolled(client, lab)
    client.cookies[COOKIE] = signing.dumps({"k": kiosk.pk, "s": "guess"}, salt=service.TOKEN_SALT)
    assert client.get(screen_url(lab)).status_code == 403


def test_a_token_signed_for_another_purpose_is_refused(client, lab):
    kiosk = enrolled(client, lab)
    payload = signing.loads(client.cookies[COOKIE].value, salt=service.TOKEN_SALT)
    client.cookies[COOKIE] = signing.dumps(payload, salt="something.else")
    assert client.get(screen_url(lab)).status_code == 403
    client.cookies[COOKIE] = signing.dumps({"k": kiosk.pk}, salt=service.TOKEN_SALT)
    assert client.get(screen_url(lab)).status_code == 403


def test_a_kiosk_of_another_lab_is_refused(client, lab):
    other = LabFactory(slug="annex")
    kiosk, token = service.enrol(lab=other, name="Annex door", by=None)
    client.cookies[COOKIE] = token
    assert client.get(screen_url(lab)).status_code == 403
    assert client.get(screen_url(other)).status_code == 200
    with pytest.raises(service.KioskRefused):
        service.verify_token(token, lab)
    assert service.verify_token(token, other) == kiosk


# --- throttling --------------------------------------------------------------------------------


def test_five_wrong_pins_lock_the_member_at_every_kiosk_for_fifteen_minutes(lab, maker):
    first, _token = service.enrol(lab=lab, name="One", by=None)
    second, _token = service.enrol(lab=lab, name="Two", by=None)
    number = number_of(maker)
    now = timezone.now()
    for i in range(service.MEMBER_FAILURES):
        with pytest.raises(service.KioskRefused) as refused:
            service.attempt(kiosk=first, number=number, pin="0000", now=now + dt.timedelta(seconds=i))
        assert refused.value.code == "wrong"
    # Locked: even the right PIN, at another kiosk, gets the same answer.
    with pytest.raises(service.KioskRefused) as refused:
        service.attempt(kiosk=second, number=number, pin=PIN, now=now + dt.timedelta(minutes=1))
    assert refused.value.code == "wrong"
    later = now + service.WINDOW + dt.timedelta(minutes=2)
    assert service.attempt(kiosk=second, number=number, pin=PIN, now=later) == maker
    # A success clears the member's failures.
    assert not KioskPinFailure.objects.filter(member=maker).exists()


def test_four_wrong_pins_do_not_lock(lab, maker):
    kiosk, _token = service.enrol(lab=lab, name="One", by=None)
    now = timezone.now()
    for _ in range(service.MEMBER_FAILURES - 1):
        with pytest.raises(service.KioskRefused):
            service.attempt(kiosk=kiosk, number=number_of(maker), pin="9999", now=now)
    assert service.attempt(kiosk=kiosk, number=number_of(maker), pin=PIN, now=now) == maker


def test_unknown_numbers_count_against_the_kiosk_and_lock_it_briefly(lab, maker):
    kiosk, _token = service.enrol(lab=lab, name="One", by=None)
    other, _token = service.enrol(lab=lab, name="Two", by=None)
    now = timezone.now()
    for i in range(service.KIOSK_FAILURES):
        with pytest.raises(service.KioskRefused) as refused:
            service.attempt(kiosk=kiosk, number=f"9{i:05d}", pin="1234", now=now)
        assert refused.value.code == "wrong"
    assert KioskPinFailure.objects.filter(kiosk=kiosk, member=None).count() == service.KIOSK_FAILURES
    # The kiosk is locked, even for a member with the right PIN...
    with pytest.raises(service.KioskRefused) as refused:
        service.attempt(kiosk=kiosk, number=number_of(maker), pin=PIN, now=now + dt.timedelta(seconds=30))
    assert refused.value.code == "kiosk_locked"
    # ...but not the other kiosk, and only briefly.
    assert service.attempt(kiosk=other, number=number_of(maker), pin=PIN, now=now) == maker
    after_lock = now + service.KIOSK_LOCK + dt.timedelta(seconds=1)
    assert service.attempt(kiosk=kiosk, number=number_of(maker), pin=PIN, now=after_lock) == maker


def test_a_locked_kiosk_says_so_with_429(client, lab, maker):
    kiosk = enrolled(client, lab)
    now = timezone.now()
    KioskPinFailure.objects.bulk_create(
        [KioskPinFailure(kiosk=kiosk, member=None, at=now) for _ in range(service.KIOSK_FAILURES)]
    )
    response = type_in(client, lab, number_of(maker), PIN)
    assert response.status_code == 429
    assert "Too many wrong tries at this kiosk" in response.content.decode()


def test_the_answer_does_not_tell_whether_a_number_exists(client, lab, machine):
    """Unknown number, member without a PIN, wrong PIN, locked member: one and the same page."""
    enrolled(client, lab)
    with_pin = UserFactory()
    set_pin(with_pin, PIN)
    without_pin = UserFactory()
    locked = UserFactory()
    set_pin(locked, PIN)
    kiosk = Kiosk.objects.get(lab=lab)
    KioskPinFailure.objects.bulk_create(
        [
            KioskPinFailure(kiosk=kiosk, member=locked, at=timezone.now())
            for _ in range(service.MEMBER_FAILURES)
        ]
    )
    answers = {
        "unknown": type_in(client, lab, "99999", PIN),
        "no pin": type_in(client, lab, number_of(without_pin), PIN),
        "wrong pin": type_in(client, lab, number_of(with_pin), "0000"),
        "locked, right pin": type_in(client, lab, number_of(locked), PIN),
    }
    texts = {name: page_text(response) for name, response in answers.items()}
    assert {response.status_code for response in answers.values()} == {200}
    assert len(set(texts.values())) == 1, texts.keys()
    assert str(service.WRONG) in texts["unknown"]
    # Nothing typed stays on the screen.
    assert number_of(with_pin) not in texts["wrong pin"]
    assert 'value="0000"' not in texts["wrong pin"]


def test_a_member_without_a_pin_is_refused_and_it_counts(lab):
    kiosk, _token = service.enrol(lab=lab, name="One", by=None)
    member = UserFactory()
    with pytest.raises(service.KioskRefused) as refused:
        service.attempt(kiosk=kiosk, number=number_of(member), pin="", now=timezone.now())
    assert refused.value.code == "wrong"
    assert KioskPinFailure.objects.filter(member=member).count() == 1


def test_an_inactive_member_is_unknown(lab, maker):
    kiosk, _token = service.enrol(lab=lab, name="One", by=None)
    type(maker).objects.filter(pk=maker.pk).update(is_active=False)
    with pytest.raises(service.KioskRefused):
        service.attempt(kiosk=kiosk, number=number_of(maker), pin=PIN)
    assert KioskPinFailure.objects.filter(member=None).count() == 1


# --- checking in -------------------------------------------------------------------------------


def test_the_right_pin_checks_the_booking_in_through_the_kiosk(client, lab, machine, maker):
    booking = booking_now(machine, maker)
    enrolled(client, lab)
    response = type_in(client, lab, number_of(maker), PIN)
    assert response.status_code == 200
    booking.refresh_from_db()
    assert booking.status == Booking.Status.CHECKED_IN
    assert booking.check_in_via == Booking.CheckInVia.KIOSK
    assert booking.checked_in_by == maker
    html = response.content.decode()
    end = timezone.localtime(booking.end, lab.tz).strftime("%H:%M")
    assert f"Checked in: Laser cutter until {end}" in html


def test_short_member_numbers_are_padded(client, lab, machine, maker):
    booking = booking_now(machine, maker)
    enrolled(client, lab)
    type_in(client, lab, str(maker.pk), PIN)
    booking.refresh_from_db()
    assert booking.status == Booking.Status.CHECKED_IN


def test_the_confirmation_leaves_nothing_behind(client, lab, machine, maker):
    booking_now(machine, maker)
    enrolled(client, lab)
    response = type_in(client, lab, number_of(maker), PIN)
    html = response.content.decode()
    assert "no-store" in response["Cache-Control"]
    assert f'<meta http-equiv="refresh" content="8; url={screen_url(lab)}">' in html
    # A form's random CSRF token may spell anything ("…DMiaj9…" once did): it is not the member's data.
    html = re.sub(r'name="csrfmiddlewaretoken" value="[^"]*"', "", html)
    assert number_of(maker) not in html and PIN not in html and "Mia" not in html
    # The confirmation is the POST's answer, not a page anyone can open again.
    again = client.get(screen_url(lab)).content.decode()
    assert "Laser cutter" not in again and "Checked in" not in again


def test_a_badge_number_works_like_the_member_number(client, lab, machine, maker):
    MemberProfile.objects.filter(user=maker).update(badge_number="04A7F3C2")
    booking = booking_now(machine, maker)
    enrolled(client, lab)
    type_in(client, lab, "04A7F3C2\n", PIN)
    booking.refresh_from_db()
    assert booking.status == Booking.Status.CHECKED_IN


def test_a_member_with_several_open_bookings_picks_one(client, lab, maker):
    laser = MachineFactory(lab=lab, name="Laser cutter")
    printer = MachineFactory(lab=lab, name="Printer")
    first = booking_now(laser, maker)
    second = booking_now(printer, maker, starts_in=10)
    enrolled(client, lab)
    response = type_in(client, lab, number_of(maker), PIN)
    html = response.content.decode()
    assert "Laser cutter" in html and "Printer" in html
    assert "no-store" in response["Cache-Control"]
    ticket = re.search(r'name="ticket" value="([^"]+)"', html).group(1)
    first.refresh_from_db()
    assert first.status == Booking.Status.CONFIRMED
    response = client.post(reverse("kiosk:pick", args=[lab.slug]), {"ticket": ticket, "booking": second.pk})
    assert "Checked in: Printer" in response.content.decode()
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, second.status) == (Booking.Status.CONFIRMED, Booking.Status.CHECKED_IN)
    assert second.check_in_via == Booking.CheckInVia.KIOSK


def test_a_pick_ticket_is_bound_to_its_member_kiosk_and_time(client, lab, machine, maker):
    kiosk = enrolled(client, lab)
    somebody = UserFactory()
    theirs = booking_now(machine, somebody)
    ticket = service.pick_ticket(kiosk, maker)
    pick = reverse("kiosk:pick", args=[lab.slug])
    # Not another member's booking.
    response = client.post(pick, {"ticket": ticket, "booking": theirs.pk})
    assert "cannot be checked in now" in response.content.decode()
    # Not a forged or stale ticket.
    mine = booking_now(MachineFactory(lab=lab), maker)
    response = client.post(pick, {"ticket": ticket + "x", "booking": mine.pk})
    assert "timed out" in response.content.decode()
    with time_machine.travel(timezone.now() + service.PICK_MAX_AGE + dt.timedelta(seconds=5)):
        response = client.post(pick, {"ticket": ticket, "booking": mine.pk})
    assert "timed out" in response.content.decode()
    # Not a ticket of another kiosk.
    other_kiosk, _token = service.enrol(lab=lab, name="Other", by=None)
    response = client.post(pick, {"ticket": service.pick_ticket(other_kiosk, maker), "booking": mine.pk})
    assert "timed out" in response.content.decode()
    theirs.refresh_from_db()
    mine.refresh_from_db()
    assert theirs.status == mine.status == Booking.Status.CONFIRMED


def test_no_open_booking_says_so_with_the_next_one_today(lab, machine, maker):
    noon = dt.datetime(2031, 3, 4, 12, 0, tzinfo=lab.tz)
    later = BookingFactory(
        machine=machine, member=maker, start=noon + dt.timedelta(hours=3), end=noon + dt.timedelta(hours=4)
    )
    BookingFactory(
        machine=machine,
        member=maker,
        start=noon + dt.timedelta(days=1),
        end=noon + dt.timedelta(days=1, hours=1),
    )
    found = service.bookings_now(maker, lab, noon)
    assert found.checkable == [] and found.checked_in == []
    assert found.next_today == later
    assert found.next_opens == later.start - dt.timedelta(minutes=machine.check_in_window_minutes)


def test_the_nothing_page(client, lab, machine, maker):
    booking_now(machine, maker, starts_in=60 * 24)  # tomorrow: not today's next booking either way
    enrolled(client, lab)
    html = type_in(client, lab, number_of(maker), PIN).content.decode()
    assert "You have no booking to check in at this lab right now." in html
    assert "Laser cutter" not in html


def test_bookings_of_other_labs_are_not_checked_in_here(client, lab, maker):
    elsewhere = booking_now(MachineFactory(lab=LabFactory()), maker)
    enrolled(client, lab)
    html = type_in(client, lab, number_of(maker), PIN).content.decode()
    assert "no booking to check in" in html
    elsewhere.refresh_from_db()
    assert elsewhere.status == Booking.Status.CONFIRMED


def test_a_refused_check_in_is_explained_in_the_kiosks_language(client, lab, maker):
    machine = MachineFactory(lab=lab, name="Laser cutter", required_training=TrainingFactory())
    booking = booking_now(machine, maker)
    enrolled(client, lab)
    client.post(reverse("members:set_language"), {"language": "nl", "next": screen_url(lab)})
    html = type_in(client, lab, number_of(maker), PIN).content.decode()
    with translation.override("nl"):
        dutch = str(NOT_CERTIFIED_AT_CHECK_IN)
    with translation.override("en"):
        assert dutch != str(NOT_CERTIFIED_AT_CHECK_IN)  # the check proves something
    assert dutch in html
    assert '<html lang="nl">' in html
    booking.refresh_from_db()
    assert booking.status == Booking.Status.CONFIRMED


def test_a_certified_member_checks_in(client, lab, maker):
    training = TrainingFactory()
    machine = MachineFactory(lab=lab, required_training=training)
    CertificationFactory(member=maker, training=training)
    booking = booking_now(machine, maker)
    enrolled(client, lab)
    type_in(client, lab, number_of(maker), PIN)
    booking.refresh_from_db()
    assert booking.status == Booking.Status.CHECKED_IN


def test_csrf_works_on_the_kiosk(lab, machine, maker):
    browser = Client(enforce_csrf_checks=True)
    _kiosk, token = service.enrol(lab=lab, name="One", by=None)
    browser.cookies[COOKIE] = token
    booking = booking_now(machine, maker)
    refused = browser.post(screen_url(lab), {"number": number_of(maker), "pin": PIN})
    assert refused.status_code == 403
    html = browser.get(screen_url(lab)).content.decode()
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)
    response = browser.post(
        screen_url(lab), {"number": number_of(maker), "pin": PIN, "csrfmiddlewaretoken": csrf}
    )
    assert response.status_code == 200
    booking.refresh_from_db()
    assert booking.status == Booking.Status.CHECKED_IN


# --- badges ------------------------------------------------------------------------------------


def test_a_manager_assigns_and_clears_a_badge_of_a_member_of_the_lab(client, lab, machine, manager, maker):
    booking_now(machine, maker, starts_in=60 * 48)
    client.force_login(manager)
    url = reverse("kiosk:badge", args=[lab.slug])
    response = client.post(url, {"member_number": number_of(maker), "badge_number": " 0xBEEF "})
    assert response.status_code == 302
    assert MemberProfile.objects.get(user=maker).badge_number == "0xBEEF"
    client.post(url, {"member_number": number_of(maker), "badge_number": ""})
    assert MemberProfile.objects.get(user=maker).badge_number is None


def test_a_badge_is_refused_for_strangers_duplicates_and_member_numbers(client, lab, machine, manager, maker):
    stranger = UserFactory()
    other = UserFactory()
    booking_now(machine, maker, starts_in=60 * 48)
    booking_now(machine, other, starts_in=60 * 52)
    MemberProfile.objects.filter(user=other).update(badge_number="CARD-1")
    client.force_login(manager)
    url = reverse("kiosk:badge", args=[lab.slug])
    response = client.post(url, {"member_number": number_of(stranger), "badge_number": "CARD-2"})
    assert response.status_code == 400
    response = client.post(url, {"member_number": number_of(maker), "badge_number": "CARD-1"})
    assert response.status_code == 400
    assert "already assigned" in response.content.decode()
    response = client.post(url, {"member_number": number_of(maker), "badge_number": number_of(other)})
    assert response.status_code == 400
    assert MemberProfile.objects.get(user=maker).badge_number is None
    assert MemberProfile.objects.get(user=stranger).badge_number is None


def test_the_manager_overview_links_the_kiosk_page(client, lab, manager):
    client.force_login(manager)
    html = client.get(reverse("booking:manage")).content.decode()
    assert reverse("kiosk:manage", args=[lab.slug]) in html
    page = client.get(reverse("kiosk:manage", args=[lab.slug]))
    assert page.status_code == 200
    assert "Enrol this screen" in page.content.decode()


def test_the_nothing_page_shows_the_next_booking_today_or_the_current_check_in(client, lab, machine, maker):
    noon = dt.datetime(2031, 3, 4, 12, 0, tzinfo=lab.tz)
    later = BookingFactory(
        machine=machine, member=maker, start=noon.replace(hour=15), end=noon.replace(hour=16)
    )
    enrolled(client, lab)
    with time_machine.travel(noon, tick=False):
        html = type_in(client, lab, number_of(maker), PIN).content.decode()
    assert "Your next booking today: Laser cutter at 15:00." in html
    assert "Check-in opens at 14:45." in html
    later.refresh_from_db()
    assert later.status == Booking.Status.CONFIRMED
    Booking.objects.filter(pk=later.pk).update(status=Booking.Status.CHECKED_IN)
    with time_machine.travel(noon.replace(hour=15, minute=10), tick=False):
        html = type_in(client, lab, number_of(maker), PIN).content.decode()
    assert "You are already checked in: Laser cutter until 16:00." in html


def test_a_booking_just_after_midnight_can_be_checked_in_just_before_it(client, lab, machine, maker):
    """Check-in opens before the start: at 23:57 lab time, a booking at 00:02 is open at the kiosk."""
    before_midnight = dt.datetime(2026, 12, 7, 23, 57, tzinfo=lab.tz)
    with time_machine.travel(before_midnight, tick=False):
        booking = booking_now(machine, maker, starts_in=5)
        assert timezone.localtime(booking.start, lab.tz).date() == dt.date(2026, 12, 8)
        assert service.bookings_now(maker, lab).checkable == [booking]
        enrolled(client, lab)
        type_in(client, lab, number_of(maker), PIN)
    booking.refresh_from_db()
    assert booking.status == Booking.Status.CHECKED_IN
