"""The GRBL adapter's serial link: opening the port, the handshake, the I/O thread, reconnecting.

:class:`SerialLinkMixin` owns the port (``_ser``, ``_rxbuf``, ``_connected``, ``_offline_reason``):
:meth:`~SerialLinkMixin._run` is the adapter's I/O thread. It opens ``port`` (retrying every
``reconnect_s``), waits for the welcome (or sends a soft reset), reads one status report and ``$$``,
then cycles every ~50 ms: reads GRBL's lines and routes each (a status report, an ``ok``/``error``
that retires the oldest line in flight, a welcome, an alarm, a message, a reply that belongs to the
line being answered), reads the sender's bytes from the pass-through, pumps lines and sends ``?`` at
``status_hz``. A failed read or write closes the port and reports the machine offline; every line in
flight and every job is then over.

The handlers it calls live in :mod:`.reports`, :mod:`.streaming` and :mod:`.passthrough`; the
mixins share the state :class:`~firmware_bridge.adapters.grbl.adapter.GrblAdapter` sets up, always
under the adapter's lock.
"""

from __future__ import annotations

import contextlib
import logging
import select
import time

import serial

from firmware_bridge.adapters.base import CommandError
from firmware_bridge.adapters.grbl import facts, wire
from firmware_bridge.adapters.grbl.passthrough import PassthroughPty

log = logging.getLogger(__name__)

#: GRBL's advice: no more than 5 status queries a second.
MAX_STATUS_HZ = 5.0
#: Seconds to wait for the welcome after opening (an Arduino's bootloader takes 1-2 s).
WELCOME_WAIT_S = 2.5


class SerialLinkMixin:
    """The port and the I/O thread of a :class:`~firmware_bridge.adapters.grbl.adapter.GrblAdapter`."""

    # --- the I/O thread ---------------------------------------------------------------------------------

    def _run(self) -> None:
        self._publish_offline(self._offline_reason)
        while not self._stop.is_set():
            if self._ser is None:
                if not self._connect():
                    self._stop.wait(self.reconnect_s)
                continue
            try:
                self._cycle()
            except (serial.SerialException, OSError) as exc:
                with self._lock:
                    self._close_port(f"connection lost: {exc}")
            except CommandError as exc:  # a write failed (the port went away under us)
                with self._lock:
                    self._close_port(f"connection lost: {exc.message}")
            except Exception:  # a bug must not end the machine's thread
                log.exception("%s: unexpected error in the GRBL I/O loop", self.machine)
                time.sleep(0.2)

    def _connect(self) -> bool:
        try:
            ser = serial.Serial(self.port, self.baudrate, timeout=0, write_timeout=2, exclusive=True)
        except (serial.SerialException, OSError, ValueError) as exc:
            reason = f"cannot open {self.port}: {exc}"
            if reason != self._offline_reason:
                log.info("%s: %s", self.machine, reason)
            self._publish_offline(reason)
            return False
        try:
            ok = self._handshake(ser)
        except (serial.SerialException, OSError) as exc:
            ok = False
            self._offline_reason = f"lost {self.port} while connecting: {exc}"
        if not ok:
            with contextlib.suppress(Exception):
                ser.close()
            self._publish_offline(self._offline_reason)
            return False
        with self._lock:
            self._ser = ser
            self._connected = True
            self._offline_reason = ""
            if self.passthrough_path:
                try:
                    self._pt = PassthroughPty(self.passthrough_path)
                    self._pt.open()
                    self._sender_attached = False
                except OSError as exc:
                    log.error(
                        "%s: cannot create pass-through %s: %s", self.machine, self.passthrough_path, exc
                    )
                    self._pt = None
            log.info("%s: connected to GRBL on %s (laser mode %s)", self.machine, self.port, self.laser_mode)
            self._publish_status()
        return True

    def _handshake(self, ser: serial.Serial) -> bool:
        """Welcome (after the open's reset, or a soft reset), a first status report and ``$$``."""
        self._rxbuf.clear()
        seen_welcome = self._wait_for(ser, wire.Welcome, WELCOME_WAIT_S)
        if seen_welcome is None and self.reset_on_connect:
            ser.write(facts.SOFT_RESET)
            seen_welcome = self._wait_for(ser, wire.Welcome, WELCOME_WAIT_S)
        ser.write(facts.STATUS_QUERY)
        report = self._wait_for(ser, wire.StatusReport, 2.0)
        if report is None:
            self._offline_reason = f"no answer from GRBL on {self.port}"
            return False
        ser.write(b"$$\n")
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            parsed = self._read_parsed(ser, deadline)
            if parsed is None:
                break
            if isinstance(parsed, wire.Setting):
                self.settings[parsed.number] = parsed.value
            elif wire.is_ack(parsed):
                break
        return True

    def _wait_for(self, ser: serial.Serial, kind: type, timeout: float) -> wire.ParsedLine | None:
        deadline = time.monotonic() + timeout
        while True:
            parsed = self._read_parsed(ser, deadline)
            if parsed is None or isinstance(parsed, kind):
                return parsed

    def _read_parsed(self, ser: serial.Serial, deadline: float) -> wire.ParsedLine | None:
        """Next line during the handshake (state lines are noted on the way); ``None`` at the deadline."""
        while True:
            if b"\n" in self._rxbuf:
                raw, _, rest = bytes(self._rxbuf).partition(b"\n")
                self._rxbuf[:] = rest
                text = raw.decode("ascii", "replace").strip()
                if not text:
                    continue
                parsed = wire.parse_line(text)
                with self._lock:
                    if isinstance(parsed, wire.StatusReport):
                        self._on_status(parsed)
                    elif isinstance(parsed, wire.Alarm):
                        self._on_alarm(parsed)
                    elif isinstance(parsed, wire.Message) and parsed.kind == "MSG":
                        self._on_message(parsed)
                return parsed
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([ser.fileno()], [], [], min(left, 0.1))
            if ready:
                self._rxbuf += ser.read(ser.in_waiting or 1)

    def _cycle(self) -> None:
        ser = self._ser
        if ser is None:
            return
        poller = select.poll()
        poller.register(ser.fileno(), select.POLLIN)
        pt = self._pt
        if pt is not None and pt.is_open:
            attached = pt.sender_attached()
            if attached != self._sender_attached:
                with self._lock:
                    self._on_sender_attached(attached)
            if attached:
                poller.register(pt.fileno(), select.POLLIN)
        events = dict(poller.poll(50))
        with self._lock:
            if ser.fileno() in events:
                data = ser.read(ser.in_waiting or 1)
                self._rxbuf += data
                while b"\n" in self._rxbuf:
                    raw, _, rest = bytes(self._rxbuf).partition(b"\n")
                    self._rxbuf[:] = rest
                    self._on_device_line(raw.decode("ascii", "replace").rstrip("\r"))
            if pt is not None and pt.is_open and self._sender_attached and pt.fileno() in events:
                data = pt.read()
                if data:
                    for kind, chunk in self._sender.feed(data):
                        if kind == "rt":
                            self._on_sender_realtime(chunk)
                        else:
                            self._on_sender_line(chunk)
            self._pump()
            self._tick(time.monotonic())

    def _write(self, data: bytes) -> None:
        ser = self._ser
        if ser is None:
            raise CommandError("invalid_state", f"{self.machine} is offline")
        try:
            with self._write_lock:
                ser.write(data)
        except (serial.SerialException, OSError) as exc:
            raise CommandError("device_error", f"write to {self.port} failed: {exc}") from exc

    def _close_port(self, reason: str, *, report: bool = True) -> None:
        self._offline_reason = reason
        ser, self._ser = self._ser, None
        if ser is not None:
            with contextlib.suppress(Exception):
                ser.close()
        if self._pt is not None:
            self._pt.close()  # the sender sees its port vanish, as with a USB cable
            self._pt = None
        was_connected = self._connected
        self._connected = False
        self._sender_attached = False
        self._inflight.clear()
        self._own_queue.clear()
        self._held.clear()
        self._sender.clear()
        self._polls.clear()
        self._rxbuf.clear()
        self._report = None
        self._cancel = None
        for job in (self._job, self._pending_job):
            if job is not None:
                self._finish_job(job, "failed", {"reason": reason})
        if was_connected:
            log.warning("%s: %s", self.machine, reason)
        if report:
            self._publish_offline(reason)
        self._changed.notify_all()

    # --- from GRBL ------------------------------------------------------------------------------------

    def _on_device_line(self, text: str) -> None:
        stripped = text.strip()
        if not stripped:
            return
        parsed = wire.parse_line(stripped)
        now = time.monotonic()
        if isinstance(parsed, wire.StatusReport):
            forward = self._polls.route_report(now, sender_attached=self._sender_attached)
            if forward:
                self._to_sender(stripped)
            self._on_status(parsed)
            return
        if wire.is_ack(parsed):
            entry = self._inflight.popleft() if self._inflight else None
            if entry is None or entry.owner == "sender":
                self._to_sender(stripped)
            self._on_ack(entry, parsed)
            self._answer_local()
            return
        if isinstance(parsed, wire.Welcome):
            self._to_sender("")
            self._to_sender(stripped)
            self._on_welcome()
            return
        if isinstance(parsed, wire.Alarm):
            self._to_sender(stripped)
            self._on_alarm(parsed)
            return
        if isinstance(parsed, wire.Message) and parsed.kind == "MSG":
            self._to_sender(stripped)
            self._on_message(parsed)
            return
        if isinstance(parsed, wire.Setting):
            self.settings[parsed.number] = parsed.value
        if isinstance(parsed, wire.StartupLine):
            self._to_sender(stripped)
            return
        # A reply that belongs to the line being answered ($$ lines, [GC:], [VER:]…).
        head = self._inflight[0] if self._inflight else None
        if head is None or head.owner == "sender":
            self._to_sender(stripped)
        else:
            head.response.append(stripped)

    def _to_sender(self, text: str) -> None:
        if self._pt is not None and self._sender_attached:
            try:
                self._pt.write(text.encode("ascii", "replace") + b"\r\n")
            except OSError as exc:
                log.warning("%s: pass-through write failed: %s", self.machine, exc)

    def _tick(self, now: float) -> None:
        """Every I/O cycle: a ``?`` when one is due (unless the sender polls), then the job timers."""
        interval = 1.0 / min(self.status_hz, MAX_STATUS_HZ)
        if now - self._last_poll >= interval and (
            not self._sender_attached or self._polls.bridge_may_poll(now)
        ):
            self._last_poll = now
            self._polls.bridge_polled(now)
            self._write(facts.STATUS_QUERY)
        self._tick_cancel(now)
        self._tick_job(now)
