"""Check-in on a phone, in headless Chromium: log in, open the booking from "My bookings", see the
machine's live state (from the lab's board socket, under the site's ASGI application), tap Check in.
"""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.utils import timezone

from devices.live import flush, push_status
from devices.models import MachineStatus
from fablab.booking.models import Booking
from tests.e2e.test_board import WAIT_MS, AsgiServer
from tests.factories import (
    BookingFactory,
    CertificationFactory,
    LabFactory,
    MachineFactory,
    TrainingFactory,
    UserFactory,
)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_a_maker_checks_in_on_a_phone(phone, screenshots):
    from playwright.sync_api import expect

    lab = LabFactory(name="FabLab Test Centre", slug="test-centre")
    training = TrainingFactory(name="Laser safety")
    machine = MachineFactory(lab=lab, name="Laser Alpha", slug="laser-alpha", required_training=training)
    maker = UserFactory(username="maker")
    CertificationFactory(member=maker, training=training)
    # Inside its check-in window: it starts in five minutes.
    start = timezone.now().replace(second=0, microsecond=0) + dt.timedelta(minutes=5)
    booking = BookingFactory(machine=machine, member=maker, start=start, end=start + dt.timedelta(hours=1))
    status = MachineStatus.objects.create(
        machine=machine, state="idle", online=True, enabled=False, status_ts=1
    )

    with AsgiServer() as server:
        phone.goto(f"{server.url}/accounts/login/?next=/bookings/")
        phone.get_by_label("Username").fill("maker")
        phone.get_by_label("Password").fill("pw-test-1234")
        phone.get_by_role("button", name="Log in").click()
        expect(phone).to_have_url(re.compile(r"/bookings/$"))

        phone.locator("li.booking", has_text="Laser Alpha").get_by_role("link", name="Details").click()
        expect(phone).to_have_url(re.compile(rf"/bookings/{booking.pk}/$"))
        expect(phone.get_by_role("heading", level=1)).to_have_text("Laser Alpha")

        # The live card: the state and the interlock from the board's snapshot.
        live = phone.locator("#booking-live")
        expect(live.locator('[data-live="state"]')).to_have_text("Idle", timeout=WAIT_MS)
        expect(live.locator('[data-live="enabled"]')).to_have_text("Locked")
        expect(live.locator('[data-live="time"]')).to_contain_text("Starts in")

        # A change the board pushes shows without a reload.
        phone.evaluate("window.__stillHere = true")
        MachineStatus.objects.filter(pk=status.pk).update(enabled=True, status_ts=2)
        push_status(MachineStatus.objects.select_related("machine__lab").get(pk=status.pk))
        assert flush()
        expect(live.locator('[data-live="enabled"]')).to_have_text("Enabled", timeout=WAIT_MS)
        assert phone.evaluate("window.__stillHere") is True

        # The button fits a phone and is one tap away.
        button = phone.get_by_role("button", name="Check in")
        expect(button).to_be_visible()
        box = button.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390
        phone.screenshot(path=str(screenshots / "check-in-phone.png"), full_page=True)
        button.tap()

        expect(phone.locator(".messages")).to_contain_text("Checked in")
        expect(phone.locator("#status-sentence")).to_contain_text("Checked in at")
        expect(phone.get_by_role("button", name="Check in")).to_have_count(0)
        phone.screenshot(path=str(screenshots / "checked-in-phone.png"), full_page=True)

    booking.refresh_from_db()
    assert booking.status == Booking.Status.CHECKED_IN
    assert booking.check_in_via == Booking.CheckInVia.PAGE and booking.checked_in_by == maker
