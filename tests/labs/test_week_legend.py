"""The week page's legend names the style of the past slots too."""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from tests.factories import MachineFactory

pytestmark = pytest.mark.django_db

BRUSSELS = zoneinfo.ZoneInfo("Europe/Brussels")


def slot_rule_selectors(state: str) -> set[str]:
    """The selectors styled together with ``.slot.<state>`` in the site's stylesheet."""
    css = (Path(settings.BASE_DIR) / "fablab" / "static" / "fablab" / "fablab.css").read_text()
    for selectors, _body in re.findall(r"([^{}]+)\{([^{}]*)\}", css):
        names = {name.strip() for name in selectors.split(",")}
        if f".slot.{state}" in names:
            return names
    return set()


def test_the_past_slots_share_the_unavailable_key_of_the_legend(client):
    """Last week's slots are all "past", drawn like the unavailable ones: one key names both."""
    machine = MachineFactory()
    last_week = timezone.localdate(timezone=BRUSSELS) - dt.timedelta(days=7)
    url = reverse("labs:machine", args=[machine.lab.slug, machine.slug])
    html = client.get(url, {"week": last_week.isoformat()}).content.decode()
    legend, days = html.split('class="days"', 1)

    assert 'class="slot past"' in days
    assert ".slot.closed" in slot_rule_selectors("past")  # else "past" needs a key of its own
    assert re.search(r'class="key slot closed">Past or unavailable<', legend)
