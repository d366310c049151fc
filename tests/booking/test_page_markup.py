"""Markup of the booking pages: aria-describedby names ids that exist; one date style per page."""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from html.parser import HTMLParser
from urllib.parse import quote

import pytest
from django.urls import reverse
from django.utils import timezone

from fablab.members.models import CertificationAudit
from tests.factories import CertificationFactory, LabFactory, MachineFactory, TrainingFactory, UserFactory

pytestmark = pytest.mark.django_db

BRUSSELS = zoneinfo.ZoneInfo("Europe/Brussels")


class Ids(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.described_by: list[tuple[str, str]] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.append(attrs["id"])
        if attrs.get("aria-describedby"):
            for target in attrs["aria-describedby"].split():
                self.described_by.append((attrs.get("name") or tag, target))


def missing_targets(html: str) -> list[tuple[str, str]]:
    parser = Ids()
    parser.feed(html)
    assert parser.described_by, "no aria-describedby at all: the check would prove nothing"
    return [(field, target) for field, target in parser.described_by if target not in parser.ids]


def book_page(client, *, post: dict | None = None) -> str:
    machine = MachineFactory()
    start = dt.datetime.combine(
        timezone.localdate(timezone=BRUSSELS) + dt.timedelta(days=2), dt.time(10), tzinfo=BRUSSELS
    )
    client.force_login(UserFactory())
    url = reverse("booking:book", args=[machine.pk]) + "?start=" + quote(start.isoformat())
    if post is None:
        return client.get(url).content.decode()
    return client.post(url, {"start": start.isoformat(), **post}).content.decode()


def test_the_purpose_fields_description_exists_on_the_booking_form(client):
    html = book_page(client)
    assert 'aria-describedby="id_purpose_helptext"' in html
    assert missing_targets(html) == []


def test_with_errors_every_aria_describedby_id_exists_on_the_booking_form(client):
    html = book_page(client, post={"duration": "60", "purpose": "x" * 301})
    assert "id_purpose_error" in html  # the error is described too
    assert missing_targets(html) == []


def test_every_aria_describedby_id_exists_on_the_certifications_page(client):
    lab = LabFactory()
    manager = UserFactory()
    lab.managers.add(manager)
    MachineFactory(lab=lab, required_training=TrainingFactory())
    client.force_login(manager)
    html = client.get(reverse("booking:certifications")).content.decode()
    assert missing_targets(html) == []
    invalid = client.post(reverse("booking:certifications"), {"member": "nobody-at-all"}).content.decode()
    assert missing_targets(invalid) == []


SHORT_DATE = re.compile(r"\b\d{2}/\d{2}/\d{4}\b")


def test_the_certifications_page_writes_every_date_one_way(client):
    lab = LabFactory()
    manager = UserFactory()
    lab.managers.add(manager)
    training = TrainingFactory()
    MachineFactory(lab=lab, required_training=training)
    expires = dt.datetime(2026, 12, 7, 18, 0, tzinfo=BRUSSELS)
    cert = CertificationFactory(training=training, granted_by=manager, expires_at=expires)
    CertificationAudit.objects.create(
        action=CertificationAudit.Action.GRANT,
        member=cert.member,
        training=training,
        actor=manager,
        expires_at=expires,
    )
    client.force_login(manager)
    with timezone.override(BRUSSELS):
        html = client.get(reverse("booking:certifications"), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "7 December 2026" in html
    assert SHORT_DATE.findall(html) == []


def test_the_week_pages_legend_lists_every_style_of_its_upcoming_slots(client):
    """The laser's week beyond its horizon is all "Unavailable": the legend must say what that grey is."""
    laser = MachineFactory(max_days_ahead=1)
    next_week = timezone.localdate(timezone=BRUSSELS) + dt.timedelta(days=7)
    url = reverse("labs:machine", args=[laser.lab.slug, laser.slug])
    html = client.get(url, {"week": next_week.isoformat()}).content.decode()
    legend, days = html.split('class="days"', 1)
    used = set(re.findall(r'class="slot (\w+)"', days)) - {"past"}  # past days say "Past" in words
    assert "closed" in used
    assert used <= set(re.findall(r'class="key slot (\w+)"', legend))
    assert re.search(r'class="key slot closed">Past or unavailable<', legend)
