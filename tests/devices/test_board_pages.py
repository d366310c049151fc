"""The floor board page and a machine's live page: who sees what, the charts, the no-store fallback."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from django.contrib.staticfiles import finders
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from devices import capabilities
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
    assert 'class="chart-figure"' not in html
    assert page_charts(html)["live"] is False  # no charts grow live under that sentence


def test_the_machine_page_survives_a_store_that_is_down(client, board, store_down):
    client.force_login(board["manager"])
    response = client.get(machine_url())
    assert response.status_code == 200
    assert "The telemetry store did not answer" in response.content.decode()


def page_charts(html: str) -> dict:
    """The data the page hands charts.js (``json_script`` ``telemetry-data``)."""
    raw = html.split('<script id="telemetry-data" type="application/json">')[1].split("</script>")[0]
    return json.loads(raw)


def test_the_machine_page_charts_the_chosen_period_from_influxdb(client, board, store):
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
    html = client.get(machine_url() + "?minutes=180").content.decode()
    assert html.count('class="chart-figure"') == 2  # °C and W
    assert "<strong>Temperatures</strong>" in html and "<strong>Power</strong>" in html
    assert "Nozzle target" in html
    # The legend states now (the live status's reading, as on the card), lowest and highest.
    assert "now 210.5 °C (lowest 20" in html
    assert "999" not in html  # the laser's readings stay on the laser's page
    assert 'aria-current="page"' in html and "Last 3 hours" in html
    data = page_charts(html)
    assert [c["unit"] for c in data["charts"]] == ["°C", "W"]
    assert data["period_ms"] == 180 * 60_000 and data["live"] is True
    # The last hour only: the power readings of two hours ago are out.
    html = client.get(machine_url() + "?minutes=60").content.decode()
    assert html.count('class="chart-figure"') == 1
    assert "<strong>Temperatures</strong>" in html and "<strong>Power</strong>" not in html
    # Old links with ?hours= still choose the period.
    assert client.get(machine_url() + "?hours=3").context["minutes"] == 180


def test_the_window_starts_at_the_first_reading_not_at_the_period_start(client, board, store):
    now = timezone.now().replace(microsecond=0)
    first = now - dt.timedelta(minutes=10)
    write_telemetry(
        store,
        board["printer"],
        {"feed_mm_min": [(first + dt.timedelta(seconds=20 * i), 1500.0) for i in range(30)]},
    )
    client.force_login(board["manager"])
    (chart,) = page_charts(client.get(machine_url() + "?minutes=1440").content.decode())["charts"]
    # A day's period, ten minutes of data: the chart spans the ten minutes (InfluxDB's buckets start
    # on whole multiples of their width, 288 s for a day, so the first bucket may start a little earlier).
    period_start_ms = int((now - dt.timedelta(hours=24)).timestamp() * 1000)
    assert chart["start"] > period_start_ms + 23 * 3600_000
    assert int(first.timestamp() * 1000) - 288_000 <= chart["start"] <= int(first.timestamp() * 1000)
    assert chart["y"] == {"low": 0, "high": 1500, "step": 500}  # feed never below 0, round ticks


def test_the_legend_now_is_the_number_on_the_card_above(client, board, store):
    # The live status holds 210.5 °C (the card's number); the chart's last average is 204.
    now = timezone.now()
    write_telemetry(
        store,
        board["printer"],
        {"temp_nozzle_c": [(now - dt.timedelta(minutes=5 - i), 200.0 + i) for i in range(5)]},
    )
    client.force_login(board["manager"])
    html = client.get(machine_url()).content.decode()
    card = html.split('id="machine-printer-1"')[1].split("</li>")[0]
    assert '<dd data-reading="temp_nozzle_c">210.5 °C</dd>' in card
    legend = html.split('data-series="temp_nozzle_c"')[1].split("</li>")[0]
    assert "now 210.5 °C (lowest 200.0, highest 204.0)" in legend
    (chart,) = page_charts(html)["charts"]
    assert chart["series"][0]["now"] == 210.5


def test_the_machine_page_speaks_the_users_language(client, board, store, settings):
    now = timezone.now()
    write_telemetry(
        store,
        board["printer"],
        {
            "rapid_override_pct": [
                (now - dt.timedelta(minutes=2), 100.0),
                (now - dt.timedelta(minutes=1), 50.0),
            ]
        },
    )
    client.force_login(board["manager"])
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "nl"
    html = client.get(machine_url()).content.decode()
    assert '<html lang="nl">' in html
    assert "rapid_override_pct<" not in html and ">rapid_override_pct" not in html
    data = page_charts(html)
    assert data["strings"]["legend"].startswith("nu ")
    (chart,) = data["charts"]
    assert chart["unit"] == "%" and chart["y"]["low"] == 0


def test_the_chart_library_is_served_by_the_site_itself(client, board, no_store):
    client.force_login(board["maker_a"])
    html = client.get(machine_url()).content.decode()
    for path in (
        "vendor/uplot/uPlot.iife.min.js",
        "vendor/uplot/uPlot.min.css",
        "devices/charts.js",
        "devices/charts.css",
    ):
        assert f"/static/{path}" in html
        found = finders.find(path)
        assert found, f"{path} is not among the site's static files"
    scripts = [tag.split('src="')[1].split('"')[0] for tag in html.split("<script")[1:] if 'src="' in tag]
    assert scripts and all(src.startswith("/static/") for src in scripts)  # no CDN
    links = [tag.split('href="')[1].split('"')[0] for tag in html.split("<link")[1:] if 'href="' in tag]
    assert all(href.startswith("/") for href in links)
    vendor = Path(finders.find("vendor/uplot/uPlot.iife.min.js"))
    version = (vendor.parent / "VERSION").read_text().split()[1]
    assert f"(v{version})" in vendor.read_text()[:200]  # VERSION names the file that is there
    assert (vendor.parent / "LICENSE").read_text().startswith("The MIT License")


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
    for query in ("?minutes=abc", "?minutes=7", "?hours=abc"):
        response = client.get(machine_url() + query)
        html = response.content.decode()
        assert response.context["minutes"] == 60
        assert "No telemetry in this period." in html
        assert page_charts(html)["live"] is True  # charts may start from live readings


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
    # The ack code explained in the page's language, the bridge's words after it as detail.
    explained = escape(capabilities.ack_explanation("invalid_state"))
    assert "Mia Manager" in audit and "<td>Pause</td>" in audit
    assert f"Refused: {explained} (not running)" in audit
    client.force_login(board["maker_a"])
    html = client.get(machine_url()).content.decode()
    assert 'id="command-audit"' not in html and "Mia Manager" not in html
