"""The booking flow in a real browser: log in, find the machine, book a slot, cancel it."""

from __future__ import annotations

import re

import pytest

from fablab.booking.models import Booking
from tests.factories import CertificationFactory, LabFactory, MachineFactory, TrainingFactory, UserFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_a_certified_maker_books_and_cancels_a_slot(live_server, page, phone, screenshots):
    from playwright.sync_api import expect

    lab = LabFactory(name="FabLab Test Centre", slug="test-centre")
    training = TrainingFactory(name="Laser safety")
    machine = MachineFactory(lab=lab, name="Laser Alpha", slug="laser-alpha", required_training=training)
    MachineFactory(lab=lab, name="Printer Beta", slug="printer-beta")
    maker = UserFactory(username="maker")
    CertificationFactory(member=maker, training=training)

    # Log in, and land back on the labs.
    page.goto(f"{live_server.url}/labs/")
    page.get_by_role("link", name="Log in").click()
    page.get_by_label("Username").fill("maker")
    page.get_by_label("Password").fill("pw-test-1234")
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/labs/$"))

    # Labs → lab → machine.
    page.get_by_role("link", name="FabLab Test Centre").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("FabLab Test Centre")
    card = page.locator("li.machine", has_text="Laser Alpha")
    expect(card).to_contain_text("You are certified")
    card.get_by_role("link", name="Laser Alpha").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Laser Alpha")
    page.screenshot(path=str(screenshots / "week-desktop.png"), full_page=True)

    # Next week comes in through htmx, without a full page load (the marker survives).
    page.evaluate("window.__stillHere = true")
    title = page.locator("#week-title")
    this_week = title.inner_text()
    page.get_by_role("link", name="Next week").click()
    expect(title).not_to_have_text(this_week)
    expect(page).to_have_url(re.compile(r"\?week=\d{4}-\d{2}-\d{2}$"))
    assert page.evaluate("window.__stillHere") is True

    # Click 1: a free slot; click 2: Book.
    slot = page.locator("a.slot.free").first
    start = slot.locator("time").get_attribute("datetime")
    slot.click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Book Laser Alpha")
    page.get_by_label("Purpose (optional)").fill("Acrylic sign")
    page.get_by_role("button", name="Book").click()

    # My bookings shows it.
    expect(page).to_have_url(re.compile(r"/bookings/$"))
    upcoming = page.locator("li.booking", has_text="Laser Alpha")
    expect(upcoming).to_have_count(1)
    expect(upcoming).to_contain_text("Confirmed")
    expect(upcoming).to_contain_text("Acrylic sign")
    booking = Booking.objects.get(member=maker)
    assert booking.start.isoformat() == _as_utc(start)
    assert booking.status == Booking.Status.CONFIRMED

    # Cancel, confirm, and it shows as cancelled.
    upcoming.get_by_role("link", name="Cancel").click()
    page.get_by_role("button", name="Yes, cancel it").click()
    expect(page).to_have_url(re.compile(r"/bookings/$"))
    expect(page.locator("li.booking", has_text="Laser Alpha")).to_contain_text("Cancelled")
    booking.refresh_from_db()
    assert booking.status == Booking.Status.CANCELLED

    # The same week on a phone: days stacked, slots still one tap away.
    phone.context.add_cookies(page.context.cookies())
    phone.goto(f"{live_server.url}/labs/test-centre/laser-alpha/")
    expect(phone.locator("#week")).to_be_visible()
    phone.screenshot(path=str(screenshots / "week-phone.png"), full_page=False)
    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, "the week view must not scroll sideways on a phone"
    assert machine.pk


def _as_utc(iso: str) -> str:
    import datetime as dt

    return dt.datetime.fromisoformat(iso).astimezone(dt.UTC).isoformat()
