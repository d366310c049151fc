"""GRBL pass-through: a pseudo-terminal that a sender program opens instead of the machine's USB port.

In a lab the job comes from a sender on the lab PC (Universal Gcode Sender, bCNC, LightBurn). The
bridge owns the USB port, so it exposes a pty — with a symlink at a configured path, e.g.
``/dev/fablab/cnc-router`` — and forwards bytes both ways. The GRBL adapter watches the traffic for
state, alarms and progress. The rules that keep the sender undisturbed are:

1. **Realtime bytes** (``?`` ``!`` ``~`` Ctrl-X, 0x80-0xFF) from the sender go to GRBL at once, as GRBL
   picks them out of the stream anyway. The only exception: while the interlock has the machine
   disabled, every realtime byte but ``?`` is dropped (``~`` would resume a job the bridge held).
   Likewise every line is then answered ``error:9`` by the bridge itself and never reaches GRBL,
   spindle and laser commands included (see :meth:`SenderSideMixin._refuse_sender_line`).
2. **Lines** are forwarded whole; each ``\\r`` or ``\\n`` ends one line and earns one ``ok``/``error``
   from GRBL (an empty line is answered ``ok`` too). The adapter keeps one FIFO of every line in
   GRBL's RX buffer with its owner, so each ``ok``/``error`` goes back to whoever sent that line.
3. **One owner of the RX buffer at a time.** A sender counts characters assuming the 127-byte buffer is
   its own. So the bridge sends its own lines (``$$`` at connect, ``$X`` after a cancel, a job started
   by the bridge) only while no sender line is in flight, and the sender's lines wait in the bridge
   while the bridge has lines in flight. Waiting only delays the sender's ``ok``; its count stays right.
4. **Status reports.** The adapter needs a report a few times a second. Senders poll ``?`` themselves
   (UGS, bCNC, LightBurn all do), so while the sender has polled within :data:`SENDER_QUIET_S` the
   adapter only reads the sender's reports. When the sender is silent the adapter sends its own ``?``
   and swallows the report it caused. :class:`StatusPollArbiter` decides, report by report, whether a
   report answers the sender (forward) or the bridge (swallow); as GRBL answers two ``?`` sent before
   a report with one report, a report is forwarded whenever the sender has a query outstanding.
5. **Push messages** (``ALARM:n``, ``[MSG:…]``, the welcome line) always reach the sender. Replies that
   belong to a line (``$n=`` settings, ``[GC:…]``, ``[VER:…]``…) go to the owner of that line.
6. **A job marker.** ``python -m firmware_bridge send`` (``send_file``) first sends the comment line
   ``(FABLAB JOB lines=N name=…)``. The pass-through answers it itself (``ok``, or ``error:9`` with a
   ``[MSG:…]`` when the interlock has the machine disabled) and learns the job's name and size, so
   progress can be reported. GRBL would ignore the comment anyway, so a sender may send it too.
7. **Open = reset.** Opening a USB GRBL resets the Arduino (DTR), and senders expect the welcome that
   follows. When a sender opens the pty while the machine is not moving, the adapter sends GRBL a soft
   reset so that a genuine welcome reaches it. It never resets a moving machine.
8. **Unplugged = gone.** When the machine's port disappears, the pty closes and its link is removed,
   so the sender sees a disconnect as it would with a USB cable; both come back together.

:class:`PassthroughPty`, :class:`SenderStream` and :class:`StatusPollArbiter` are the pieces;
:class:`SenderSideMixin` is the adapter's side, applying the rules to every byte the sender sends.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import fcntl
import logging
import os
import re
import select
import time
import tty
import uuid

from firmware_bridge.adapters.base import CommandError
from firmware_bridge.adapters.grbl import facts
from firmware_bridge.adapters.grbl.facts import is_realtime_byte
from firmware_bridge.adapters.grbl.streaming import _InFlight, _Job, _now_ms

log = logging.getLogger(__name__)

#: What the pass-through answers each line of a sender while the interlock has the machine disabled.
#: error:9 ("G-code locked out during alarm or jog state") is what senders already show and stop on.
DISABLED_LINE_REPLY = ("[MSG:FabLab interlock: machine disabled]", "error:9")
#: While the sender has polled ``?`` within this many seconds, the bridge sends no ``?`` of its own.
SENDER_QUIET_S = 1.0
#: A status query unanswered after this long is forgotten (GRBL may ignore ``?`` during an alarm).
POLL_EXPIRY_S = 1.0

_MARKER_RE = re.compile(r"^\(FABLAB JOB lines=(\d+)(?: name=([^)]*))?\)\s*$")


def job_marker(name: str, lines: int) -> str:
    """The comment line that announces a job of ``lines`` lines named ``name`` (no terminator)."""
    safe = "".join(c for c in name if 0x20 <= ord(c) < 0x7F and c not in "()!?~;")[:60].strip()
    return f"(FABLAB JOB lines={int(lines)} name={safe})" if safe else f"(FABLAB JOB lines={int(lines)})"


def parse_job_marker(line: bytes | str) -> tuple[str, int] | None:
    """``(name, lines)`` when ``line`` is a job marker, else ``None``."""
    text = line.decode("ascii", "replace") if isinstance(line, bytes) else line
    match = _MARKER_RE.match(text.strip())
    if not match:
        return None
    return (match.group(2) or "").strip(), int(match.group(1))


class SenderStream:
    """Splits a sender's byte stream into realtime bytes and complete lines.

    :meth:`feed` returns items in arrival order: ``("rt", b"?")`` for a realtime byte, or
    ``("line", b"G1X1\\n")`` for a line with its single terminator byte. A partial line is kept.
    """

    MAX_LINE = 256  # a sender line longer than this is passed on in pieces; GRBL will reject it

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[str, bytes]]:
        out: list[tuple[str, bytes]] = []
        for byte in data:
            if is_realtime_byte(byte):
                out.append(("rt", bytes([byte])))
                continue
            self._buf.append(byte)
            if byte in (0x0A, 0x0D) or len(self._buf) >= self.MAX_LINE:
                out.append(("line", bytes(self._buf)))
                self._buf.clear()
        return out

    def clear(self) -> None:
        self._buf.clear()


class StatusPollArbiter:
    """Decides who a status report answers: the sender (forward it) or the bridge (swallow it)."""

    def __init__(self) -> None:
        self._queries: collections.deque[tuple[str, float]] = collections.deque()
        self.last_sender_poll = float("-inf")
        self.swallowed = 0
        self.forwarded = 0
        # Times of bridge queries retired with a sender's: GRBL may have merged them into that one
        # report, or may still answer the bridge's with a report of its own (it was generated before
        # the sender's ``?`` arrived); such a report is the bridge's, not news for the sender.
        self._retired_bridge: collections.deque[float] = collections.deque()

    def sender_polled(self, now: float) -> None:
        self.last_sender_poll = now
        self._queries.append(("sender", now))

    def bridge_polled(self, now: float) -> None:
        self._queries.append(("bridge", now))

    def bridge_may_poll(self, now: float) -> bool:
        """True when the sender is not polling, so the bridge must ask for itself."""
        if now - self.last_sender_poll < SENDER_QUIET_S:
            return False
        return not any(who == "bridge" and now - t < POLL_EXPIRY_S / 2 for who, t in self._queries)

    def route_report(self, now: float, *, sender_attached: bool) -> bool:
        """A report arrived: True to forward it to the sender, False to swallow it."""
        while self._queries and now - self._queries[0][1] > POLL_EXPIRY_S:
            self._queries.popleft()
        while self._retired_bridge and now - self._retired_bridge[0] > POLL_EXPIRY_S:
            self._retired_bridge.popleft()
        if not sender_attached:
            self._queries.clear()
            self._retired_bridge.clear()
            return False
        if any(who == "sender" for who, _ in self._queries):
            # One report answers every query sent before it was generated: retire up to the first
            # sender query, bridge queries older than it included.
            while self._queries:
                who, at = self._queries.popleft()
                if who == "sender":
                    break
                self._retired_bridge.append(at)
            self.forwarded += 1
            return True
        if self._queries:
            self._queries.popleft()
            self.swallowed += 1
            return False
        if self._retired_bridge:
            # The answer to a bridge query retired with the sender's above (GRBL did not merge them).
            self._retired_bridge.popleft()
            self.swallowed += 1
            return False
        self.forwarded += 1
        return True  # unsolicited (a fork's auto-report, or a late one): the sender may want it

    def clear(self) -> None:
        self._queries.clear()
        self._retired_bridge.clear()


class PassthroughPty:
    """The pty end the sender opens, with a symlink at ``link_path`` pointing to it.

    Not thread-safe: the adapter's I/O thread is its only user.
    """

    def __init__(self, link_path: str) -> None:
        self.link_path = link_path
        self._master: int | None = None
        self.slave_name: str | None = None
        self._poller: select.poll | None = None

    @property
    def is_open(self) -> bool:
        return self._master is not None

    def fileno(self) -> int:
        if self._master is None:
            raise OSError(errno.EBADF, "pass-through closed")
        return self._master

    def open(self) -> str:
        """Create the pty and point the link at it; return the slave's path."""
        self.close()
        master, slave = os.openpty()
        tty.setraw(slave)  # a serial line: no echo, no newline translation
        name = os.ttyname(slave)
        os.close(slave)  # POLLHUP on the master now means "no sender has it open"
        flags = fcntl.fcntl(master, fcntl.F_GETFL)
        fcntl.fcntl(master, fcntl.F_SETFL, flags | os.O_NONBLOCK)
        directory = os.path.dirname(os.path.abspath(self.link_path))
        os.makedirs(directory, exist_ok=True)
        tmp = f"{self.link_path}.tmp{os.getpid()}"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.symlink(name, tmp)
        os.replace(tmp, self.link_path)  # atomic: a sender never sees a half-made link
        self._master, self.slave_name = master, name
        self._poller = select.poll()
        self._poller.register(master, select.POLLIN)
        return name

    def close(self) -> None:
        """Remove the link and close the pty: an open sender sees the port vanish."""
        if self._master is None:
            return
        with contextlib.suppress(FileNotFoundError):
            if os.path.islink(self.link_path) and os.readlink(self.link_path) == self.slave_name:
                os.unlink(self.link_path)
        with contextlib.suppress(OSError):
            os.close(self._master)
        self._master = None
        self._poller = None

    def sender_attached(self) -> bool:
        """True while some process has the pty open."""
        if self._poller is None:
            return False
        try:
            events = self._poller.poll(0)
        except OSError:
            return False
        return not any(ev & (select.POLLHUP | select.POLLERR) for _, ev in events)

    def read(self) -> bytes:
        """What the sender wrote (non-blocking); ``b""`` when nothing or no sender."""
        if self._master is None:
            return b""
        try:
            return os.read(self._master, 4096)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EIO):
                return b""
            raise

    def write(self, data: bytes) -> None:
        """Send to the sender; dropped when none is attached (as on an unconnected serial line)."""
        if self._master is None:
            return
        try:
            os.write(self._master, data)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EIO):
                raise


# --- the adapter's side: what the sender sends, under the rules above --------------------------------


class SenderSideMixin:
    """A :class:`~firmware_bridge.adapters.grbl.adapter.GrblAdapter`'s handling of the sender's bytes."""

    def _on_sender_attached(self, attached: bool) -> None:
        self._sender_attached = attached
        self._sender.clear()
        self._polls.clear()
        if not attached:
            self._held.clear()
            log.info("%s: sender left the pass-through", self.machine)
            return
        log.info("%s: a sender opened the pass-through", self.machine)
        grbl = self._report.state if self._report else None
        moving = (
            grbl in ("Run", "Jog", "Home", "Hold", "Door")
            or self._job is not None
            or self._cancel is not None
        )
        if not moving and not self._inflight and not self._own_queue:
            # Like a USB open resetting the Arduino: the sender gets a genuine welcome.
            with contextlib.suppress(CommandError):
                self._write(facts.SOFT_RESET)

    def _on_sender_realtime(self, byte: bytes) -> None:
        now = time.monotonic()
        if byte == facts.STATUS_QUERY:
            self._polls.sender_polled(now)
        elif self.interlock and not self._enabled:
            # Disabled: only status queries pass. A cycle start would resume a held job, overrides and
            # a reset change what the machine does; the bridge holds it already (a cancel command stops
            # a job for good).
            log.warning(
                "%s: realtime byte 0x%02x from the sender dropped: disabled by the interlock",
                self.machine,
                byte[0],
            )
            return
        elif byte == facts.SOFT_RESET:
            self._held.clear()
        with contextlib.suppress(CommandError):
            self._write(byte)

    def _on_sender_line(self, line: bytes) -> None:
        text = line.decode("ascii", "replace")
        marker = parse_job_marker(text)
        if marker is not None:
            if self.interlock and not self._enabled:
                reply = ["[MSG:FabLab interlock: machine disabled, job refused]", "error:9"]
            else:
                reply = ["ok"]
                self._sender_marker = marker
                self._sender_lines = 0
                self._sender_acks = 0
            entry = _InFlight("local", 0, text.strip(), reply=reply)
            self._inflight.append(entry)
            self._answer_local()
            return
        if self.interlock and not self._enabled:
            self._refuse_sender_line(line)
            return
        if self._held or self._bridge_owns_buffer():
            self._held.append(line)
            return
        self._send_sender_line(line)

    def _refuse_sender_line(self, line: bytes) -> None:
        """Answer a sender's line ``error:9`` here (in its turn after the lines in flight): it never
        reaches the controller. Spindle and laser words (M3, M4, S…) included."""
        text = line.decode("ascii", "replace").strip()
        log.info("%s: sender line %r refused: disabled by the interlock", self.machine, text[:80])
        self._inflight.append(_InFlight("local", 0, text, reply=list(DISABLED_LINE_REPLY)))
        self._answer_local()

    def _send_sender_line(self, line: bytes) -> None:
        self._write(line)
        self._inflight.append(_InFlight("sender", len(line), line.decode("ascii", "replace").strip()))
        self._sender_lines += 1

    def _bridge_owns_buffer(self) -> bool:
        if any(entry.owner in ("bridge", "job") for entry in self._inflight):
            return True
        return self._job is not None and self._job.source == "bridge"

    def _sender_lines_active(self) -> bool:
        return any(entry.owner == "sender" for entry in self._inflight) or self._sender_lines > 0

    def _start_sender_job(self) -> None:
        name, total = self._sender_marker or ("sender job", None)
        job = _Job(id=str(uuid.uuid4()), name=name or "sender job", started_ts=_now_ms(), source="sender")
        job.total = total
        # Lines acknowledged before GRBL showed Run (the planner fills first) belong to the job too.
        job.acked = self._sender_acks
        self._job = job
        self._sender_marker = None
        self.sink.event("job_started", job=job.info(), detail={"source": "passthrough"})
        log.info("%s: job started by the sender (%s)", self.machine, job.name)
        self._publish_status()
