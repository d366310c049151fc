"""The live floor board in headless Chromium, end to end with real servers:

a status published on MQTT → the hub (``devices.hub.Hub``, in a thread) → a
private Redis channel layer → the ASGI site under uvicorn → the browser's
WebSocket → the card changes without a reload. Then a lab manager presses a
command button, a stand-in bridge acknowledges it, and the ack shows live.
"""

from __future__ import annotations

import gc
import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from django.test import Client
from django.utils import timezone

from devices.models import Bridge, MachineLink
from firmware_bridge import protocol
from tests.devices.board_fixtures import make_board, redis_layer, redis_server  # noqa: F401
from tests.devices.conftest import WAIT_S, Publisher, hub_thread
from tests.support.influxdb import InfluxDB
from tests.support.mosquitto import Mosquitto, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

WAIT_MS = 30_000


class AsgiServer:
    """The site's ASGI application (HTTP and WebSockets) under uvicorn, in a thread of the test process."""

    def __init__(self) -> None:
        import uvicorn
        from channels.routing import ProtocolTypeRouter
        from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
        from django.core.asgi import get_asgi_application

        from fablab.asgi import application

        app = ProtocolTypeRouter(
            {
                # Static files from the apps' folders, as runserver does (no collectstatic in tests).
                "http": ASGIStaticFilesHandler(get_asgi_application()),
                "websocket": application.application_mapping["websocket"],
            }
        )
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, lifespan="off", log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> AsgiServer:
        self.thread.start()
        deadline = time.monotonic() + WAIT_S
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(WAIT_S)
        # Django under ASGI runs each request's sync code in a short-lived thread; the database
        # connection left in such a thread closes when it is collected. Collect it now, so that
        # the test database (PostgreSQL) can be dropped at the end of the run.
        gc.collect()


@pytest.fixture
def servers(tmp_path: Path, redis_layer) -> Iterator[dict]:  # noqa: F811
    broker = Mosquitto(tmp_path / "mosquitto")
    broker.start()
    influx = InfluxDB(tmp_path / "influxdb")
    influx.start()
    try:
        yield {"broker": broker, "influx": influx, "redis": redis_layer}
    finally:
        influx.stop()
        broker.stop()


class FakeBridge:
    """Answers every command for one machine with ``ok`` (what a real bridge does after obeying)."""

    def __init__(self, broker: Mosquitto, lab: str, machine: str) -> None:
        self.lab, self.machine = lab, machine
        self.received: list[dict] = []
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"bridge-{uuid.uuid4().hex[:6]}", protocol=mqtt.MQTTv5
        )
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *args: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        self.client.subscribe(protocol.topic_cmd(lab, machine), qos=1)
        assert subscribed.wait(WAIT_S)

    def _on_message(self, client, userdata, msg) -> None:
        command = json.loads(msg.payload)
        self.received.append(command)
        ack = protocol.CommandAck(id=command["id"], ok=True, ts=int(time.time() * 1000))
        client.publish(protocol.topic_cmd_ack(self.lab, self.machine), protocol.encode(ack), qos=1)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _log_in(context, server: AsgiServer, user) -> None:
    client = Client()
    client.force_login(user)
    context.add_cookies(
        [{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": server.url}]
    )


def test_a_status_published_on_mqtt_shows_on_the_board(servers, tmp_path, browser, screenshots):
    from playwright.sync_api import expect

    board = make_board()
    bridge = Bridge.objects.create(slug="bridge-e2e", lab=board["lab"])
    MachineLink.objects.create(machine=board["printer"], bridge=bridge, adapter="octoprint")
    broker = servers["broker"]
    publisher = Publisher(broker)
    fake_bridge = FakeBridge(broker, "board-lab", "printer-1")
    from django.conf import settings

    settings.MQTT_URL = broker.url()
    settings.INFLUX_URL = servers["influx"].url
    settings.INFLUX_DATABASE = servers["influx"].database

    manager_ctx = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB")
    maker_ctx = browser.new_context(
        viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True, locale="en-GB"
    )
    try:
        with AsgiServer() as server, hub_thread(broker, servers["influx"], tmp_path):
            _log_in(manager_ctx, server, board["manager"])
            _log_in(maker_ctx, server, board["maker_a"])
            manager = manager_ctx.new_page()
            maker = maker_ctx.new_page()
            for page in (manager, maker):
                page.set_default_timeout(WAIT_MS)
                page.goto(f"{server.url}/labs/board-lab/board/")
                expect(page.locator("#live-state")).to_have_attribute("data-state", "live")
                page.evaluate("window.__stillHere = true")
            printer = manager.locator("#machine-printer-1")
            expect(printer).to_have_class(lambda_re("state-running"))
            expect(printer).to_contain_text("Karim Other")

            # A status on MQTT, as the bridge publishes it.
            ts = int(timezone.now().timestamp() * 1000)
            publisher.message(
                protocol.Status(
                    state=protocol.PAUSED,
                    enabled=True,
                    bridge="bridge-e2e",
                    adapter="octoprint",
                    ts=ts,
                    job=protocol.Job(
                        id="j-1", name="karim-bracket.gcode", started_ts=ts - 60_000, progress_pct=73.0
                    ),
                ),
                "board-lab",
                "printer-1",
            )
            expect(printer).to_have_attribute("data-ts", str(ts))
            expect(printer).to_have_class(lambda_re("state-paused"))
            expect(printer.locator('[data-field="state"]')).to_have_text("Paused")
            expect(printer.locator(".pct")).to_have_text("73 % done")
            expect(printer).to_contain_text("karim-bracket.gcode")

            # The maker's phone shows the change too, without anyone's name or their job's.
            maker_printer = maker.locator("#machine-printer-1")
            expect(maker_printer).to_have_attribute("data-ts", str(ts))
            expect(maker_printer.locator('[data-field="state"]')).to_have_text("Paused")
            expect(maker_printer).to_contain_text("a job")
            maker_text = maker.locator("#board").inner_text()
            for other in ("Karim", "karim-bracket", "Mia"):
                assert other not in maker_text
            assert maker.locator("form.commands").count() == 0
            maker.screenshot(path=str(screenshots / "board-maker-phone.png"), full_page=True)

            # The manager resumes it from the board; the bridge's ack shows on the card.
            resume = printer.get_by_role("button", name="Resume")
            expect(resume).to_be_visible()
            expect(printer.get_by_role("button", name="Pause")).to_be_hidden()
            resume.click()
            status = printer.locator(".cmd-status")
            expect(status).to_have_attribute("data-result", "ok")
            expect(status).to_have_text("Resume: done.")
            assert [c["action"] for c in fake_bridge.received] == ["resume"]
            manager.screenshot(path=str(screenshots / "board-manager.png"), full_page=True)

            # No page load happened all along.
            assert manager.evaluate("window.__stillHere") is True
            assert maker.evaluate("window.__stillHere") is True

            # The machine page shows the audit row of that command.
            manager.goto(f"{server.url}/labs/board-lab/machines/printer-1/live/")
            expect(manager.locator("#command-audit tbody tr").first).to_contain_text("Resume")
            expect(manager.locator("#command-audit tbody tr").first).to_contain_text("Done")
            # Close the sockets before the server stops.
            manager_ctx.close()
            maker_ctx.close()
    finally:
        manager_ctx.close()
        maker_ctx.close()
        fake_bridge.close()
        publisher.close()


def lambda_re(word: str):
    import re

    return re.compile(rf"(^|\s){re.escape(word)}(\s|$)")
