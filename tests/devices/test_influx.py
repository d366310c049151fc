"""The telemetry store against a real InfluxDB: v1 API directly, v2 API through a loopback shim."""

from __future__ import annotations

import os
import signal
import string
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.influx import (
    InfluxRejected,
    InfluxStore,
    InfluxUnavailable,
    state_line,
    state_point,
    telemetry_line,
    telemetry_point,
    telemetry_tags,
)
from devices.influx_spool import Spool
from tests.support.influx_v2_shim import InfluxV2Shim
from tests.support.influxdb import InfluxDB

TAGS = telemetry_tags(lab="bxl-centre", machine="prusa-1", machine_type="3d-printer", adapter="octoprint")
# A day ago in whole seconds: inside the hub's accepted window (MAX_AGE_MS) on any date.
T0 = (int(time.time()) - 86_400) * 1000

# Tag values and field names with every character line protocol escapes, and then some.
text = st.text(alphabet=string.ascii_letters + string.digits + " ,=\\\"'\t\r\n_-.éß€", max_size=12)
numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**53), max_value=2**53),
)


@given(
    tags=st.fixed_dictionaries({"lab": text, "machine": text, "machine_type": text, "adapter": text}),
    values=st.dictionaries(text.filter(bool), numbers, max_size=6),
    ts=st.integers(min_value=0, max_value=2**42),
)
def test_the_fast_formatter_is_byte_identical_to_influxdb_client_point(tags, values, ts):
    assert telemetry_line(tags, values, ts) == telemetry_point(tags, values, ts).to_line_protocol()


@given(
    tags=st.fixed_dictionaries({"lab": text, "machine": text, "machine_type": text, "adapter": text}),
    state=st.one_of(st.sampled_from(["offline", "idle", "running", "paused", "error"]), text),
    ts=st.integers(min_value=0, max_value=2**42),
)
def test_the_fast_state_line_is_byte_identical_to_influxdb_client_point(tags, state, ts):
    assert state_line(tags, state, ts) == state_point(tags, state, ts).to_line_protocol()


def test_the_hub_on_influxdb_v1_does_not_import_influxdb_client():
    # influxdb-client's imports cost about 0.15 s of the hub's start; v1 writes and every query
    # go over plain HTTP. A fresh interpreter, because this test session imported it already.
    code = (
        "import sys, django; django.setup(); import devices.hub, devices.management.commands.run_hub; "
        "from devices.influx import InfluxStore, state_line; "
        "InfluxStore('http://127.0.0.1:9', database='x'); state_line({'lab': 'a'}, 'idle', 1); "
        "sys.exit(3 if any(m.startswith('influxdb_client') for m in sys.modules) else 0)"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "fablab.settings", "DEBUG": "true"}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]


def test_numbers_are_written_as_floats_and_tags_sorted():
    line = telemetry_line(TAGS, {"temp_nozzle_c": 215, "power_w": 12.5}, T0)
    assert line == (
        "telemetry,adapter=octoprint,lab=bxl-centre,machine=prusa-1,machine_type=3d-printer "
        f"power_w=12.5,temp_nozzle_c=215 {T0}"
    )
    assert "215i" not in line


def test_v1_round_trip(influx):
    store = InfluxStore(influx.url, database=influx.database)
    assert store.api == "v1"
    lines = [
        telemetry_line(TAGS, {"temp_nozzle_c": 200 + i, "temp_bed_c": 60.5}, T0 + i * 1000) for i in range(10)
    ]
    # An integer first and a float later in the same field: no type conflict, because both are floats.
    lines.append(telemetry_line(TAGS, {"temp_nozzle_c": 215.25}, T0 + 10_000))
    lines.append(state_line(TAGS, "running", T0))
    store.write_lines(lines)

    series = store.telemetry_series("bxl-centre", "prusa-1", T0, ["temp_nozzle_c", "temp_bed_c"])
    assert series["temp_nozzle_c"][:3] == [(T0, 200.0), (T0 + 1000, 201.0), (T0 + 2000, 202.0)]
    assert series["temp_nozzle_c"][-1] == (T0 + 10_000, 215.25)
    assert len(series["temp_bed_c"]) == 10
    assert (
        store.telemetry_series("bxl-centre", "prusa-1", T0 + 5000, ["temp_bed_c"])["temp_bed_c"][0][0]
        == T0 + 5000
    )
    assert store.telemetry_series("bxl-centre", "other", T0, ["temp_bed_c"]) == {"temp_bed_c": []}

    tags = influx.query('SHOW TAG KEYS FROM "telemetry"')[0]["values"]
    assert sorted(v[0] for v in tags) == ["adapter", "lab", "machine", "machine_type"]
    state = influx.query('SELECT "state", "code" FROM "machine_state"')[0]
    assert state["values"] == [[T0, "running", 2]]


def test_a_replayed_point_overwrites_itself(influx):
    store = InfluxStore(influx.url, database=influx.database)
    line = telemetry_line(TAGS, {"power_w": 5.0}, T0)
    store.write_lines([line])
    store.write_lines([line, line])
    assert influx.count('SELECT count("power_w") FROM "telemetry"') == 1


def test_v1_errors_are_raised_never_swallowed(influx, tmp_path):
    store = InfluxStore(influx.url, database="does-not-exist")
    with pytest.raises(InfluxUnavailable, match="404"):
        store.write_lines([telemetry_line(TAGS, {"power_w": 1.0}, T0)])
    good = InfluxStore(influx.url, database=influx.database)
    with pytest.raises(InfluxRejected, match="400"):
        good.write_lines(["telemetry,lab=x power_w=notanumber 1"])
    influx.stop()
    with pytest.raises(InfluxUnavailable):
        good.write_lines([telemetry_line(TAGS, {"power_w": 1.0}, T0)])
    assert not good.ping()


def test_ensure_database_creates_it(influx):
    store = InfluxStore(influx.url, database="fresh")
    store.ensure_database()
    store.ensure_database()
    store.write_lines([telemetry_line(TAGS, {"power_w": 1.0}, T0)])
    assert influx.count('SELECT count("power_w") FROM "fresh".."telemetry"') == 1


@pytest.fixture
def shim(influx):
    with InfluxV2Shim(influx.url, token="s3cret-token", org="fablab-org") as s:
        yield s


def test_v2_round_trip_through_the_shim(influx, shim):
    store = InfluxStore(shim.url, token="s3cret-token", org="fablab-org", bucket=influx.database)
    assert store.api == "v2"
    lines = [telemetry_line(TAGS, {"power_w": 100.0 + i}, T0 + i) for i in range(50)]
    store.write_lines(lines)
    # The write went through influxdb-client's v2 write API, at ms precision, with the token.
    assert any(p.startswith("/api/v2/write?") and "precision=ms" in p for _m, p in shim.requests)
    assert influx.count('SELECT count("power_w") FROM "telemetry"') == 50
    series = store.telemetry_series("bxl-centre", "prusa-1", T0, ["power_w"])
    assert series["power_w"][0] == (T0, 100.0) and len(series["power_w"]) == 50


def test_v2_with_a_wrong_token_is_an_error(influx, shim):
    store = InfluxStore(shim.url, token="wrong", org="fablab-org", bucket=influx.database)
    with pytest.raises(InfluxUnavailable, match="401"):
        store.write_lines([telemetry_line(TAGS, {"power_w": 1.0}, T0)])
    assert influx.count('SELECT count("power_w") FROM "telemetry"') == 0


def test_v2_needs_org_and_bucket():
    with pytest.raises(ValueError, match="INFLUX_ORG"):
        InfluxStore("http://127.0.0.1:1", token="t")


def test_the_spool_keeps_batches_until_influxdb_is_back(influx, tmp_path: Path):
    store = InfluxStore(influx.url, database=influx.database)
    spool = Spool(tmp_path / "spool.sqlite3")
    influx.stop(signal.SIGKILL)
    batch1 = [telemetry_line(TAGS, {"power_w": float(i)}, T0 + i) for i in range(100)]
    batch2 = [telemetry_line(TAGS, {"power_w": float(i)}, T0 + i) for i in range(100, 150)]
    for batch in (batch1, batch2):
        with pytest.raises(InfluxUnavailable):
            store.write_lines(batch)
        spool.append(batch)
    with pytest.raises(InfluxUnavailable):
        spool.drain(store.write_lines)
    assert spool.pending() == 150
    spool.close()

    spool = Spool(tmp_path / "spool.sqlite3")  # survives a restart
    assert spool.pending() == 150
    influx.start()
    assert spool.drain(store.write_lines) == 150
    assert spool.pending() == 0
    assert influx.count('SELECT count("power_w") FROM "telemetry"') == 150


def test_the_spool_keeps_refused_batches_apart(influx, tmp_path: Path):
    store = InfluxStore(influx.url, database=influx.database)
    spool = Spool(tmp_path / "spool.sqlite3")
    spool.append(["telemetry,lab=x power_w=oops 1"])
    spool.append([telemetry_line(TAGS, {"power_w": 1.0}, T0)])
    assert spool.drain(store.write_lines) == 1
    assert spool.pending() == 0 and spool.rejected() == 1


# ------------------------------------------------------------------ a bad line in a batch


def test_one_bad_line_never_loses_other_machines_points(influx):
    """A field type conflict and an unparsable line, in a batch of three machines' points."""
    store = InfluxStore(influx.url, database=influx.database)
    # "mood" becomes a string field of the shard that holds T0 (types are per shard).
    store.write_lines([f'telemetry,lab=x,machine=evil mood="grumpy" {T0 - 1000}'])
    machines = [telemetry_tags(lab="bxl", machine=f"m{i}", machine_type="t", adapter="a") for i in range(3)]
    good = [telemetry_line(machines[i % 3], {"power_w": float(i)}, T0 + i) for i in range(300)]
    conflict = telemetry_line(
        telemetry_tags(lab="x", machine="evil", machine_type="t", adapter="a"), {"mood": 1.0}, T0
    )
    garbage = "this is not line protocol"
    batch = [*good[:100], conflict, *good[100:250], garbage, *good[250:]]
    with pytest.raises(InfluxRejected):
        store.write_lines(batch)  # the whole batch, as one request, is refused

    refused = store.write_isolating(batch)

    assert sorted(lines[0] for lines, _error in refused) == sorted([conflict, garbage])
    assert all(len(lines) == 1 and "HTTP 400" in error for lines, error in refused)
    assert any("conflict" in error for _lines, error in refused)
    for i in range(3):
        assert influx.count(f'SELECT count("power_w") FROM "telemetry" WHERE machine = \'m{i}\'') == 100  # noqa: S608


def test_isolating_a_clean_batch_is_one_write(influx):
    store = InfluxStore(influx.url, database=influx.database)
    assert (
        store.write_isolating([telemetry_line(TAGS, {"power_w": float(i)}, T0 + i) for i in range(10)]) == []
    )
    assert store.write_isolating([]) == []
    assert influx.count('SELECT count("power_w") FROM "telemetry"') == 10


def test_isolating_stops_bisecting_when_its_request_budget_runs_out(influx, monkeypatch):
    """Every line bad: the budget bounds the requests; nothing is lost (the rest comes back whole)."""
    import devices.influx

    monkeypatch.setattr(devices.influx, "MAX_ISOLATING_REQUESTS", 10)
    store = InfluxStore(influx.url, database=influx.database)
    bad = [f"telemetry,lab=x power_w=oops{i} {i}" for i in range(1000)]
    refused = store.write_isolating(bad)
    assert sorted(line for lines, _e in refused for line in lines) == sorted(bad)
    assert len(refused) < 30


def test_an_unavailable_server_during_isolation_is_unavailable_not_refused(influx):
    store = InfluxStore(influx.url, database=influx.database)
    influx.stop()
    with pytest.raises(InfluxUnavailable):
        store.write_isolating([telemetry_line(TAGS, {"power_w": 1.0}, T0)])


# ----------------------------------------------------------------------- v1 credentials


@pytest.fixture
def influx_auth(tmp_path: Path):
    server = InfluxDB(tmp_path / "influxdb-auth", auth=("fablab-admin", "p@ss:w/rd 'x'"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_influx_v1_credentials_are_used(influx_auth):
    url = influx_auth.url_with_credentials
    assert "p%40ss%3Aw%2Frd" in url  # percent-encoded in the URL, as INFLUX_URL carries them
    store = InfluxStore(url, database="fresh")
    assert store.url == influx_auth.url  # the password never reaches logs or error messages
    store.ensure_database()
    store.write_lines([telemetry_line(TAGS, {"power_w": float(i)}, T0 + i) for i in range(5)])
    assert influx_auth.count('SELECT count("power_w") FROM "fresh".."telemetry"') == 5
    assert len(store.telemetry_series("bxl-centre", "prusa-1", T0, ["power_w"])["power_w"]) == 5

    explicit = InfluxStore(
        influx_auth.url, database="fresh", username="fablab-admin", password="p@ss:w/rd 'x'"
    )
    explicit.write_lines([telemetry_line(TAGS, {"power_w": 9.0}, T0 + 9)])
    assert influx_auth.count('SELECT count("power_w") FROM "fresh".."telemetry"') == 6


def test_influx_v1_without_or_with_wrong_credentials_is_a_clear_error(influx_auth):
    line = telemetry_line(TAGS, {"power_w": 1.0}, T0)
    anonymous = InfluxStore(influx_auth.url, database=influx_auth.database)
    with pytest.raises(InfluxUnavailable, match=r"HTTP 401 .*credentials: user:password in INFLUX_URL"):
        anonymous.write_lines([line])
    with pytest.raises(InfluxUnavailable, match="401"):
        anonymous.query('SELECT * FROM "telemetry"')
    wrong = InfluxStore(f"http://fablab-admin:nope@127.0.0.1:{influx_auth.port}", database="fablab")
    with pytest.raises(InfluxUnavailable, match="401") as caught:
        wrong.write_lines([line])
    assert "nope" not in str(caught.value)
    # Unavailable, not refused: the hub spools the batch until the operator fixes the credentials.
    assert influx_auth.count('SELECT count("power_w") FROM "telemetry"') == 0
