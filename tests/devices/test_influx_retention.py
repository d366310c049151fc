"""Retention policies and hourly downsampling against the real influxd 1.6.7 (devices/influx_retention.py).

InfluxDB drops points older than a policy's duration by its own clock, so the hand-written points
sit two days before the wall clock's hour; the passes are given their ``now`` explicitly.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import time

import pytest
from django.core.management import CommandError, call_command

from devices import influx_retention as retention
from devices.influx import InfluxStore, state_line, telemetry_line, telemetry_tags
from devices.influx_retention import HOUR_MS, downsample, downsample_pass, ensure_retention

H = HOUR_MS
M = 60_000
#: The start of the first hour the tests downsample: two days ago, on the hour.
BASE = (int(time.time() * 1000) // H - 48) * H
#: Half past the third hour: hours 0 and 1 are complete, hour 2 is not.
NOW = dt.datetime.fromtimestamp((BASE + 2 * H + 30 * M) / 1000, dt.UTC)
DAYS_396 = 396 * 86_400

M1 = telemetry_tags(lab="bxl", machine="m1", machine_type="laser", adapter="grbl")
M2 = telemetry_tags(lab="bxl", machine="m2", machine_type="printer", adapter="octoprint")


@pytest.fixture
def store(influx):
    s = InfluxStore(influx.url, database=influx.database)
    yield s
    s.close()


@pytest.fixture
def ready(store):
    """The policies, as the hub makes them on a new database."""
    ensure_retention(store, DAYS_396, 0)
    return store


def rps(influx) -> dict[str, tuple[str, bool]]:
    rows = influx.query(f'SHOW RETENTION POLICIES ON "{influx.database}"', database=None)[0]["values"]
    return {name: (duration, default) for name, duration, _shard, _n, default in rows}


def hourly(influx, measurement: str) -> dict[tuple[str, int], dict[str, float]]:
    """``{(machine, hour offset from BASE): fields}`` of an hourly measurement."""
    out = {}
    for block in influx.query(f'SELECT * FROM "hourly"."{measurement}" GROUP BY *'):  # noqa: S608
        columns = block["columns"]
        for row in block["values"]:
            fields = {c: v for c, v in zip(columns[1:], row[1:], strict=True) if v is not None}
            out[(block["tags"]["machine"], (row[0] - BASE) // H)] = fields
    return out


# ------------------------------------------------------------------------------------------ policies


def test_durations_parse_as_influxql_writes_and_shows_them():
    assert retention.parse_duration("396d") == DAYS_396
    assert retention.parse_duration("13w") == 13 * 7 * 86_400
    assert retention.parse_duration("9504h0m0s") == DAYS_396
    assert retention.parse_duration("INF") == retention.parse_duration("inf") == 0
    assert retention.influxql_duration(DAYS_396) == "9504h"
    assert retention.influxql_duration(0) == "INF"
    for bad in ("", "13 months", "396", "30m", "1d2x", "-1d"):
        with pytest.raises(ValueError):
            retention.parse_duration(bad)


def test_a_new_database_gets_raw_as_default_and_hourly_kept(influx, store):
    outcome = ensure_retention(store, DAYS_396, 0)
    assert outcome.held_back is None
    assert rps(influx) == {
        "autogen": ("0s", False),
        "raw": ("9504h0m0s", True),
        "hourly": ("0s", False),
    }
    # Running again changes nothing.
    assert ensure_retention(store, DAYS_396, 0).statements == []
    assert rps(influx)["raw"] == ("9504h0m0s", True)


def test_hourly_points_are_sharded_by_year_unless_kept_shorter(influx, store):
    ensure_retention(store, DAYS_396, 0)
    shards = {
        row[0]: row[2] for row in influx.query("SHOW RETENTION POLICIES", database="fablab")[0]["values"]
    }
    assert shards["hourly"] == "8736h0m0s"
    assert shards["raw"] == "168h0m0s"
    store.query('DROP RETENTION POLICY "hourly" ON "fablab"', database="")
    ensure_retention(store, DAYS_396, 30 * 86_400)
    assert rps(influx)["hourly"] == ("720h0m0s", False)


def test_a_changed_duration_is_applied(influx, ready):
    outcome = ensure_retention(ready, 30 * 86_400, 5 * 365 * 86_400)
    assert [s.split(" DURATION ")[1] for s in outcome.statements] == ["43800h", "720h"]
    assert all(s.startswith("ALTER") for s in outcome.statements)
    assert rps(influx)["raw"] == ("720h0m0s", True)
    assert rps(influx)["hourly"] == ("43800h0m0s", False)


def test_the_hub_writes_and_the_charts_read_the_raw_policy(influx, ready):
    ready.write_lines([telemetry_line(M1, {"power_w": 12.5}, BASE + M)])  # no policy named, as the hub
    assert influx.count('SELECT count("power_w") FROM "raw"."telemetry"') == 1
    start, end = (dt.datetime.fromtimestamp(ms / 1000, dt.UTC) for ms in (BASE, BASE + H))
    assert ready.chart_series("bxl", "m1", start, end) == {"power_w": [(BASE + M, 12.5)]}


def test_an_existing_database_keeps_its_history_visible(influx, store, settings):
    """A database with telemetry in ``autogen``: the hub leaves it the default, the command moves it."""
    store.write_lines([telemetry_line(M1, {"power_w": v}, BASE + i * M) for i, v in enumerate((1, 2, 3))])
    store.write_lines([state_line(M1, "running", BASE)])
    outcome = ensure_retention(store, DAYS_396, 0)
    assert outcome.held_back == "autogen"
    assert rps(influx) == {"autogen": ("0s", True), "raw": ("9504h0m0s", False), "hourly": ("0s", False)}
    since = dt.datetime.fromtimestamp(BASE / 1000, dt.UTC)
    assert len(store.telemetry_series("bxl", "m1", since)["power_w"]) == 3
    # The scheduler's pass does not downsample an empty "raw" while it is not the default.
    assert downsample_pass(NOW, store=store) == 0
    assert not influx.query('SELECT * FROM "hourly"./.*/')

    settings.INFLUX_URL, settings.INFLUX_DATABASE = influx.url, influx.database
    call_command("influx_retention", "--apply", stdout=io.StringIO())
    assert rps(influx)["raw"] == ("9504h0m0s", True)
    assert store.telemetry_series("bxl", "m1", since) == {
        "power_w": [(BASE, 1.0), (BASE + M, 2.0), (BASE + 2 * M, 3.0)]
    }
    tags = influx.query('SELECT * FROM "raw"."machine_state" GROUP BY *')[0]["tags"]
    assert tags == {"adapter": "grbl", "lab": "bxl", "machine": "m1", "machine_type": "laser"}
    # Applying again copies the same points over themselves.
    call_command("influx_retention", "--apply", stdout=io.StringIO())
    assert influx.count('SELECT count("power_w") FROM "raw"."telemetry"') == 3


# -------------------------------------------------------------------------------------- downsampling


def write_two_hours(store: InfluxStore) -> None:
    lines = [
        # m1, hour 0: temp 10, 20, 30 and one power reading; hour 1: temp 40.
        telemetry_line(M1, {"temp_c": 10, "power_w": 100}, BASE + 1 * M),
        telemetry_line(M1, {"temp_c": 20}, BASE + 20 * M),
        telemetry_line(M1, {"temp_c": 30}, BASE + 59 * M + 59_999),
        telemetry_line(M1, {"temp_c": 40}, BASE + H),
        # m2, hour 1 only.
        telemetry_line(M2, {"temp_c": 5}, BASE + H + 10 * M),
        telemetry_line(M2, {"temp_c": 7}, BASE + H + 50 * M),
        # hour 2 is not complete: left alone.
        telemetry_line(M1, {"temp_c": 99}, BASE + 2 * H + 5 * M),
        # States of m1: a state lasts until the next one, at most 15 minutes.
        state_line(M1, "idle", BASE - 5 * M),  # opens hour 0: idle 0–5 min
        state_line(M1, "idle", BASE + 5 * M),  # 5–15
        state_line(M1, "running", BASE + 15 * M),  # 15–25
        state_line(M1, "running", BASE + 25 * M),  # 25–35
        state_line(M1, "idle", BASE + 35 * M),  # 35–50, then nothing is known until 70
        state_line(M1, "error", BASE + H + 10 * M),  # hour 1: 10–25
        state_line(M1, "running", BASE + H + 59 * M),  # one minute, cut at the hour's end
        state_line(M1, "idle", BASE + 2 * H + 5 * M),  # hour 2: not complete
    ]
    store.write_lines(lines)


def test_downsampling_writes_hourly_mean_max_and_state_seconds(influx, ready):
    write_two_hours(ready)
    written, until = downsample(ready, NOW)
    assert until == BASE + 2 * H
    # telemetry: m1 × 2 hours, m2 × 1; states: m1 × 3 hours (the first state came in the hour before)
    assert written == 3 + 3
    assert hourly(influx, "telemetry_1h") == {
        ("m1", 0): {
            "temp_c_mean": 20,
            "temp_c_max": 30,
            "temp_c_count": 3,
            "power_w_mean": 100,
            "power_w_max": 100,
            "power_w_count": 1,
        },
        ("m1", 1): {"temp_c_mean": 40, "temp_c_max": 40, "temp_c_count": 1},
        ("m2", 1): {"temp_c_mean": 6, "temp_c_max": 7, "temp_c_count": 2},
    }
    zero = {"offline_s": 0, "idle_s": 0, "running_s": 0, "paused_s": 0, "error_s": 0}
    assert hourly(influx, "machine_state_1h") == {
        ("m1", -1): zero | {"idle_s": 5 * 60},
        ("m1", 0): zero | {"idle_s": 30 * 60, "running_s": 20 * 60},
        ("m1", 1): zero | {"error_s": 15 * 60, "running_s": 60},
    }
    tags = influx.query('SELECT * FROM "hourly"."telemetry_1h" GROUP BY *')[0]["tags"]
    assert tags == {"adapter": "grbl", "lab": "bxl", "machine": "m1", "machine_type": "laser"}
    assert retention.progress(ready) == BASE + 2 * H
    # Nothing more to do until hour 2 is complete.
    assert downsample(ready, NOW) == (0, BASE + 2 * H)


def test_downsampling_again_writes_the_same_points(influx, ready):
    write_two_hours(ready)
    downsample(ready, NOW)
    first = (hourly(influx, "telemetry_1h"), hourly(influx, "machine_state_1h"))
    since = dt.datetime.fromtimestamp(BASE / 1000, dt.UTC)
    assert downsample(ready, NOW, since=since)[0] == 5
    assert (hourly(influx, "telemetry_1h"), hourly(influx, "machine_state_1h")) == first
    assert influx.count('SELECT count("temp_c_mean") FROM "hourly"."telemetry_1h"') == 3


def test_a_long_stop_catches_up_over_passes_and_skips_empty_stretches(influx, ready):
    hours = (0, 1, 2, 9)  # hours 3–8 have no telemetry
    ready.write_lines([telemetry_line(M1, {"temp_c": h}, BASE + h * H) for h in hours])
    now = dt.datetime.fromtimestamp((BASE + 10 * H + 30 * M) / 1000, dt.UTC)
    assert downsample(ready, now, max_hours=2) == (2, BASE + 2 * H)
    assert downsample(ready, now, max_hours=2) == (1, BASE + 4 * H)
    assert downsample(ready, now, max_hours=2) == (1, BASE + 10 * H)  # jumped to hour 9
    assert downsample(ready, now, max_hours=2) == (0, BASE + 10 * H)
    assert {h: f["temp_c_mean"] for (_m, h), f in hourly(influx, "telemetry_1h").items()} == {
        h: h for h in hours
    }


def test_the_pass_sets_up_policies_but_leaves_a_default_holding_points(influx, store):
    store.write_lines([telemetry_line(M1, {"temp_c": 1}, BASE + M)])  # in autogen: no raw yet
    assert downsample_pass(NOW, store=store) == 0
    assert rps(influx)["raw"] == ("9504h0m0s", False)
    assert rps(influx)["autogen"] == ("0s", True)
    assert not influx.query('SELECT * FROM "hourly"./.*/')


def test_the_pass_on_a_new_database_sets_up_and_downsamples(influx, store):
    assert "raw" not in rps(influx)
    assert downsample_pass(NOW, store=store) == 0  # no telemetry yet
    assert rps(influx)["raw"] == ("9504h0m0s", True)
    write_two_hours(store)
    later = NOW + dt.timedelta(hours=1)  # the cache knows hour 1 is done; hour 2 is complete now
    assert downsample_pass(later, store=store) == 1 + 1  # hour 2: m1's telemetry and states
    assert downsample_pass(later, store=store) == 0


def test_a_stopped_influxd_costs_one_log_line_and_a_later_pass_retries(influx, ready, caplog):
    write_two_hours(ready)
    influx.stop()
    with caplog.at_level(logging.INFO, logger="devices.influx_retention"):
        for seconds in (0, 5, 70):  # the third pass asks again, and fails again
            assert downsample_pass(NOW + dt.timedelta(seconds=seconds), store=ready) == 0
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert "tried again in a minute" in warnings[0].getMessage()
        influx.start()
        assert downsample_pass(NOW + dt.timedelta(seconds=75), store=ready) == 0  # not yet
        assert downsample_pass(NOW + dt.timedelta(seconds=130), store=ready) == 6
    assert "answers again" in caplog.records[-1].getMessage()


def test_with_influxdb_v2_the_pass_does_nothing(influx, ready, settings, caplog, monkeypatch):
    monkeypatch.setattr(retention, "_LOGGED", set())
    write_two_hours(ready)
    settings.INFLUX_URL, settings.INFLUX_DATABASE = influx.url, influx.database
    settings.INFLUX_TOKEN, settings.INFLUX_ORG, settings.INFLUX_BUCKET = "t", "o", "b"
    with caplog.at_level(logging.INFO, logger="devices.influx_retention"):
        assert downsample_pass(NOW) == 0
        assert downsample_pass(NOW) == 0
    assert [r.getMessage() for r in caplog.records] == [
        "InfluxDB v2/v3: downsampling is a task in InfluxDB (docs/telemetry-retention.md)"
    ]
    assert not influx.query('SELECT * FROM "hourly"./.*/')


@pytest.mark.django_db
def test_the_scheduler_runs_the_downsample_step(influx, ready, settings):
    from devices.scheduler import Scheduler

    settings.INFLUX_URL, settings.INFLUX_DATABASE = influx.url, influx.database
    write_two_hours(ready)
    assert Scheduler().run_pass(NOW)["downsample"] == 6


def test_the_command_shows_and_downsamples(influx, ready, settings):
    settings.INFLUX_URL, settings.INFLUX_DATABASE = influx.url, influx.database
    ready.write_lines([telemetry_line(M1, {"temp_c": 1}, BASE + M)])
    out = io.StringIO()
    call_command("influx_retention", "--downsample", stdout=out)
    text = out.getvalue()
    assert "raw: 9504h (default)" in text
    assert "hourly: INF" in text
    assert "downsampled until: " in text
    assert influx.count('SELECT count("temp_c_mean") FROM "hourly"."telemetry_1h"') == 1


def test_a_wrong_duration_stops_the_command_naming_the_setting(settings):
    settings.INFLUX_RAW_RETENTION = "13 months"
    with pytest.raises(CommandError, match="INFLUX_RAW_RETENTION: '13 months' is not a duration"):
        call_command("influx_retention", stdout=io.StringIO())


L1 = telemetry_tags(lab="bxl", machine="l1", machine_type="laser", adapter="grbl")


def write_laser(store: InfluxStore, start_ms: int, values: list[float], every_s: int = 1) -> None:
    """``laser_power_pct`` readings of l1 from ``start_ms``, one every ``every_s`` seconds."""
    store.write_lines(
        [
            telemetry_line(L1, {"laser_power_pct": v}, start_ms + i * every_s * 1000)
            for i, v in enumerate(values)
        ]
    )


def test_downsampling_keeps_each_hours_laser_on_seconds_as_the_raw_estimate_gives_them(influx, ready):
    write_two_hours(ready)
    # Hour 0 at 1 s, from 17 s in: 600 s on, 300 off, 300 on; silence (bridge gone); 120 s on from 35:17.
    write_laser(ready, BASE + 17_000, [60.0] * 600 + [0.0] * 300 + [35.5] * 300)
    write_laser(ready, BASE + 35 * M + 17_000, [80.0] * 120 + [0.0] * 60)
    # Hour 1 at 2 s: 30 min on, 30 min off.
    write_laser(ready, BASE + H, [50.0] * 900 + [0.0] * 900, every_s=2)
    written, _until = downsample(ready, NOW)
    assert written == 5 + 3  # the on-seconds are fields of the laser's telemetry_1h points, not points more

    rows = hourly(influx, "telemetry_1h")
    for h in (0, 1):
        start, end = (dt.datetime.fromtimestamp((BASE + k * H) / 1000, dt.UTC) for k in (h, h + 1))
        raw = ready.field_on_seconds("bxl", "l1", "laser_power_pct", start, end, reading_cap_s=3600)
        assert rows[("l1", h)]["laser_power_pct_on_s"] == pytest.approx(raw)
    assert rows[("l1", 0)]["laser_power_pct_on_s"] == pytest.approx(1020, abs=3)
    assert rows[("l1", 0)]["laser_power_pct_on_count"] == 1020
    assert rows[("l1", 1)]["laser_power_pct_on_s"] == pytest.approx(1800, abs=3)
    assert rows[("l1", 1)]["laser_power_pct_on_count"] == 900
    assert not any("laser_power_pct_on_s" in rows[("m1", h)] for h in (0, 1))  # no laser: no on-seconds

    # Read back, bounded by the link's interval per reading on: hour 1's 2 s readings count 1 s each.
    on = retention.hourly_on_seconds
    assert on(ready, "bxl", "l1", "laser_power_pct", BASE, BASE + 2 * H, reading_cap_s=10) == pytest.approx(
        rows[("l1", 0)]["laser_power_pct_on_s"] + rows[("l1", 1)]["laser_power_pct_on_s"]
    )
    assert on(ready, "bxl", "l1", "laser_power_pct", BASE, BASE + 2 * H, reading_cap_s=1) == pytest.approx(
        1020 + 900
    )
    assert on(
        ready, "bxl", "l1", "laser_power_pct", BASE + H, BASE + 2 * H, reading_cap_s=10
    ) == pytest.approx(1800, abs=3)
    assert on(ready, "bxl", "l2", "laser_power_pct", BASE, BASE + 2 * H, reading_cap_s=10) == 0.0


def test_without_an_hourly_policy_no_hour_was_kept(store):
    assert (
        retention.hourly_on_seconds(store, "bxl", "l1", "laser_power_pct", BASE, BASE + H, reading_cap_s=1)
        == 0
    )
