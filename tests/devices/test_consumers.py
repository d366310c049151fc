"""The floor board's WebSocket consumer: who may watch, the snapshot, a frame per change, makers' privacy."""

from __future__ import annotations

import asyncio
import json
import logging
import threading

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser
from django.test import Client
from django.urls import reverse

from devices import consumers, live
from devices.models import Command, MachineStatus
from devices.routing import websocket_urlpatterns
from tests.devices.board_fixtures import in_memory_layer, make_board, redis_layer, redis_server  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)

TIMEOUT = 30


def communicator(user, lab_slug: str = "board-lab") -> WebsocketCommunicator:
    comm = WebsocketCommunicator(URLRouter(websocket_urlpatterns), f"/ws/labs/{lab_slug}/")
    comm.scope["user"] = user
    return comm


async def _open(user, lab_slug: str = "board-lab"):
    comm = communicator(user, lab_slug)
    connected, _ = await comm.connect(timeout=TIMEOUT)
    assert connected
    return comm


async def _closed_with(user, lab_slug: str = "board-lab") -> int:
    comm = await _open(user, lab_slug)
    message = await comm.receive_output(timeout=TIMEOUT)
    await comm.wait()
    assert message["type"] == "websocket.close"
    return message["code"]


def _snapshot_of(user) -> dict:
    async def scenario():
        comm = await _open(user)
        snapshot = await comm.receive_json_from(timeout=TIMEOUT)
        await comm.disconnect()
        return snapshot

    return async_to_sync(scenario)()


def _by_slug(snapshot: dict) -> dict:
    return {m["machine"]: m for m in snapshot["machines"]}


def test_an_anonymous_visitor_is_closed_with_4401(in_memory_layer):  # noqa: F811
    make_board()
    assert async_to_sync(_closed_with)(AnonymousUser()) == consumers.CLOSE_UNAUTHENTICATED


def test_an_unknown_lab_is_closed_with_4404(in_memory_layer):  # noqa: F811
    board = make_board()
    assert async_to_sync(_closed_with)(board["maker_a"], "no-such-lab") == consumers.CLOSE_NOT_FOUND


def test_the_first_frame_is_a_snapshot_of_every_machine(in_memory_layer):  # noqa: F811
    board = make_board()
    snapshot = _snapshot_of(board["manager"])
    assert snapshot["type"] == "snapshot"
    machines = _by_slug(snapshot)
    assert set(machines) == {"printer-1", "laser-1"}
    printer = machines["printer-1"]
    assert printer["state"] == "running"
    assert printer["job"] == {"name": "karim-bracket.gcode", "progress_pct": 42.0}
    assert printer["readings"]["temp_nozzle_c"] == 210.5
    assert printer["ts"] > 0
    assert [a["kind"] for a in machines["laser-1"]["alerts"]] == ["silent"]


def test_a_manager_sees_who_holds_each_booking(in_memory_layer):  # noqa: F811
    board = make_board()
    machines = _by_slug(_snapshot_of(board["manager"]))
    assert machines["printer-1"]["booking"]["holder"] == "Karim Other"
    assert machines["laser-1"]["next_booking"]["holder"] == "Anouk Maker"
    assert machines["laser-1"]["booking"] is None


def test_a_maker_sees_no_one_but_themselves(in_memory_layer):  # noqa: F811
    board = make_board()
    snapshot = _snapshot_of(board["maker_a"])
    text = json.dumps(snapshot)
    for other in ("Karim", "Other", "maker-b", "Mia", "Manager", "manager-m"):
        assert other not in text
    machines = _by_slug(snapshot)
    # Someone else's booking is just "booked"; their job name (often their name) is hidden.
    assert machines["printer-1"]["booking"] == {
        "start": board["current"].start.isoformat(),
        "end": board["current"].end.isoformat(),
        "mine": False,
        "pending": False,
        "holder": None,
        "kind": "member",
        "title": "",
        "status": "booked",
        "checked_in_at": None,
        "released_at": None,
        "unavailable": "",
    }
    assert machines["printer-1"]["job"] == {"name": None, "progress_pct": 42.0}
    assert machines["laser-1"]["next_booking"]["mine"] is True
    assert machines["laser-1"]["next_booking"]["holder"] is None


def test_the_maker_holding_the_machine_sees_their_own_job(in_memory_layer):  # noqa: F811
    board = make_board()
    printer = _by_slug(_snapshot_of(board["maker_b"]))["printer-1"]
    assert printer["job"]["name"] == "karim-bracket.gcode"
    assert printer["booking"]["mine"] is True
    assert printer["booking"]["holder"] is None


def _as_another_thread(fn, *args) -> threading.Thread:
    """Run ``fn`` in a thread of its own (as the hub does), closing that thread's database connection."""

    def target():
        from django.db import connection

        try:
            fn(*args)
        finally:
            connection.close()

    return threading.Thread(target=target)


def _update_printer(state: str, ts: int, job_name: str = "karim-bracket.gcode", progress: float = 50.0):
    status = MachineStatus.objects.select_related("machine__lab").get(machine__slug="printer-1")
    status.state = state
    status.job_name = job_name
    status.progress_pct = progress
    status.status_ts = ts
    status.save()
    live.push_status(status, ts=ts)


def test_every_change_reaches_every_viewer_as_one_frame_filtered_for_each(in_memory_layer):  # noqa: F811
    board = make_board()

    async def scenario():
        watchers = {name: await _open(board[name]) for name in ("manager", "maker_a", "maker_b")}
        for comm in watchers.values():
            assert (await comm.receive_json_from(timeout=TIMEOUT))["type"] == "snapshot"
        await database_sync_to_async(_update_printer)("paused", 1_800_000_000_123, progress=55.5)
        frames = {name: await comm.receive_json_from(timeout=TIMEOUT) for name, comm in watchers.items()}
        for comm in watchers.values():
            assert await comm.receive_nothing(timeout=0.2)
            await comm.disconnect()
        return frames

    frames = async_to_sync(scenario)()
    for frame in frames.values():
        assert frame["type"] == "machine"
        assert frame["machine"] == "printer-1"
        assert frame["state"] == "paused"
        assert frame["ts"] == 1_800_000_000_123
        assert frame["job"]["progress_pct"] == 55.5
    assert frames["manager"]["job"]["name"] == "karim-bracket.gcode"
    assert frames["maker_b"]["job"]["name"] == "karim-bracket.gcode"
    assert frames["maker_a"]["job"]["name"] is None


def test_command_outcomes_go_to_managers_only(in_memory_layer):  # noqa: F811
    board = make_board()

    def record_and_push():
        from django.utils import timezone

        now = timezone.now()
        command = Command.objects.create(
            machine=board["printer"],
            action="pause",
            issued_by=board["manager"],
            issued_at=now,
            expires_at=now,
            result=Command.Result.FAILED,
            error_code="invalid_state",
            error_message="not running",
        )
        live.push_command(Command.objects.select_related("machine__lab", "issued_by").get(pk=command.pk))
        return str(command.pk)

    async def scenario():
        manager = await _open(board["manager"])
        maker = await _open(board["maker_a"])
        await manager.receive_json_from(timeout=TIMEOUT)
        await maker.receive_json_from(timeout=TIMEOUT)
        command_id = await database_sync_to_async(record_and_push)()
        frame = await manager.receive_json_from(timeout=TIMEOUT)
        nothing = await maker.receive_nothing(timeout=0.5)
        await manager.disconnect()
        await maker.disconnect()
        return command_id, frame, nothing

    command_id, frame, maker_got_nothing = async_to_sync(scenario)()
    assert frame == {
        "type": "command",
        "id": command_id,
        "machine": "printer-1",
        "action": "pause",
        "result": "failed",
        "error": {"code": "invalid_state", "message": "not running"},
        "by": "Mia Manager",
        "at": frame["at"],
    }
    assert maker_got_nothing


def test_a_refresh_sends_a_new_snapshot(in_memory_layer, monkeypatch):  # noqa: F811
    board = make_board()
    monkeypatch.setattr(consumers, "REFRESH_MIN_S", 0.0)

    async def scenario():
        comm = await _open(board["maker_a"])
        await comm.receive_json_from(timeout=TIMEOUT)
        await database_sync_to_async(MachineStatus.objects.filter(machine__slug="laser-1").update)(
            state="error"
        )
        await comm.send_json_to({"type": "refresh"})
        again = await comm.receive_json_from(timeout=TIMEOUT)
        await comm.send_json_to({"type": "something else"})
        nothing = await comm.receive_nothing(timeout=0.2)
        await comm.disconnect()
        return again, nothing

    again, nothing = async_to_sync(scenario)()
    assert again["type"] == "snapshot"
    assert _by_slug(again)["laser-1"]["state"] == "error"
    assert nothing


def test_the_site_application_authenticates_by_session_and_checks_the_origin(in_memory_layer):  # noqa: F811
    from fablab.asgi import application

    board = make_board()
    client = Client()
    client.force_login(board["maker_a"])
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()

    async def connect(origin: bytes):
        comm = WebsocketCommunicator(
            application, "/ws/labs/board-lab/", headers=[(b"origin", origin), (b"cookie", cookie)]
        )
        connected, _ = await comm.connect(timeout=TIMEOUT)
        first = await comm.receive_json_from(timeout=TIMEOUT) if connected else None
        await comm.disconnect()
        return connected, first

    connected, first = async_to_sync(connect)(b"http://127.0.0.1")
    assert connected and first["type"] == "snapshot"
    connected, first = async_to_sync(connect)(b"http://evil.example")
    assert not connected


def test_a_frame_pushed_by_another_process_arrives_through_redis(redis_layer):  # noqa: F811
    """The hub and the web are separate processes: the push crosses a real Redis channel layer."""
    board = make_board()

    async def scenario():
        manager = await _open(board["manager"])
        maker = await _open(board["maker_a"])
        await manager.receive_json_from(timeout=TIMEOUT)
        await maker.receive_json_from(timeout=TIMEOUT)
        # As the hub does it: a plain thread with its own event loop (async_to_sync inside push_status).
        pusher = _as_another_thread(_update_printer, "error", 1_800_000_000_999)
        pusher.start()
        pusher.join(TIMEOUT)
        frames = [
            await manager.receive_json_from(timeout=TIMEOUT),
            await maker.receive_json_from(timeout=TIMEOUT),
        ]
        await manager.disconnect()
        await maker.disconnect()
        return frames

    manager_frame, maker_frame = async_to_sync(scenario)()
    assert manager_frame["state"] == maker_frame["state"] == "error"
    assert manager_frame["ts"] == maker_frame["ts"] == 1_800_000_000_999
    assert maker_frame["job"]["name"] is None


def test_a_burst_of_changes_arrives_complete_and_in_order_through_redis(redis_layer):  # noqa: F811
    """The hub does not wait for Redis: its frames are queued and sent in batches, in order."""
    board = make_board()
    base = 1_800_000_000_000

    def burst():
        for i in range(1, 101):
            _update_printer("running", base + i, progress=float(i))
        assert live.flush(timeout=TIMEOUT)

    async def scenario():
        manager = await _open(board["manager"])
        await manager.receive_json_from(timeout=TIMEOUT)
        pusher = _as_another_thread(burst)
        pusher.start()
        frames = [await manager.receive_json_from(timeout=TIMEOUT) for _ in range(100)]
        pusher.join(TIMEOUT)
        nothing = await manager.receive_nothing(timeout=0.2)
        await manager.disconnect()
        return frames, nothing

    frames, nothing = async_to_sync(scenario)()
    assert [f["ts"] for f in frames] == [base + i for i in range(1, 101)]
    assert [f["job"]["progress_pct"] for f in frames] == [float(i) for i in range(1, 101)]
    assert nothing


def test_a_batch_of_frames_is_forwarded_one_by_one_and_filtered(in_memory_layer):  # noqa: F811
    board = make_board()

    async def scenario():
        maker = await _open(board["maker_a"])
        await maker.receive_json_from(timeout=TIMEOUT)
        frame = {"type": "machine", "machine": "printer-1", "state": "running", "ts": 1}
        from channels.layers import get_channel_layer

        await get_channel_layer().group_send(
            live.group_name("board-lab"),
            {
                "type": "board.frames",
                "frames": [
                    {**frame, "job": {"name": "secret.gcode", "progress_pct": 1.0}},
                    {**frame, "ts": 2, "job": {"name": "secret.gcode", "progress_pct": 2.0}},
                ],
            },
        )
        got = [await maker.receive_json_from(timeout=TIMEOUT) for _ in range(2)]
        await maker.disconnect()
        return got

    got = async_to_sync(scenario)()
    assert [f["ts"] for f in got] == [1, 2]
    assert [f["job"] for f in got] == [
        {"name": None, "progress_pct": 1.0},
        {"name": None, "progress_pct": 2.0},
    ]


def test_a_board_left_idle_longer_than_redis_waits_still_gets_the_next_change(redis_layer):  # noqa: F811
    """channels_redis waits 5 s per BZPOPMIN; redis-py 8 gave up reading after 5 s and killed the consumer."""
    board = make_board()
    idle_s = 7.0

    async def scenario():
        import asyncio

        manager = await _open(board["manager"])
        await manager.receive_json_from(timeout=TIMEOUT)
        await asyncio.sleep(idle_s)
        await database_sync_to_async(_update_printer)("idle", 1_800_000_000_777)
        frame = await manager.receive_json_from(timeout=TIMEOUT)
        await manager.disconnect()
        return frame

    assert async_to_sync(scenario)()["ts"] == 1_800_000_000_777


# ---------------------------------------------------------------- rights are re-checked, not decided once

FAR = 3600.0  # an interval no test reaches: the re-check under test is the only one that runs


def _texts_of(frame: dict) -> str:
    return json.dumps(frame)


def _remove_manager(board) -> None:
    board["lab"].managers.remove(board["manager"])


def test_a_removed_manager_stops_receiving_names(in_memory_layer, monkeypatch):  # noqa: F811
    board = make_board()
    monkeypatch.setattr(consumers, "REFRESH_MIN_S", 0.0)
    monkeypatch.setattr(consumers, "RECHECK_EVERY_S", FAR)
    monkeypatch.setattr(consumers, "RIGHTS_TTL_S", FAR)

    async def scenario():
        comm = await _open(board["manager"])
        first = await comm.receive_json_from(timeout=TIMEOUT)
        await database_sync_to_async(_remove_manager)(board)
        await comm.send_json_to({"type": "refresh"})
        again = await comm.receive_json_from(timeout=TIMEOUT)
        nothing = await comm.receive_nothing(timeout=0.2)
        await comm.disconnect()
        return first, again, nothing

    first, again, nothing = async_to_sync(scenario)()
    assert first["manager"] is True and "Karim Other" in _texts_of(first)
    assert again["type"] == "snapshot" and again["manager"] is False
    for name in ("Karim", "Other", "Anouk", "maker-a", "maker-b"):
        assert name not in _texts_of(again)
    assert _by_slug(again)["printer-1"]["booking"]["holder"] is None
    assert _by_slug(again)["printer-1"]["job"]["name"] is None
    assert nothing  # one snapshot for the refresh, not two


def test_a_removed_manager_is_downgraded_without_any_refresh_or_frame(in_memory_layer, monkeypatch):  # noqa: F811
    """A silent board: nothing is pushed and the browser asks for nothing, yet the timer re-checks."""
    board = make_board()
    monkeypatch.setattr(consumers, "RIGHTS_TTL_S", FAR)
    # The timer re-reads the rights all along; nothing changes until the manager is removed.
    monkeypatch.setattr(consumers, "RECHECK_EVERY_S", 0.05)

    async def scenario():
        comm = await _open(board["manager"])
        await comm.receive_json_from(timeout=TIMEOUT)
        await database_sync_to_async(_remove_manager)(board)
        frame = await comm.receive_json_from(timeout=TIMEOUT)
        await comm.disconnect()
        return frame

    frame = async_to_sync(scenario)()
    assert frame["type"] == "snapshot" and frame["manager"] is False
    assert "Karim" not in _texts_of(frame)


def _record_and_push_command(board) -> str:
    from django.utils import timezone

    now = timezone.now()
    command = Command.objects.create(
        machine=board["printer"],
        action="pause",
        issued_by=board["manager"],
        issued_at=now,
        expires_at=now,
        result=Command.Result.SENT,
    )
    live.push_command(Command.objects.select_related("machine__lab", "issued_by").get(pk=command.pk))
    return str(command.pk)


def test_a_removed_manager_stops_receiving_command_frames(in_memory_layer, monkeypatch):  # noqa: F811
    board = make_board()
    monkeypatch.setattr(consumers, "RECHECK_EVERY_S", FAR)

    async def scenario():
        comm = await _open(board["manager"])
        await comm.receive_json_from(timeout=TIMEOUT)
        await database_sync_to_async(_remove_manager)(board)
        # Rights older than this are read again before anything is forwarded: here, always.
        monkeypatch.setattr(consumers, "RIGHTS_TTL_S", 0.0)
        await database_sync_to_async(_record_and_push_command)(board)
        downgraded = await comm.receive_json_from(timeout=TIMEOUT)
        no_command = await comm.receive_nothing(timeout=0.3)
        await database_sync_to_async(_update_printer)("running", 1_800_000_000_321)
        status = await comm.receive_json_from(timeout=TIMEOUT)
        await comm.disconnect()
        return downgraded, no_command, status

    downgraded, no_command, status = async_to_sync(scenario)()
    assert downgraded["type"] == "snapshot" and downgraded["manager"] is False
    assert no_command
    assert status["type"] == "machine" and status["ts"] == 1_800_000_000_321
    assert status["job"]["name"] is None  # the job name of a machine someone else holds


def test_a_maker_made_manager_gets_the_full_board_on_the_next_check(in_memory_layer, monkeypatch):  # noqa: F811
    board = make_board()
    monkeypatch.setattr(consumers, "REFRESH_MIN_S", 0.0)
    monkeypatch.setattr(consumers, "RECHECK_EVERY_S", FAR)

    async def scenario():
        comm = await _open(board["maker_a"])
        await comm.receive_json_from(timeout=TIMEOUT)
        await database_sync_to_async(board["lab"].managers.add)(board["maker_a"])
        await comm.send_json_to({"type": "refresh"})
        again = await comm.receive_json_from(timeout=TIMEOUT)
        command_id = await database_sync_to_async(_record_and_push_command)(board)
        command = await comm.receive_json_from(timeout=TIMEOUT)
        await comm.disconnect()
        return again, command_id, command

    again, command_id, command = async_to_sync(scenario)()
    assert again["manager"] is True
    assert _by_slug(again)["printer-1"]["booking"]["holder"] == "Karim Other"
    assert command["type"] == "command" and command["id"] == command_id


def test_a_deactivated_user_is_closed_on_the_next_frame(in_memory_layer, monkeypatch):  # noqa: F811
    board = make_board()
    monkeypatch.setattr(consumers, "RECHECK_EVERY_S", FAR)

    def deactivate():
        board["maker_a"].is_active = False
        board["maker_a"].save(update_fields=["is_active"])

    async def scenario():
        comm = await _open(board["maker_a"])
        await comm.receive_json_from(timeout=TIMEOUT)
        await database_sync_to_async(deactivate)()
        monkeypatch.setattr(consumers, "RIGHTS_TTL_S", 0.0)
        await database_sync_to_async(_update_printer)("paused", 1_800_000_000_555)
        message = await comm.receive_output(timeout=TIMEOUT)
        await comm.disconnect()  # as the server does once the socket is closed
        return message

    message = async_to_sync(scenario)()
    assert message == {"type": "websocket.close", "code": consumers.CLOSE_UNAUTHENTICATED}


def _site_socket(client: Client) -> WebsocketCommunicator:
    """A socket through the site's own ASGI stack (session cookie, auth), as a browser opens it."""
    from fablab.asgi import application

    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    return WebsocketCommunicator(
        application, "/ws/labs/board-lab/", headers=[(b"origin", b"http://127.0.0.1"), (b"cookie", cookie)]
    )


def _closed_after(client: Client, change, *, refresh: bool) -> dict:
    """The close message after ``change`` (and a refresh when ``refresh``; else the timer must see it)."""

    async def scenario():
        comm = _site_socket(client)
        connected, _ = await comm.connect(timeout=TIMEOUT)
        assert connected
        assert (await comm.receive_json_from(timeout=TIMEOUT))["type"] == "snapshot"
        await database_sync_to_async(change)()
        if refresh:
            await comm.send_json_to({"type": "refresh"})
        message = await comm.receive_output(timeout=TIMEOUT)
        await comm.disconnect()  # as the server does once the socket is closed
        return message

    return async_to_sync(scenario)()


def test_a_logged_out_user_is_closed_on_the_next_check(in_memory_layer, monkeypatch):  # noqa: F811
    board = make_board()
    monkeypatch.setattr(consumers, "REFRESH_MIN_S", 0.0)
    monkeypatch.setattr(consumers, "RECHECK_EVERY_S", FAR)
    client = Client()
    client.force_login(board["manager"])
    message = _closed_after(client, client.logout, refresh=True)
    assert message == {"type": "websocket.close", "code": consumers.CLOSE_UNAUTHENTICATED}


def test_a_logged_out_user_is_closed_by_the_timer_on_a_silent_board(in_memory_layer, monkeypatch):  # noqa: F811
    board = make_board()
    monkeypatch.setattr(consumers, "RIGHTS_TTL_S", FAR)
    monkeypatch.setattr(consumers, "RECHECK_EVERY_S", 0.05)
    client = Client()
    client.force_login(board["maker_a"])
    message = _closed_after(client, client.logout, refresh=False)
    assert message == {"type": "websocket.close", "code": consumers.CLOSE_UNAUTHENTICATED}


def test_a_password_change_closes_the_sockets_of_the_old_session(in_memory_layer, monkeypatch):  # noqa: F811
    """As for pages: a session made with the old password no longer signs anyone in."""
    board = make_board()
    monkeypatch.setattr(consumers, "REFRESH_MIN_S", 0.0)
    monkeypatch.setattr(consumers, "RECHECK_EVERY_S", FAR)
    client = Client()
    client.force_login(board["maker_a"])

    def change_password():
        board["maker_a"].set_password("a whole new secret 42")
        board["maker_a"].save()

    message = _closed_after(client, change_password, refresh=True)
    assert message == {"type": "websocket.close", "code": consumers.CLOSE_UNAUTHENTICATED}


def test_a_signed_in_user_on_the_site_stack_stays_connected_across_checks(in_memory_layer, monkeypatch):  # noqa: F811
    """The re-check itself must not end a valid session (it reads the session; it does not replace it)."""
    board = make_board()
    monkeypatch.setattr(consumers, "REFRESH_MIN_S", 0.0)
    monkeypatch.setattr(consumers, "RECHECK_EVERY_S", FAR)
    client = Client()
    client.force_login(board["manager"])

    async def scenario():
        comm = _site_socket(client)
        connected, _ = await comm.connect(timeout=TIMEOUT)
        assert connected
        await comm.receive_json_from(timeout=TIMEOUT)
        snapshots = []
        for _ in range(3):
            await comm.send_json_to({"type": "refresh"})
            snapshots.append(await comm.receive_json_from(timeout=TIMEOUT))
        await comm.disconnect()
        return snapshots

    snapshots = async_to_sync(scenario)()
    assert [s["manager"] for s in snapshots] == [True, True, True]
    assert client.get(reverse("members:profile")).status_code == 200  # the session still signs in pages


# ---------------------------------------------------------------- machine errors: makers never see the bridge's text

LEAKY_MESSAGE = "OctoPrint at http://10.1.2.3:5000/api/job is unreachable: [Errno 111] on /dev/ttyUSB0"


def _printer_fails() -> None:
    status = MachineStatus.objects.select_related("machine__lab").get(machine__slug="printer-1")
    status.state = "error"
    status.error_code = "unreachable"
    status.error_message = LEAKY_MESSAGE
    status.status_ts = 1_800_000_000_404
    status.save()
    live.push_status(status, ts=status.status_ts)


def _assert_no_internal_address(text: str) -> None:
    for leak in ("10.1.2.3", "5000", "/dev/tty", "ttyUSB0", "http://", "Errno"):
        assert leak not in text, leak


def test_a_makers_frames_never_carry_the_bridges_error_message(in_memory_layer):  # noqa: F811
    board = make_board()

    async def scenario():
        manager = await _open(board["manager"])
        maker = await _open(board["maker_a"])
        await manager.receive_json_from(timeout=TIMEOUT)
        await maker.receive_json_from(timeout=TIMEOUT)
        await database_sync_to_async(_printer_fails)()
        frames = (
            await manager.receive_json_from(timeout=TIMEOUT),
            await maker.receive_json_from(timeout=TIMEOUT),
        )
        await maker.disconnect()
        # A new socket: the snapshot is filtered the same way.
        maker = await _open(board["maker_b"])
        snapshot = await maker.receive_json_from(timeout=TIMEOUT)
        await maker.disconnect()
        await manager.disconnect()
        return frames, snapshot

    (manager_frame, maker_frame), snapshot = async_to_sync(scenario)()
    assert manager_frame["error"] == {"code": "unreachable", "message": LEAKY_MESSAGE}
    assert maker_frame["error"] == {"code": "unreachable", "message": None}
    _assert_no_internal_address(json.dumps(maker_frame))
    # maker_b holds the printer: their own job name, but still not the bridge's text.
    printer = _by_slug(snapshot)["printer-1"]
    assert printer["error"] == {"code": "unreachable", "message": None}
    assert printer["job"]["name"] == "karim-bracket.gcode"
    _assert_no_internal_address(json.dumps(snapshot))


def test_a_makers_pages_show_the_errors_explanation_not_its_message(in_memory_layer):  # noqa: F811
    from devices import machine_errors

    board = make_board()
    _printer_fails()
    maker, manager = Client(), Client()
    maker.force_login(board["maker_a"])
    manager.force_login(board["manager"])
    explanation = str(machine_errors.EXPLANATIONS["unreachable"]).replace("'", "&#x27;")
    for url in ("/labs/board-lab/board/", "/labs/board-lab/machines/printer-1/live/"):
        page = maker.get(url).content.decode()
        _assert_no_internal_address(page)
        assert explanation in page
        assert "10.1.2.3:5000" in manager.get(url).content.decode()


def test_a_viewer_gone_between_two_frames_is_no_error(in_memory_layer, monkeypatch, caplog):  # noqa: F811
    """A closed tab (uvicorn raises ClientDisconnected, an OSError, on the next send) stops its frames quietly."""
    from uvicorn.protocols.utils import ClientDisconnected

    board = make_board()
    caplog.set_level("DEBUG", logger="devices.consumers")
    gone: list[consumers.BoardConsumer] = []

    async def send_to_nobody(self, *args, **kwargs):
        gone.append(self)
        raise ClientDisconnected

    async def scenario():
        comm = await _open(board["manager"])
        assert (await comm.receive_json_from(timeout=TIMEOUT))["type"] == "snapshot"
        monkeypatch.setattr(consumers.BoardConsumer, "send", send_to_nobody)
        await database_sync_to_async(_update_printer)("paused", 1_800_000_000_456, progress=60.0)
        for _ in range(int(TIMEOUT / 0.05)):
            if gone and gone[0].revoked:
                break
            await asyncio.sleep(0.05)
        await comm.disconnect()

    async_to_sync(scenario)()
    assert gone and gone[0].revoked  # no more frames are tried for it
    assert "board viewer gone" in caplog.text
    assert "could not send the board's frames" not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
