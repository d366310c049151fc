"""The floor board page and a machine's live page: who sees what, the charts, the no-store fallback."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from devices import charts
from devices.influx import telemetry_line, telemetry_tags
from devices.models import Command
from tests.devices.board_fixtures import make_board
from tests.devices.conftest import store_for
from tests.support.mosquitto import free_port

pytestmark = pytest.mark.django_db


@pytest.fixture
def board():
    return make_board()


@pytest.fixture
def no_store(settings):
    """No InfluxDB database named: the store is not configured."""
    settings.INFLUX_DATABASE = ""
    settings.INFLUX_TOKEN = ""


@pytest.fixture
def store_down(settings):
    settings.INFLUX_URL = f"http://127.0.0.1:{free_port()}"
    settings.INFLUX_DATABASE = "fablab"
    settings.INFLUX_TOKEN = ""


@pytest.fixture
def store(influx, settings):
    """The private InfluxDB (``influx`` from conftest) as the site's telemetry store."""
    settings.INFLUX_URL = influx.url
    settings.INFLUX_DATABASE = influx.database
    settings.INFLUX_TOKEN = ""
    return store_for(influx)


def write_telemetry(store, machine, points: dict[str, list[tuple[dt.datetime, float]]]) -> None:
    tags = telemetry_tags(
        lab=machine.lab.slug, machine=machine.slug, machine_type="3d-printer", adapter="octoprint"
    )
    lines = []
    for name, series in points.items():
        for when, value in series:
            lines.append(telemetry_line(tags, {name: value}, int(when.timestamp() * 1000)))
    store.write_lines(lines)


def bookings_of(html: str, machine: str) -> str:
    """The text of a card's bookings list."""
    card = html.split(f'id="machine-{machine}"')[1]
    return card.split('data-field="bookings"')[1].split("</dl>")[0]


def board_url(lab="board-lab"):
    return reverse("devices:board", args=[lab])


def machine_url(machine="printer-1", lab="board-lab"):
    return reverse("devices:machine", args=[lab, machine])


def test_the_board_needs_a_login(client, board):
    response = client.get(board_url())
    assert response.status_code == 302
    assert reverse("members:login") in response["Location"]
    assert client.get(machine_url()).status_code == 302


def test_an_unknown_lab_or_machine_is_404(client, board):
    client.force_login(board["maker_a"])
    assert client.get(board_url("nope")).status_code == 404
    assert client.get(machine_url("nope")).status_code == 404


def test_a_manager_sees_every_card_with_names_and_command_buttons(client, board):
    client.force_login(board["manager"])
    html = client.get(board_url()).content.decode()
    assert "<h1>Floor board · Board lab</h1>" in html
    assert 'id="machine-printer-1"' in html and 'id="machine-laser-1"' in html
    assert "state-running" in html and "state-idle" in html
    assert "karim-bracket.gcode" in html
    assert 'value="42.0"' in html  # the progress bar
    assert "210.5 °C" in html
    assert "Karim Other" in html and "Anouk Maker" in html
    assert 'class="badge alert alert-silent">No telemetry<' in html.split('id="machine-laser-1"')[1]
    assert html.count('class="commands"') == 2
    for action in ("pause", "resume", "cancel", "enable", "disable"):
        assert f'value="{action}"' in html
    assert 'data-ws-path="/ws/labs/board-lab/"' in html
    assert "devices/board.js" in html


def test_a_maker_sees_a_read_only_board_that_names_no_one_else(client, board):
    client.force_login(board["maker_a"])
    response = client.get(board_url())
    assert response.status_code == 200
    html = response.content.decode()
    for other in ("Karim", "Other", "maker-b", "Mia Manager", "karim-bracket"):
        assert other not in html
    assert 'class="commands"' not in html
    assert "Booked" in bookings_of(html, "printer-1")  # held by someone else
    assert "You" in bookings_of(html, "laser-1")  # the next booking is theirs
    assert "You" not in bookings_of(html, "printer-1")


def test_the_machine_page_says_when_there_is_no_telemetry_store(client, board, no_store):
    client.force_login(board["maker_a"])
    html = client.get(machine_url()).content.decode()
    assert "No telemetry store is configured" in html
    assert "<svg" not in html


def test_the_machine_page_survives_a_store_that_is_down(client, board, store_down):
    client.force_login(board["manager"])
    response = client.get(machine_url())
    assert response.status_code == 200
    assert "The telemetry store did not answer" in response.content.decode()


def test_the_machine_page_charts_the_last_hours_from_influxdb(client, board, store):
    now = timezone.now()
    recent = [now - dt.timedelta(minutes=30) + dt.timedelta(seconds=10 * i) for i in range(10)]
    write_telemetry(
        store,
        board["printer"],
        {
            "temp_nozzle_c": [(t, 200.0 + i) for i, t in enumerate(recent)],
            "temp_nozzle_target_c": [(t, 210.0) for t in recent],
            "power_w": [
                (now - dt.timedelta(hours=2), 120.0),
                (now - dt.timedelta(hours=2, seconds=-10), 130.0),
            ],
        },
    )
    write_telemetry(store, board["laser"], {"power_w": [(recent[0], 999.0), (recent[1], 998.0)]})
    client.force_login(board["maker_a"])
    html = client.get(machine_url() + "?hours=3").content.decode()
    assert html.count('<svg class="chart"') == 2  # °C and W
    assert "<strong>Temperatures</strong>" in html and "<strong>Power</strong>" in html
    assert "Nozzle target" in html
    assert "highest 209.0" in html or "highest 20" in html  # the legend states the range
    assert "999" not in html  # the laser's readings stay on the laser's page
    assert 'aria-current="page"' in html
    # The last hour only: the power readings of two hours ago are out.
    html = client.get(machine_url() + "?hours=1").content.decode()
    assert html.count('<svg class="chart"') == 1
    assert "<strong>Temperatures</strong>" in html and "<strong>Power</strong>" not in html


def test_a_long_period_is_averaged_into_a_few_hundred_points(board, store):
    from devices.views import CHART_POINTS, telemetry_series

    now = timezone.now().replace(microsecond=0)
    start = now - dt.timedelta(hours=3)
    readings = [(start + dt.timedelta(seconds=5 * i), float(i % 7)) for i in range(3 * 720)]
    write_telemetry(store, board["printer"], {"power_w": readings})
    series = telemetry_series(board["printer"], start, now)
    points = series["power_w"]
    assert CHART_POINTS // 2 <= len(points) <= CHART_POINTS + 2
    assert all(0.0 <= value <= 6.0 for _, value in points)
    assert [ts for ts, _ in points] == sorted(ts for ts, _ in points)
    assert abs(sum(v for _, v in points) / len(points) - 3.0) < 0.2


def test_a_quiet_machine_says_so_and_a_bad_period_falls_back(client, board, store):
    client.force_login(board["maker_a"])
    response = client.get(machine_url() + "?hours=abc")
    html = response.content.decode()
    assert response.context["hours"] == 3
    assert "No telemetry in this period." in html


def test_the_command_audit_is_for_managers(client, board, no_store):
    now = timezone.now()
    Command.objects.create(
        machine=board["printer"],
        action="pause",
        issued_by=board["manager"],
        issued_at=now,
        expires_at=now + dt.timedelta(seconds=30),
        result=Command.Result.FAILED,
        error_code="invalid_state",
        error_message="not running",
        answered_at=now,
    )
    client.force_login(board["manager"])
    html = client.get(machine_url()).content.decode()
    assert 'id="command-audit"' in html
    audit = html.split('id="command-audit"')[1]
    assert "Mia Manager" in audit and "<td>Pause</td>" in audit and "Refused: not running" in audit
    client.force_login(board["maker_a"])
    html = client.get(machine_url()).content.decode()
    assert 'id="command-audit"' not in html and "Mia Manager" not in html


# ------------------------------------------------------------------ the SVG charts


def test_charts_group_series_by_unit_and_drop_empty_ones():
    start = dt.datetime(2026, 1, 1, 10, tzinfo=dt.UTC)
    end = start + dt.timedelta(hours=1)
    built = charts.build_charts(
        {
            "temp_bed_c": [(start, 60), (end, 61)],
            "temp_nozzle_c": [(start.isoformat(), 200), (int(end.timestamp() * 1000), 210)],
            "power_w": [(start, None), (end, "x")],
            "custom_thing": [(start, 1), (end, 2)],
        },
        start=start,
        end=end,
    )
    assert [(c.title, c.unit, [s.name for s in c.series]) for c in built] == [
        ("Temperatures", "°C", ["temp_bed_c", "temp_nozzle_c"]),
        ("custom_thing", "", ["custom_thing"]),
    ]
    assert built[0].series[1].last == 210 and built[0].series[1].low == 200


def test_a_long_silence_breaks_the_line():
    start = dt.datetime(2026, 1, 1, 10, tzinfo=dt.UTC)
    ms = int(start.timestamp() * 1000)
    points = [(ms + i * 1000, float(i)) for i in range(10)] + [
        (ms + 3_600_000 + i * 1000, 1.0) for i in range(10)
    ]
    (chart,) = charts.build_charts({"power_w": points}, start=start, end=start + dt.timedelta(hours=2))
    path = str(chart.svg).split(' d="')[1].split('"')[0]
    assert path.count("M") == 2


def test_chart_text_is_escaped():
    start = dt.datetime(2026, 1, 1, 10, tzinfo=dt.UTC)
    (chart,) = charts.build_charts(
        {"<script>": [(start, 1.0), (start + dt.timedelta(minutes=1), 2.0)]}, start=start, end=start
    )
    assert "<script>" not in str(chart.svg)
    assert "&lt;script&gt;" in str(chart.svg)


def test_many_points_are_thinned():
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    ms = int(start.timestamp() * 1000)
    points = charts.clean_points([(ms + i, float(i)) for i in range(10_000)])
    assert len(points) <= charts.MAX_POINTS + 1
    assert points[0] == (ms, 0.0) and points[-1] == (ms + 9_999, 9_999.0)
