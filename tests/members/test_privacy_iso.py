"""``fablab.members.privacy.iso``: how every part of a member's export writes its dates and times."""

import datetime as dt
import zoneinfo

from fablab.members.privacy import iso


def test_a_time_is_written_in_utc():
    brussels = dt.datetime(2026, 7, 1, 14, 30, tzinfo=zoneinfo.ZoneInfo("Europe/Brussels"))
    assert iso(brussels) == "2026-07-01T12:30:00+00:00"


def test_a_date_is_written_as_it_is():
    assert iso(dt.date(2010, 2, 3)) == "2010-02-03"


def test_nothing_stays_nothing():
    assert iso(None) is None
