"""A programme officer in Chromium: logs in, lands on the reports, opens a lab's report, sees its
charts drawn, downloads the CSV (tidy columns), and reads the lab's report on a 375 px phone without
sideways scrolling of the page (only tables and charts scroll inside their holders).
"""

from __future__ import annotations

import csv
import datetime as dt
import re

import pytest
from django.core.cache import cache
from django.utils import timezone

from fablab.reports.cells import COLUMNS
from fablab.reports.models import ExportLog, MachineDay, MemberDay, Subject
from fablab.reports.views import last_complete_quarter
from tests.factories import LabFactory, MachineFactory, ProgrammeFactory, UserFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def a_quarter_of_use(lab, period):
    """A machine busy every afternoon of ``period``, used by twelve makers."""
    machine = MachineFactory(lab=lab, slug="laser", name="Laser One")
    days = [period.first_day + dt.timedelta(days=n) for n in range(period.days())]
    by_hour = [0.0] * 14 + [1.0] * 4 + [0.0] * 6
    MachineDay.objects.bulk_create(
        MachineDay(machine=machine, day=day, open_h=12, booked_h=6, used_h=4, busy_h=3, used_by_hour=by_hour)
        for day in days
    )
    for n in range(12):
        MemberDay.objects.create(
            subject=Subject.objects.create(), lab=lab, machine=machine, day=days[n], kind="use", used_h=2
        )


def log_in(page, url, username):
    page.goto(f"{url}/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill("pw-test-1234")
    page.get_by_role("button", name="Log in").click()


def test_an_officer_opens_a_lab_report_and_downloads_the_csv(live_server, page, browser, screenshots):
    from playwright.sync_api import expect

    cache.clear()
    period = last_complete_quarter(timezone.localdate())
    alpha = LabFactory(name="FabLab Alpha", slug="alpha")
    beta = LabFactory(name="FabLab Beta", slug="beta")
    officer = UserFactory(username="officer")
    ProgrammeFactory(labs=[alpha], officers=[officer])
    ProgrammeFactory(labs=[beta])
    a_quarter_of_use(alpha, period)

    # Log-in lands on the reports: the officer's labs, and nobody else's.
    log_in(page, live_server.url, "officer")
    expect(page).to_have_url(re.compile(r"/reports/$"))
    expect(page.get_by_role("heading", level=1)).to_contain_text("Programme reports")
    comparison = page.locator("table.comparison")
    expect(comparison).to_contain_text("FabLab Alpha")
    expect(comparison).not_to_contain_text("FabLab Beta")
    page.screenshot(path=str(screenshots / "reports-index.png"), full_page=True)

    # The lab's report: both charts drawn by uPlot inside their holders.
    comparison.get_by_role("link", name="FabLab Alpha").click()
    expect(page).to_have_url(re.compile(rf"/reports/alpha/\?period={period}$"))
    expect(page.get_by_role("heading", level=1)).to_contain_text("FabLab Alpha")
    expect(page.locator('.chart-figure[data-chart="utilisation"] .chart-plot canvas')).to_have_count(1)
    expect(page.locator('.chart-figure[data-chart="hours"] .chart-plot canvas')).to_have_count(1)
    box = page.locator('.chart-figure[data-chart="utilisation"] .chart-plot canvas').bounding_box()
    assert box is not None and box["width"] > 100 and box["height"] > 100
    expect(page.locator("table.heatmap td.shade-5").first).to_be_visible()
    page.screenshot(path=str(screenshots / "reports-lab.png"), full_page=True)

    # The CSV download: the tidy columns, and it is logged.
    with page.expect_download() as download_info:
        page.locator('.downloads a[data-format="csv"]').first.click()
    path = download_info.value.path()
    with open(path, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f))
    assert tuple(rows[0]) == COLUMNS
    assert len(rows) > 1 and {row[0] for row in rows[1:]} == {str(period)}
    assert {row[1] for row in rows[1:]} == {"alpha"}
    assert ExportLog.objects.filter(user=officer, fmt="csv", lab="alpha", via="web").exists()

    # On a 375 px phone the page itself never scrolls sideways.
    context = browser.new_context(viewport={"width": 375, "height": 812}, is_mobile=True, has_touch=True)
    context.set_default_timeout(15_000)
    phone = context.new_page()
    try:
        log_in(phone, live_server.url, "officer")
        phone.goto(f"{live_server.url}/reports/alpha/?period={period}")
        expect(phone.locator('.chart-figure[data-chart="hours"] .chart-plot canvas')).to_have_count(1)
        widths = phone.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert widths[0] <= widths[1], widths
        phone.screenshot(path=str(screenshots / "reports-lab-phone.png"), full_page=True)
    finally:
        context.close()
