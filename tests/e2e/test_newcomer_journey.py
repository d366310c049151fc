"""Issue 11's journey in a real browser: a newcomer signs up, finds the training from the laser's page,
registers, is marked present, then books the laser.

The live server (pytest-django's ``live_server``) runs in a thread of the test process, where
pytest-django has switched the email backend to locmem: the confirmation email is read from
``django.core.mail.outbox``.
"""

from __future__ import annotations

import datetime as dt
import re

import pytest
from allauth.account.models import EmailAddress
from django.contrib.auth import get_user_model
from django.core import mail
from django.core.cache import cache
from django.utils import timezone

from fablab.booking.models import Booking
from fablab.members.models import Certification
from fablab.trainings import attendance, services
from fablab.trainings.models import Registration
from tests.factories import LabFactory, MachineFactory, TrainingFactory, UserFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "kettle-Orbit-42-violet"


def test_a_newcomer_signs_up_gets_trained_and_books_the_laser(live_server, page, screenshots):
    from playwright.sync_api import expect

    cache.clear()  # the login throttle counts in the cache, shared with other tests of this process
    mail.outbox.clear()

    # The scene: a lab, its manager, a laser needing "Laser safety", and a session of it in two days
    # (14:00-16:00, lab time); the session holds the laser with a training booking.
    lab = LabFactory(name="FabLab Test Centre", slug="test-centre")
    manager = UserFactory(username="manager")
    lab.managers.add(manager)
    training = TrainingFactory(name="Laser safety")
    laser = MachineFactory(lab=lab, name="Laser Alpha", slug="laser-alpha", required_training=training)
    day = timezone.localdate(timezone=lab.tz) + dt.timedelta(days=2)
    start = dt.datetime.combine(day, dt.time(14), tzinfo=lab.tz)
    session = services.session_create(
        training=training,
        lab=lab,
        machines=[laser],
        start=start,
        end=start + dt.timedelta(hours=2),
        seats=6,
        by=manager,
    )
    hold = session.holds.get()
    assert hold.kind == Booking.Kind.TRAINING and hold.machine == laser

    # 1. Sign up from the login page.
    page.goto(f"{live_server.url}/accounts/login/")
    page.get_by_role("link", name="Sign up").click()
    expect(page).to_have_url(re.compile(r"/accounts/signup/$"))
    page.get_by_label("Email", exact=True).fill("nora@example.org")
    page.get_by_label("Username", exact=True).fill("nora")
    page.get_by_label("Preferred language").select_option("en")
    page.get_by_label("Date of birth").fill("1990-05-04")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Password (again)").fill(PASSWORD)
    page.get_by_role("button", name="Sign Up").click()
    expect(page).to_have_url(re.compile(r"/accounts/confirm-email/$"))
    nora = get_user_model().objects.get(username="nora")
    assert nora.profile.birth_date == dt.date(1990, 5, 4)
    assert not EmailAddress.objects.get(user=nora).verified

    # Not confirmed yet: the login page refuses.
    page.goto(f"{live_server.url}/accounts/login/")
    page.get_by_label("Username or email address").fill("nora")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text("Please confirm your email address first")

    # 2. The link in the email, then Confirm (a GET alone confirms nothing).
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["nora@example.org"]
    link = re.search(r"https?://\S+", mail.outbox[0].body).group(0)
    assert link.startswith(live_server.url)
    page.goto(link)
    page.get_by_role("button", name="Confirm").click()
    expect(page.locator(".messages")).to_contain_text("confirmed")
    assert EmailAddress.objects.get(user=nora).verified
    # Confirming in the browser that signed up logs in (ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION); log out
    # to come back as a newcomer does, through the login page.
    expect(page).to_have_url(re.compile(r"/labs/$"))
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("button", name="Log out")).to_have_count(0)

    # The laser's page, signed out: the training is named, and logging in leads back here.
    page.goto(f"{live_server.url}/labs/test-centre/laser-alpha/")
    expect(page.locator("#training-needed")).to_contain_text("You need Laser safety: next sessions")
    expect(page.locator("#training-needed").get_by_role("button", name="Register")).to_have_count(0)
    page.locator("p.note").get_by_role("link", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next="))
    page.get_by_label("Username or email address").fill("nora@example.org")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/labs/test-centre/laser-alpha/$"))

    # 3. The laser's page: not certified, the next session offered with a Register button.
    expect(page.get_by_role("heading", level=1)).to_have_text("Laser Alpha")
    expect(page.get_by_text("You are not certified")).to_be_visible()
    needed = page.locator("#training-needed")
    expect(needed).to_contain_text("You need Laser safety: next sessions")
    offered = needed.locator("li", has=page.locator(f'a[href="/trainings/{session.pk}/"]'))
    expect(offered).to_contain_text("FabLab Test Centre")
    page.screenshot(path=str(screenshots / "newcomer-laser-not-certified.png"), full_page=True)
    offered.get_by_role("button", name="Register").click()

    # Back on the laser's page, registered.
    expect(page).to_have_url(re.compile(r"/labs/test-centre/laser-alpha/$"))
    expect(page.locator(".messages")).to_contain_text("You are registered for this session.")
    registration = Registration.objects.get(session=session, member=nora)
    assert registration.status == Registration.Status.REGISTERED

    # The session's page (its date links there) says so too.
    offered.get_by_role("link").click()
    expect(page).to_have_url(re.compile(rf"/trainings/{session.pk}/$"))
    expect(page.locator("p.badge.ok")).to_have_text("You are registered.")
    expect(page.get_by_role("button", name="Cancel my registration")).to_be_visible()

    # 4. The session takes place; the manager marks Nora present (the service the attendance page
    # calls, at a time during the session), which certifies her.
    attendance.mark(
        session=session, member=nora, present=True, by=manager, now=session.start + dt.timedelta(hours=1)
    )
    registration.refresh_from_db()
    assert registration.attended is True
    certification = Certification.objects.get(member=nora, training=training)
    assert certification.revoked_at is None and registration.certification == certification

    # 5. The laser's page again: certified, no training offered, the free slots clickable.
    page.goto(f"{live_server.url}/labs/test-centre/laser-alpha/")
    expect(page.get_by_text("You are certified")).to_be_visible()
    expect(page.locator("#training-needed")).to_have_count(0)
    # Next week: free slots whatever the time of day now.
    title = page.locator("#week-title")
    this_week = title.inner_text()
    page.get_by_role("link", name="Next week").click()
    expect(title).not_to_have_text(this_week)
    slot = page.locator("a.slot.free").first
    slot_start = slot.locator("time").get_attribute("datetime")
    slot.click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Book Laser Alpha")
    page.get_by_label("Purpose (optional)").fill("First cut")
    page.get_by_role("button", name="Book").click()

    expect(page).to_have_url(re.compile(r"/bookings/$"))
    mine = page.locator("li.booking", has_text="Laser Alpha")
    expect(mine).to_have_count(1)
    expect(mine).to_contain_text("Confirmed")
    expect(mine).to_contain_text("First cut")
    page.screenshot(path=str(screenshots / "newcomer-booked.png"), full_page=True)

    booking = Booking.objects.get(member=nora)
    assert booking.machine == laser and booking.kind == Booking.Kind.MEMBER
    assert booking.status == Booking.Status.CONFIRMED
    assert booking.start == dt.datetime.fromisoformat(slot_start)
    assert booking.start >= hold.blocked_until or booking.blocked_until <= hold.start
