"""A machine's telemetry charts in headless Chromium, end to end with real servers.

Telemetry already in InfluxDB is drawn by the vendored uPlot when the page
opens; then a reading published on MQTT goes through the hub (``devices.hub.Hub``,
in a thread) → the live status → a private Redis channel layer → the ASGI site
under uvicorn → the board's WebSocket → the chart gains the point without a
reload, and the legend's "now" is the card's number. On a 390 px wide phone
the charts fit the screen.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.utils import timezone

from devices.influx import telemetry_line, telemetry_tags
from devices.models import Bridge, MachineLink
from firmware_bridge import protocol
from tests.devices.board_fixtures import make_board, redis_layer, redis_server  # noqa: F401
from tests.devices.conftest import Publisher, hub_thread, store_for
from tests.e2e.test_board import WAIT_MS, AsgiServer, _log_in
from tests.support.influxdb import InfluxDB
from tests.support.mosquitto import Mosquitto

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PHONE = {"width": 390, "height": 844}


@pytest.fixture
def servers(tmp_path: Path, redis_layer, settings) -> Iterator[dict]:  # noqa: F811
    broker = Mosquitto(tmp_path / "mosquitto")
    broker.start()
    influx = InfluxDB(tmp_path / "influxdb")
    influx.start()
    settings.MQTT_URL = broker.url()
    settings.INFLUX_URL = influx.url
    settings.INFLUX_DATABASE = influx.database
    settings.INFLUX_TOKEN = ""
    try:
        yield {"broker": broker, "influx": influx}
    finally:
        influx.stop()
        broker.stop()


def _history(influx: InfluxDB, machine, now_ms: int) -> None:
    """Ten minutes of a printer's readings, one every 20 s, ending a minute ago."""
    tags = telemetry_tags(
        lab=machine.lab.slug, machine=machine.slug, machine_type="3d-printer", adapter="octoprint"
    )
    start = now_ms - 11 * 60_000
    lines = [
        telemetry_line(tags, {"temp_nozzle_c": 200.0 + i % 5, "power_w": 120.0 + i}, start + 20_000 * i)
        for i in range(31)
    ]
    store = store_for(influx)
    try:
        store.write_lines(lines)
    finally:
        store.close()


CHART_STATE = """key => {
  const c = window.fablabCharts.charts[key];
  const canvas = c.figure.querySelector("canvas");
  const box = canvas.getBoundingClientRect();
  return {
    points: c.series.map(s => s.t.length),
    last: c.series.map(s => s.t[s.t.length - 1]),
    y: {low: c.plot.scales.y.min, high: c.plot.scales.y.max, step: c.y.step},
    serverY: c.serverY,
    ticks: c.plot.axes[1]._splits,
    left: box.left, right: box.right, viewport: window.innerWidth,
  };
}"""


def test_a_reading_published_on_mqtt_extends_the_chart_live_on_a_phone(
    servers, tmp_path, browser, screenshots
):
    from playwright.sync_api import expect

    board = make_board()
    bridge = Bridge.objects.create(slug="bridge-charts", lab=board["lab"])
    MachineLink.objects.create(machine=board["printer"], bridge=bridge, adapter="octoprint")
    now_ms = int(timezone.now().timestamp() * 1000)
    _history(servers["influx"], board["printer"], now_ms)
    publisher = Publisher(servers["broker"])
    context = browser.new_context(
        viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True, locale="en-GB"
    )
    try:
        with AsgiServer() as server, hub_thread(servers["broker"], servers["influx"], tmp_path):
            _log_in(context, server, board["manager"])
            page = context.new_page()
            page.set_default_timeout(WAIT_MS)
            page.goto(f"{server.url}/labs/board-lab/machines/printer-1/live/?minutes=60")
            expect(page.locator("#live-state")).to_have_attribute("data-state", "live")
            page.evaluate("window.__stillHere = true")
            expect(page.locator(".chart-figure")).to_have_count(2)
            expect(page.locator('.chart-figure[data-chart="c"] canvas')).to_have_count(1)
            expect(page.locator('.chart-figure[data-chart="w"] canvas')).to_have_count(1)

            power = page.evaluate(CHART_STATE, "w")
            # The browser's scale is the server's: power starts at 0, in round steps.
            assert power["y"] == {
                "low": 0,
                "high": power["serverY"]["high"],
                "step": power["serverY"]["step"],
            }
            assert power["serverY"]["low"] == 0
            assert all(tick >= 0 for tick in power["ticks"])
            # The chart fits the phone's screen.
            assert power["left"] >= 0 and power["right"] <= power["viewport"] == PHONE["width"]

            before = page.evaluate(CHART_STATE, "c")
            ts = int(timezone.now().timestamp() * 1000)
            publisher.message(
                protocol.Telemetry(
                    ts=ts,
                    sid=str(uuid.uuid4()),
                    seq=1,
                    values={"temp_nozzle_c": 222.4, "power_w": 815.0, "rapid_override_pct": 50.0},
                ),
                "board-lab",
                "printer-1",
            )
            page.wait_for_function(
                "ts => window.fablabCharts.charts.c.series[0].t.slice(-1)[0] === ts", arg=ts, timeout=WAIT_MS
            )
            after = page.evaluate(CHART_STATE, "c")
            assert after["points"][0] == before["points"][0] + 1
            # The card and the legend say the same "now", from the same frame.
            card = page.locator('#machine-printer-1 [data-reading="temp_nozzle_c"]')
            expect(card).to_have_text("222.4 °C")
            legend = page.locator('#chart-c-legend [data-series="temp_nozzle_c"] .series-values')
            expect(legend).to_contain_text("now 222.4 °C")
            # 815 W is above the scale the page opened with: the axis grows, still from 0 in round steps.
            power = page.evaluate(CHART_STATE, "w")
            assert power["y"]["low"] == 0 and power["y"]["high"] >= 815
            step = power["y"]["step"]
            assert round(step / 10 ** math.floor(math.log10(step)), 9) in (1, 2, 5)
            # A name the adapters send that no chart had yet starts a chart, labelled in words.
            expect(page.locator('.chart-figure[data-chart="pct"] figcaption')).to_have_text("Percent (%)")
            expect(page.locator('#chart-pct-legend [data-series="rapid_override_pct"]')).to_contain_text(
                "Rapid override: now 50.0 % (lowest 50.0, highest 50.0)"
            )
            for key in ("c", "w", "pct"):
                state = page.evaluate(CHART_STATE, key)
                assert state["left"] >= 0 and state["right"] <= PHONE["width"], key
            page.screenshot(path=str(screenshots / "machine-charts-phone.png"), full_page=True)
            assert page.evaluate("window.__stillHere") is True
            context.close()
    finally:
        context.close()
        publisher.close()
