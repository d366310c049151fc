"""Live updates for the floor board, pushed through the Channels layer.

The hub calls :func:`push_status` after every change it applies to a
machine's :class:`~devices.models.MachineStatus`; the board's WebSocket
consumers (``devices/consumers.py``) are members of the lab's group and
forward each frame to their browser (minus what the viewer may not see).

Group per lab: ``lab.<slug>``. Channel-layer messages:
``{"type": "board.frames", "frames": [<machine_frame(...)>, ...], "origin": ..., "seq": ...}``
(``board.frame`` with one ``"frame"`` is understood too),
``{"type": "board.mark", "origin": ..., "seq": ...}`` and
``{"type": "board.command", "command": <command_frame(...)>}``.

A board that drops nothing
--------------------------

A channel layer may lose a message: channels_redis refuses a group message
for a process whose queue already holds ``capacity`` messages ("over
capacity in group ...") and an in-process buffer that is full drops its
oldest. What a viewer must never be left with is a *stale* machine, so:

* every frame carries its version ``"v"`` (:func:`frame_version`): an older
  frame never replaces a newer one, in the consumer nor in the browser;
* the consumer coalesces per viewer: frames go into a per-connection dict
  (latest per machine) that one sender task drains to the socket, so a slow
  browser never keeps the consumer from reading its channel, and a viewer
  that cannot keep up gets each machine's latest state, not a backlog. A
  viewer that keeps up gets every frame (the machine page's charts plot them);
* the hub's :class:`_Pusher` batches per lab and, when it falls behind,
  collapses the waiting frames to the latest per machine;
* lost messages are repaired: each message carries its sender's ``origin``
  and a per-lab ``seq``; a consumer that sees a gap sends its viewer a fresh
  snapshot from the database, and ``board.mark`` messages after a burst reveal
  the loss of its last message;
* the Redis layer's capacity is raised and stale channels leave the groups
  soon (``fablab.settings.redis_channel_layer``); consumers re-join their group
  regularly so that a long-open board never expires from it.

Command frames (``board.command``) are not versioned: they are few, and the
machine page reads the audit from the database.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import logging
import os
import threading
import time
import uuid
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
    sends one ``board.frames`` message per lab, so a burst of N statuses
    costs a few Redis round trips, not N. Frames keep their order.

    When the thread falls behind (more than :attr:`max_waiting` frames
    waiting, e.g. Redis is slow), the waiting frames collapse to the newest
    per machine: the queue is bounded by the number of machines, and what is
    skipped is a state some newer frame replaces anyway.

    Every message carries ``origin`` (this pusher, new in every process) and
    ``seq`` (per lab, +1 a message), so a consumer notices a message the layer
    lost (see the module's docstring); ``board.mark`` messages repeat the last
    ``seq`` a little after a lab falls quiet, so the loss of the *last*
    message of a burst is noticed too.

    With the in-memory layer (one process: tests, a single-process server) the
    messages are sent on the event loop that serves the consumers
    (:func:`serve_in_process`), because that layer's queues may only be touched
    from their own loop.
    """

    max_batch = 500
    #: Frames waiting beyond which they collapse to the newest per machine.
    max_waiting = 2000
    #: The least time between two sends: under load, frames gather into batches meanwhile,
    #: and the hub's thread is not interrupted for every single frame. Each message costs the
    #: web process a chain of Redis round trips to receive (channels_redis reads one message
    #: at a time, on the loop that also serves the sockets). At 10 ms (100 messages a second
    #: per lab) twenty boards once fell behind by hundreds of ms; with today's consumers
    #: (devices.consumers) they keep up at 15 ms, and frames wait about 7 ms less at p50 than
    #: at 25 ms, for the same web CPU (docs/benchmarks.md, bench_board).
    min_gap_s = 0.015
    #: After a lab's last message, marks are sent this long after it (seconds).
    mark_after_s = (0.25, 2.0)

    def __init__(self) -> None:
        self._queue: collections.deque[tuple[str, dict[str, Any]]] = collections.deque()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._in_flight = 0
        self.origin = ""
        self._seq: dict[str, int] = {}
        #: Per lab: when its last message went out and how many marks followed it.
        self._last_sent: dict[str, tuple[float, int]] = {}
        #: A send failed and no send has succeeded since (see :meth:`_unreachable`).
        self._failing = False

    def submit(self, group: str, frame: dict[str, Any]) -> None:
        if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
            self._start()
        self._queue.append((group, frame))
        if len(self._queue) > self.max_waiting:
            self._collapse()
        self._wake.set()

    def _collapse(self) -> None:
        """Keep only the newest waiting frame of each machine (in the order of those newest frames)."""
        with self._lock:
            newest: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
            while self._queue:
                group, frame = self._queue.popleft()
                key = (group, frame.get("machine", ""), frame.get("type", ""))
                kept = newest.pop(key, None)
                newest[key] = (group, kept[1]) if kept and older(frame, kept[1]) else (group, frame)
            self._queue.extend(newest.values())

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None and self._pid == os.getpid() and self._thread.is_alive():
                return
            self._pid = os.getpid()
            # A new process (a fork) or a new thread starts a new sequence: consumers tell them apart.
            self.origin = uuid.uuid4().hex
            self._seq = {}
            self._last_sent = {}
            self._thread = threading.Thread(target=self._run, name="board-pusher", daemon=True)
            self._thread.start()

    def _mark_delay(self, n: int) -> float:
        # Bounded: the schedule may be shorter than when the mark was counted (a test changes it).
        return self.mark_after_s[min(n, len(self.mark_after_s) - 1)]

    def _next_mark_in(self) -> float | None:
        now = time.monotonic()
        due = [at + self._mark_delay(n) - now for at, n in self._last_sent.values()]
        return max(0.0, min(due)) if due else None

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        while True:
            try:
                self._run_once(loop)
            except Exception:  # the pusher must outlive any one failure, or the boards go quiet
                log.exception("board pusher pass failed; going on")
                time.sleep(self.min_gap_s)

    def _run_once(self, loop: asyncio.AbstractEventLoop) -> None:
        self._wake.wait(self._next_mark_in())
        self._wake.clear()
        while self._queue:
            batch: dict[str, list[dict[str, Any]]] = {}
            with self._lock:
                for _ in range(min(len(self._queue), self.max_batch)):
                    group, frame = self._queue.popleft()
                    batch.setdefault(group, []).append(frame)
                    self._in_flight += 1
            for group, frames in batch.items():
                seq = self._seq[group] = self._seq.get(group, 0) + 1
                message = {"type": "board.frames", "frames": frames, "origin": self.origin, "seq": seq}
                try:
                    self._send(loop, group, message)
                    self._reachable()
                except Exception as exc:  # the board is best effort; the database is the truth
                    self._unreachable(exc, "could not push %d frame(s) to %s", len(frames), group)
                finally:
                    self._in_flight -= len(frames)
                    self._last_sent[group] = (time.monotonic(), 0)
            time.sleep(self.min_gap_s)
        self._send_marks(loop)

    def _send_marks(self, loop: asyncio.AbstractEventLoop) -> None:
        now = time.monotonic()
        for group, (at, n) in list(self._last_sent.items()):
            if now < at + self._mark_delay(n):
                continue
            if n + 1 < len(self.mark_after_s):
                self._last_sent[group] = (at, n + 1)
            else:
                del self._last_sent[group]
            message = {"type": "board.mark", "origin": self.origin, "seq": self._seq[group]}
            try:
                self._send(loop, group, message)
                self._reachable()
            except Exception as exc:
                self._unreachable(exc, "could not mark %s", group)

    def _unreachable(self, exc: Exception, what: str, *args: Any) -> None:
        """Log a failed send once per outage: a channel layer that is down (Redis not started yet, or
        restarting) would otherwise log a traceback for every frame and mark until it is back."""
        if self._failing:
            return
        self._failing = True
        log.warning(
            what + " (%s: %s); further failures are not logged until it is reachable again",
            *args,
            type(exc).__name__,
            exc,
        )

    def _reachable(self) -> None:
        if self._failing:
            self._failing = False
            log.info("the channel layer is reachable again; board frames flow")

    @staticmethod
    def _send(loop: asyncio.AbstractEventLoop, group: str, message: dict[str, Any]) -> None:
        layer = get_channel_layer()
        if layer is None:
            return
        if not _in_process(layer):
            loop.run_until_complete(layer.group_send(group, message))
            return
        target = _consumer_loop
        if target is None or target.is_closed() or not target.is_running():
            return  # no consumer serves the in-memory layer in this process: no one is watching
        asyncio.run_coroutine_threadsafe(layer.group_send(group, message), target).result(10.0)

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
_consumer_loop: asyncio.AbstractEventLoop | None = None


def serve_in_process(loop: asyncio.AbstractEventLoop) -> None:
    """Deliver in-memory layer messages on ``loop`` (the board consumers call this as they connect)."""
    global _consumer_loop
    _consumer_loop = loop


def flush(timeout: float = 5.0) -> bool:
    """Wait for the frames still queued for the channel layer (e.g. before a hub exits)."""
    return _pusher.flush(timeout)


def _in_process(layer) -> bool:
    from channels.layers import InMemoryChannelLayer

    return isinstance(layer, InMemoryChannelLayer)


def group_name(lab_slug: str) -> str:
    return f"lab.{lab_slug}"


def machine_frame(status) -> dict[str, Any]:
    """The JSON frame of one machine's live status (no personal data).

    ``commands``, the actions the machine offers (:func:`devices.capabilities.offered`), is in
    the frame when its bridge declared them; for a bridge that declared none the fallback needs
    the machine's link, which the hub does not read per status: the board's cards
    (:mod:`devices.board`) add it, and the page keeps it across the live frames without it.
    """
    frame = {
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
        "v": frame_version(status),
    }
    if isinstance(status.capabilities, list):
        from devices.capabilities import offered  # inside, as the models are: see open_alerts()

        frame["commands"] = list(offered(status))
    return frame


def frame_version(status) -> list[int]:
    """The version of a machine's frame: ``[status ts, readings ts]`` (epoch ms, 0 for none).

    Both only grow in the database (the hub applies a status or a reading only
    if it is newer than the one applied), and every frame is a picture of the
    row after a commit, so of two frames of one machine the later picture has
    the greater (or an equal) version, compared as a list.
    """
    readings_at = int(status.last_reading_at.timestamp() * 1000) if status.last_reading_at else 0
    return [status.status_ts or 0, readings_at]


def older(frame: dict[str, Any], than: dict[str, Any] | None) -> bool:
    """True when ``frame`` is a strictly older picture of its machine than ``than``.

    Frames without a version (``"v"``) are never older: nothing is known of them.
    Equal versions are not older: the later one (e.g. an alert raised) wins.
    """
    if than is None:
        return False
    a, b = frame.get("v"), than.get("v")
    return a is not None and b is not None and list(a) < list(b)


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

    The frame is queued and sent by a background thread (see :class:`_Pusher`);
    this returns at once. :func:`flush` waits for it.
    """
    layer = get_channel_layer()
    if layer is None:
        return
    frame = machine_frame(status)
    if ts is not None:
        frame["ts"] = ts
    frame["alerts"] = open_alerts(status.machine_id) if alerts is None else alerts
    _pusher.submit(group_name(status.machine.lab.slug), frame)


def push_booking_change(*, machine_id: int, **_details: Any) -> None:
    """Tell the machine's board that one of its bookings changed (checked in, no-show, completed…).

    The message is a frame ``{"type": "booking", "machine": <slug>}`` in the lab's ordered stream
    (so a lost one is repaired like any frame); it carries no booking data, since what a viewer may
    see of a booking depends on who they are: each consumer reads the machine's card again for its
    own viewer (:func:`devices.board.lab_machine_card`) and sends that. Called by
    :mod:`devices.follow` (last, so the card shows what the interlock and
    attribution followers just moved) with the signal's details, which it does not need.
    """
    from fablab.labs.models import Machine

    if get_channel_layer() is None:
        return
    machine = Machine.objects.select_related("lab").filter(pk=machine_id).first()
    if machine is not None:
        _pusher.submit(group_name(machine.lab.slug), {"type": "booking", "machine": machine.slug})


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
