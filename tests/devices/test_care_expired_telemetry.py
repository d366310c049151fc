"""Laser-on hours once raw telemetry expired: the hours before come from the hourly downsampling.

Against the real influxd 1.6.7. The readings sit three days before the wall clock's hour and
``INFLUX_RAW_RETENTION`` is set to a day, so they count as older than the raw retention while the
``"raw"`` policy (396 days) keeps them until the test deletes the older hours, as expiry would.
"""

from __future__ import annotations

import datetime as dt
import time

import pytest

from devices import care
from devices.influx import InfluxStore, telemetry_line, telemetry_tags
from devices.influx_retention import HOUR_MS, downsample, ensure_retention
from tests.devices.conftest import make_machine, store_for

pytestmark = pytest.mark.django_db

#: The start of the first hour with readings: three days ago, on the hour.
BASE_MS = (int(time.time() * 1000) // HOUR_MS - 72) * HOUR_MS


def at(hours: float = 0, seconds: float = 0) -> dt.datetime:
    return dt.datetime.fromtimestamp(BASE_MS / 1000 + hours * 3600 + seconds, dt.UTC)


@pytest.fixture
def store(influx, settings):
    settings.INFLUX_URL, settings.INFLUX_DATABASE, settings.INFLUX_TOKEN = influx.url, influx.database, ""
    settings.INFLUX_RAW_RETENTION = "1d"
    s = store_for(influx)
    ensure_retention(s, 396 * 86_400, 0)
    yield s
    s.close()


def write_power(store, machine, start: dt.datetime, values: list[float]) -> None:
    """``laser_power_pct`` readings from ``start``, one a second (as a GRBL bridge polls)."""
    tags = telemetry_tags(lab=machine.lab.slug, machine=machine.slug, machine_type="laser", adapter="grbl")
    start_ms = int(start.timestamp() * 1000)
    store.write_lines(
        [telemetry_line(tags, {"laser_power_pct": v}, start_ms + i * 1000) for i, v in enumerate(values)]
    )


def test_laser_on_hours_keep_the_hours_whose_raw_readings_expired(store):
    machine = make_machine(slug="laser-1", adapter="grbl", interval=1)
    # Hour 0: 600 s on, 300 off, 300 on, from 17 s in; hour 1: 1,200 s on from 1:10; hour 2: 900 s on
    # from 2:30; hour 3: 300 s on; the bridge silent in between.
    write_power(store, machine, at(0, 17), [60.0] * 600 + [0.0] * 300 + [35.5] * 300)
    write_power(store, machine, at(1, 600), [80.0] * 1200 + [0.0] * 60)
    write_power(store, machine, at(2.5), [20.0] * 900 + [0.0] * 60)
    write_power(store, machine, at(3), [90.0] * 300)
    since, until = at(-0.5), at(3.75)
    before = care.laser_on_hours(machine, since, until, store=store)
    assert before * 3600 == pytest.approx(900 + 1200 + 900 + 300, abs=4)

    downsample(store, at(4, 1200))
    # Hours 0 and 1 expire.
    store.query(f'DELETE FROM "telemetry" WHERE time < {BASE_MS + 2 * HOUR_MS}ms')  # noqa: S608
    assert store.first_reading_ms(machine.lab.slug, machine.slug, "laser_power_pct", since, until) == int(
        at(2.5).timestamp() * 1000
    )
    raw_only = store.field_on_seconds(
        machine.lab.slug, machine.slug, "laser_power_pct", since, until, reading_cap_s=1
    )
    assert raw_only == pytest.approx(900 + 300, abs=2)  # what the raw readings alone still give

    assert care.laser_on_hours(machine, since, until, store=store) == pytest.approx(before, abs=1 / 3600)
    # From inside an expired hour: that hour counts whole (it was on from 1:10 only, so as much).
    assert care.laser_on_hours(machine, at(1, 300), until, store=store) * 3600 == pytest.approx(
        1200 + 900 + 300, abs=3
    )
    # From the hour the raw readings start, or on InfluxDB 2.x (the operator's task downsamples): raw only.
    assert care.laser_on_hours(machine, at(2), until, store=store) * 3600 == pytest.approx(raw_only, abs=1)
    v2 = InfluxStore(store.url, token="t", org="o", bucket=store.database)
    try:
        assert care.laser_on_hours(machine, since, until, store=v2) * 3600 == pytest.approx(raw_only, abs=1)
    finally:
        v2.close()
