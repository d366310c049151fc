"""Live updates for the floor board, pushed through the Channels layer.

The hub calls :func:`push_status` after every change it applies to a
machine's :class:`~devices.models.MachineStatus`; the board's WebSocket
consumers (``devices/consumers.py``) are members of the lab's group and
forward each frame to their browser (minus what the viewer may not see).

Group per lab: ``lab.<slug>``. Channel-layer message:
``{"type": "board.frame", "frame": <machine_frame(...)>}``.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

_thread = threading.local()


def group_send(group: str, message: dict[str, Any]) -> None:
    """``group_send`` from synchronous code (the hub, a view), on one event loop kept per thread.

    ``async_to_sync`` would start a new event loop for every call, and the
    Redis layer opens a new connection per loop: ~20 ms a push on a busy
    machine, too slow for 200 statuses a second. A loop kept per thread
    keeps its connection.
    """
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:  # called from async code's thread: let asgiref refuse it the usual way
        async_to_sync(layer.group_send)(group, message)
        return
    loop = getattr(_thread, "loop", None)
    if loop is None or loop.is_closed():
        loop = _thread.loop = asyncio.new_event_loop()
    loop.run_until_complete(layer.group_send(group, message))


def group_name(lab_slug: str) -> str:
    return f"lab.{lab_slug}"


def machine_frame(status) -> dict[str, Any]:
    """The JSON frame of one machine's live status (no personal data)."""
    return {
        "type": "machine",
        "machine": status.machine.slug,
        "state": status.state,
        "since": status.since.isoformat() if status.since else None,
        "online": status.online,
        "enabled": status.enabled,
        "job": {"name": status.job_name, "progress_pct": status.progress_pct} if status.job_name else None,
        "error": {"code": status.error_code, "message": status.error_message} if status.error_code else None,
        "readings": status.last_reading,
        "ts": status.status_ts,
    }


def open_alerts(machine_id: int) -> list[dict[str, Any]]:
    """The machine's open alerts for the board's badges (kinds; the page translates them)."""
    from .models import Alert

    return [
        {"kind": kind, "since": raised_at.isoformat()}
        for kind, raised_at in Alert.objects.filter(machine_id=machine_id, cleared_at__isnull=True)
        .order_by("raised_at")
        .values_list("kind", "raised_at")
    ]


def push_status(status, *, ts: int | None = None) -> None:
    """Send one machine's frame to everyone watching its lab. ``ts`` is the source message's epoch ms."""
    if get_channel_layer() is None:
        return
    frame = machine_frame(status)
    if ts is not None:
        frame["ts"] = ts
    frame["alerts"] = open_alerts(status.machine_id)
    group_send(group_name(status.machine.lab.slug), {"type": "board.frame", "frame": frame})


def command_frame(command) -> dict[str, Any]:
    """The board's frame of one remote command and its outcome so far.

    It names who sent it, so the consumers pass it to lab managers only.
    """
    error = None
    if command.error_code or command.error_message:
        error = {"code": command.error_code, "message": command.error_message}
    return {
        "type": "command",
        "id": str(command.id),
        "machine": command.machine.slug,
        "action": command.action,
        "result": command.result,
        "error": error,
        "by": command.issued_by.get_full_name() or command.issued_by.get_username(),
        "at": command.issued_at.isoformat() if command.issued_at else None,
    }


def push_command(command) -> None:
    """Tell the lab's board that ``command`` was sent or answered; consumers pass it to managers only."""
    group_send(
        group_name(command.machine.lab.slug), {"type": "board.command", "command": command_frame(command)}
    )
