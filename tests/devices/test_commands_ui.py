"""Remote commands from the board: managers only, written as rows the hub publishes, audited, the ack shown live.

The web process gets no broker in these tests (``MQTT_URL`` empty): only the hub speaks MQTT.
"""

from __future__ import annotations

import json
import queue
import uuid
from datetime import timedelta

import paho.mqtt.client as mqtt
import pytest
from asgiref.sync import async_to_sync
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from devices import capabilities, commands
from devices.models import Bridge, Command, MachineLink
from devices.routing import websocket_urlpatterns
from firmware_bridge import protocol
from tests.devices.board_fixtures import make_board, redis_layer, redis_server  # noqa: F401
from tests.devices.conftest import WAIT_S, hub_thread, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def command_url(machine="printer-1", lab="board-lab"):
    return reverse("devices:command", args=[lab, machine])


class CommandListener:
    """Stands in for the bridge: receives what the server publishes on a machine's ``cmd`` topic."""

    def __init__(self, broker, lab: str, machine: str) -> None:
        self.messages: queue.Queue[bytes] = queue.Queue()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"bridge-{uuid.uuid4().hex[:6]}", protocol=mqtt.MQTTv5
        )
        subscribed = queue.Queue()
        self.client.on_message = lambda c, u, msg: self.messages.put(msg.payload)
        self.client.on_subscribe = lambda *args: subscribed.put(True)
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        self.client.subscribe(protocol.topic_cmd(lab, machine), qos=1)
        subscribed.get(timeout=WAIT_S)

    def next(self) -> protocol.Command:
        payload = self.messages.get(timeout=WAIT_S)
        data = json.loads(payload)
        return protocol.Command(
            id=data["id"],
            action=data["action"],
            ts=data["ts"],
            expires=data["expires"],
            booking=data["booking"],
        )

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_the_board_offers_exactly_the_contracts_actions():
    from devices.views import ACTIONS

    assert set(ACTIONS) == set(protocol.ACTIONS)


async def next_command_frame(comm) -> dict:
    """The next command frame, skipping machine frames (the hub may push an alert meanwhile)."""
    while True:
        frame = await comm.receive_json_from(timeout=WAIT_S)
        if frame["type"] == "command":
            return frame


async def command_frames_within(comm, seconds: float) -> list[dict]:
    frames = []
    while not await comm.receive_nothing(timeout=seconds):
        frame = await comm.receive_json_from(timeout=WAIT_S)
        if frame["type"] == "command":
            frames.append(frame)
    return frames


@pytest.fixture
def board():
    return make_board()


def test_anonymous_visitors_and_makers_cannot_send_commands(client, board):
    response = client.post(command_url(), {"action": "pause"})
    assert response.status_code == 302 and reverse("members:login") in response["Location"]
    client.force_login(board["maker_b"])  # even the maker holding the machine's booking
    assert client.post(command_url(), {"action": "pause"}).status_code == 403
    assert client.get(command_url()).status_code == 405
    assert not Command.objects.exists()


def test_an_unknown_action_is_refused_without_a_trace(client, board):
    client.force_login(board["manager"])
    response = client.post(command_url(), {"action": "explode"}, HTTP_ACCEPT="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"
    response = client.post(command_url(), {"action": "explode"})
    assert response.status_code == 302
    assert not Command.objects.exists()
    assert client.post(command_url("nope"), {"action": "pause"}).status_code == 404


def test_a_manager_command_is_written_then_published_by_the_hub_and_audited(
    client, board, settings, broker, influx, tmp_path
):
    settings.MQTT_URL = ""  # the web process holds no broker credentials
    listener = CommandListener(broker, "board-lab", "printer-1")
    try:
        client.force_login(board["manager"])
        response = client.post(command_url(), {"action": "pause"}, HTTP_ACCEPT="application/json")
        assert response.status_code == 202
        assert Command.objects.get().state == Command.State.PENDING  # no hub yet: nothing went out
        with hub_thread(broker, influx, tmp_path):
            sent = listener.next()
            wait_until(
                lambda: Command.objects.get().state == Command.State.PUBLISHED,
                what="the row marked published",
            )
    finally:
        listener.close()
    body = response.json()
    assert body["type"] == "command" and body["action"] == "pause" and body["result"] == "sent"
    command = Command.objects.get()
    assert body["id"] == sent.id == str(command.pk)
    assert sent.action == "pause" and sent.expires > sent.ts
    assert command.issued_by == board["manager"] and command.machine == board["printer"]
    assert command.source == Command.Source.MEMBER and command.attempts == 1


def test_without_javascript_the_form_posts_and_comes_back_with_a_message(client, board):
    client.force_login(board["manager"])
    back = reverse("devices:board", args=["board-lab"])
    response = client.post(command_url("laser-1"), {"action": "disable", "next": back}, follow=True)
    assert response.redirect_chain[-1][0] == back
    assert "Disable sent to Laser 1" in response.content.decode()
    # Only a local path is followed back.
    response = client.post(command_url("laser-1"), {"action": "enable", "next": "https://evil.example/"})
    assert response["Location"] == reverse("devices:machine", args=["board-lab", "laser-1"])


def test_a_command_no_hub_sent_before_it_expired_is_audited_as_failed(client, board):
    client.force_login(board["manager"])
    response = client.post(command_url(), {"action": "cancel"}, HTTP_ACCEPT="application/json")
    assert response.status_code == 202
    # No hub ran during its lifetime: the next hub's housekeeping ends it instead of sending it.
    Command.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert commands.expire_commands() == 1
    command = Command.objects.get()
    assert command.result == Command.Result.FAILED and command.state == Command.State.EXPIRED
    assert command.error_code == "expired" and command.published_at is None
    page = client.get(reverse("devices:machine", args=["board-lab", "printer-1"])).content.decode()
    audit = page.split('id="command-audit"')[1]
    assert 'class="result result-failed">Refused: ' in audit and "Mia Manager" in audit


def test_the_bridge_ack_reaches_the_manager_live_and_lands_in_the_audit(
    client,
    board,
    settings,
    broker,
    influx,
    publisher,
    redis_layer,  # noqa: F811
    tmp_path,
):
    """Board → POST → row → hub → cmd topic → (bridge) → cmd/ack → hub → Redis → the manager's WebSocket."""
    settings.MQTT_URL = ""
    bridge = Bridge.objects.create(slug="bridge-b", lab=board["lab"])
    MachineLink.objects.create(machine=board["printer"], bridge=bridge, adapter="octoprint")
    listener = CommandListener(broker, "board-lab", "printer-1")
    client.force_login(board["manager"])

    async def watch_and_command():
        manager = WebsocketCommunicator(URLRouter(websocket_urlpatterns), "/ws/labs/board-lab/")
        manager.scope["user"] = board["manager"]
        maker = WebsocketCommunicator(URLRouter(websocket_urlpatterns), "/ws/labs/board-lab/")
        maker.scope["user"] = board["maker_a"]
        assert (await manager.connect(timeout=WAIT_S))[0] and (await maker.connect(timeout=WAIT_S))[0]
        await manager.receive_json_from(timeout=WAIT_S)
        await maker.receive_json_from(timeout=WAIT_S)
        from channels.db import database_sync_to_async

        response = await database_sync_to_async(client.post)(
            command_url(), {"action": "resume"}, HTTP_ACCEPT="application/json"
        )
        assert response.status_code == 202, response.content
        sent_frame = await next_command_frame(manager)
        command = await database_sync_to_async(listener.next)()
        await database_sync_to_async(publisher.message)(
            protocol.CommandAck(
                id=command.id,
                ok=False,
                ts=int(timezone.now().timestamp() * 1000),
                error=protocol.AckError(code=protocol.INVALID_STATE, message="not paused"),
            ),
            "board-lab",
            "printer-1",
        )
        ack_frame = await next_command_frame(manager)
        maker_saw_nothing = not await command_frames_within(maker, 0.5)
        await manager.disconnect()
        await maker.disconnect()
        return sent_frame, ack_frame, command, maker_saw_nothing

    try:
        with hub_thread(broker, influx, tmp_path):
            sent_frame, ack_frame, command, maker_saw_nothing = async_to_sync(watch_and_command)()
    finally:
        listener.close()
    assert sent_frame["type"] == "command" and sent_frame["result"] == "sent"
    assert sent_frame["by"] == "Mia Manager"
    assert ack_frame["type"] == "command"
    assert ack_frame["id"] == command.id and ack_frame["machine"] == "printer-1"
    assert ack_frame["action"] == "resume" and ack_frame["result"] == "failed"
    assert ack_frame["error"] == {"code": "invalid_state", "message": "not paused"}
    assert maker_saw_nothing
    audited = Command.objects.get(pk=command.id)
    assert audited.result == Command.Result.FAILED and audited.answered_at is not None
    page = client.get(reverse("devices:machine", args=["board-lab", "printer-1"])).content.decode()
    explained = escape(capabilities.ack_explanation("invalid_state"))
    assert f"Refused: {explained} (not paused)" in page.split('id="command-audit"')[1]
