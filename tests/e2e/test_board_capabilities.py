"""The board's buttons follow what a machine can do, live, and a refusal reads in the page's language.

Headless Chromium against the real servers of ``test_board.py``: a plug-driven laser whose bridge
declares no command shows none; its next status declares the interlock (``enable``/``disable``)
and the Enable button appears without a reload, never a Pause. The bridge refuses the command
(``not_confirmed``) and the card explains the code, the bridge's own words after it.
"""

from __future__ import annotations

import json
import time

import pytest
from django.utils import timezone

from devices.capabilities import ack_explanation
from devices.models import Bridge, MachineLink, MachineStatus
from firmware_bridge import protocol
from tests.devices.board_fixtures import make_board, redis_layer, redis_server  # noqa: F401
from tests.devices.conftest import Publisher, hub_thread
from tests.e2e.test_board import WAIT_MS, AsgiServer, FakeBridge, _log_in, servers  # noqa: F401

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


class RefusingBridge(FakeBridge):
    """Answers every command ``not_confirmed``, as a plug whose relay does not switch."""

    def _on_message(self, client, userdata, msg) -> None:
        command = json.loads(msg.payload)
        self.received.append(command)
        ack = protocol.CommandAck(
            id=command["id"],
            ok=False,
            ts=int(time.time() * 1000),
            error=protocol.AckError(protocol.NOT_CONFIRMED, "relay still reports off"),
        )
        client.publish(protocol.topic_cmd_ack(self.lab, self.machine), protocol.encode(ack), qos=1)


def test_the_buttons_follow_the_declared_capabilities_live(servers, tmp_path, browser):  # noqa: F811
    from playwright.sync_api import expect

    board = make_board()
    bridge = Bridge.objects.create(slug="bridge-e2e", lab=board["lab"])
    MachineLink.objects.create(machine=board["laser"], bridge=bridge, adapter="shelly")
    MachineStatus.objects.filter(machine=board["laser"]).update(capabilities=[])
    broker = servers["broker"]
    publisher = Publisher(broker)
    refusing = RefusingBridge(broker, "board-lab", "laser-1")
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB")
    try:
        with AsgiServer() as server, hub_thread(broker, servers["influx"], tmp_path):
            _log_in(context, server, board["manager"])
            page = context.new_page()
            page.set_default_timeout(WAIT_MS)
            page.goto(f"{server.url}/labs/board-lab/board/")
            expect(page.locator("#live-state")).to_have_attribute("data-state", "live")
            page.evaluate("window.__stillHere = true")
            laser = page.locator("#machine-laser-1")
            expect(laser.locator("form.commands")).to_be_hidden()
            assert laser.locator("button[name=action]").count() == 0

            # The bridge now drives the plug's relay as an interlock, and the machine is disabled.
            ts = int(timezone.now().timestamp() * 1000)
            publisher.message(
                protocol.Status(
                    state=protocol.IDLE,
                    enabled=False,
                    bridge="bridge-e2e",
                    adapter="shelly",
                    ts=ts,
                    capabilities=("enable", "disable"),
                ),
                "board-lab",
                "laser-1",
            )
            expect(laser).to_have_attribute("data-ts", str(ts))
            enable = laser.get_by_role("button", name="Enable")
            expect(enable).to_be_visible()
            for never in ("pause", "resume", "cancel"):
                assert laser.locator(f"button[value={never}]").count() == 0
            # The printer's buttons are untouched by the laser's list.
            assert page.locator("#machine-printer-1 button[value=pause]").count() == 1

            enable.click()
            status = laser.locator(".cmd-status")
            expect(status).to_have_attribute("data-result", "failed")
            expect(status).to_have_text(
                f"Enable refused: {ack_explanation(protocol.NOT_CONFIRMED)} (relay still reports off)"
            )
            assert [c["action"] for c in refusing.received] == ["enable"]
            assert page.evaluate("window.__stillHere") is True
            context.close()
    finally:
        context.close()
        refusing.close()
        publisher.close()
