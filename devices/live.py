"""Live updates for the floor board, pushed through the Channels layer.

The hub calls :func:`push_status` after every change it applies to a
machine's :class:`~devices.models.MachineStatus`; the board's WebSocket
consumers (``devices/consumers.py``) are members of the lab's group and
forward each frame to their browser (minus what the viewer may not see).

Group per lab: ``lab.<slug>``. Channel-layer messages:
``{"type": "board.frame", "frame": <machine_frame(...)>}``, or several at once
``{"type": "board.frames", "frames": [...]}``, and
``{"type": "board.command", "command": <command_frame(...)>}``.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import logging
import os
import threading
import time
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

log = logging.getLogger(__name__)
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


class _Pusher:
    """Sends the board's frames from a thread of its own, many frames per channel-layer message.

    The hub must not wait for Redis after each status: it queues the frame
    and goes on. This thread takes everything queued, groups it by lab and
    sends one ``board.frames`` message per lab (``board.frame`` when there is
    only one), so a burst of N statuses costs a few Redis round trips, not N.
    Frames keep their order. Only for layers that cross processes (Redis);
    the in-memory layer of a single process is sent to directly.
    """

    max_batch = 500
    #: The least time between two sends: under load, frames gather into batches meanwhile,
    #: and the hub's thread is not interrupted for every single frame.
    min_gap_s = 0.01

    def __init__(self) -> None:
        self._queue: collections.deque[tuple[str, dict[str, Any]]] = collections.deque()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._in_flight = 0

    def submit(self, group: str, frame: dict[str, Any]) -> None:
        if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
            self._start()
        self._queue.append((group, frame))
        self._wake.set()

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None and self._pid == os.getpid() and self._thread.is_alive():
                return
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._run, name="board-pusher", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        while True:
            self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch: dict[str, list[dict[str, Any]]] = {}
                for _ in range(min(len(self._queue), self.max_batch)):
                    group, frame = self._queue.popleft()
                    batch.setdefault(group, []).append(frame)
                    self._in_flight += 1
                layer = get_channel_layer()
                for group, frames in batch.items():
                    if len(frames) == 1:
                        message = {"type": "board.frame", "frame": frames[0]}
                    else:
                        message = {"type": "board.frames", "frames": frames}
                    try:
                        if layer is not None:
                            loop.run_until_complete(layer.group_send(group, message))
                    except Exception:  # the board is best effort; the database is the truth
                        log.exception("could not push %d frame(s) to %s", len(frames), group)
                    finally:
                        self._in_flight -= len(frames)
                time.sleep(self.min_gap_s)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything queued has been sent (True) or ``timeout`` passed (False)."""
        deadline = time.monotonic() + timeout
        while self._queue or self._in_flight:
            if time.monotonic() > deadline or self._thread is None or not self._thread.is_alive():
                return False
            time.sleep(0.005)
        return True


_pusher = _Pusher()
atexit.register(_pusher.flush, 2.0)


def flush(timeout: float = 5.0) -> bool:
    """Wait for the frames still queued for the channel layer (e.g. before a hub exits)."""
    return _pusher.flush(timeout)


def _in_process(layer) -> bool:
    from channels.layers import InMemoryChannelLayer

    return isinstance(layer, InMemoryChannelLayer)


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
        # When those readings were taken (epoch ms): the machine page's charts plot them at this time.
        "readings_at": int(status.last_reading_at.timestamp() * 1000) if status.last_reading_at else None,
        "ts": status.status_ts,
    }


def open_alerts(machine_id: int) -> list[dict[str, Any]]:
    """The machine's open alerts for the board's badges: their kinds (the page translates them).

    One plain query, as it runs in the hub for every status it applies.
    """
    from django.db import connection

    from .models import Alert

    table = connection.ops.quote_name(Alert._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT kind FROM {table} WHERE machine_id = %s AND cleared_at IS NULL ORDER BY raised_at",  # noqa: S608
            [machine_id],
        )
        return [{"kind": kind} for (kind,) in cursor.fetchall()]


def push_status(status, *, ts: int | None = None, alerts: list[dict[str, Any]] | None = None) -> None:
    """Send one machine's frame to everyone watching its lab. ``ts`` is the source message's epoch ms.

    ``alerts``: the machine's open alerts as :func:`open_alerts` gives them, when the caller
    knows them already (the hub's batches); else they are read here.

    With a cross-process layer (Redis) the frame is queued and sent by a
    background thread (see :class:`_Pusher`); this returns at once.
    """
    layer = get_channel_layer()
    if layer is None:
        return
    frame = machine_frame(status)
    if ts is not None:
        frame["ts"] = ts
    frame["alerts"] = open_alerts(status.machine_id) if alerts is None else alerts
    group = group_name(status.machine.lab.slug)
    if _in_process(layer):
        group_send(group, {"type": "board.frame", "frame": frame})
    else:
        _pusher.submit(group, frame)


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
        # A system command, or a member since erased: say which kind of issuer it was.
        "by": (command.issued_by.get_full_name() or command.issued_by.get_username())
        if command.issued_by is not None
        else str(command.get_source_display()),
        "at": command.issued_at.isoformat() if command.issued_at else None,
    }


def push_command(command) -> None:
    """Tell the lab's board that ``command`` was sent or answered; consumers pass it to managers only."""
    group_send(
        group_name(command.machine.lab.slug), {"type": "board.command", "command": command_frame(command)}
    )
