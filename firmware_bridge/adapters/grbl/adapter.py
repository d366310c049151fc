"""GRBL 1.1 adapter: a CNC or laser controller on a USB serial port (pyserial).

:class:`GrblAdapter` is the :class:`~firmware_bridge.adapters.base.Adapter` the bridge runs: its
options, its life cycle, the commands and their acknowledgements, and the interlock. The work is
shared with the modules beside it, one concern each, joined here as mixins over one set of state
guarded by the adapter's lock:

- :mod:`.link` — the serial link in its own I/O thread (:meth:`GrblAdapter.setup` starts it): opens
  ``port`` by its configured path (a udev ``/dev/serial/by-id/…`` link), waits for the welcome line the
  Arduino sends after the open resets it (else sends a soft reset), reads ``$$`` (laser mode ``$32``,
  ``$30``, ``$13``), polls ``?`` at ``status_hz`` (at most 5 Hz, or only listens while a sender on the
  pass-through polls), and when the port vanishes (cable pulled) reports ``offline`` and reopens the
  same path when it reappears;
- :mod:`.reports` — what GRBL reports: GRBL states mapped onto the contract (Idle/Sleep/Check → idle;
  Run/Jog/Home → running; Hold/Door → paused; Alarm → error with the alarm's code and meaning), the
  events ``alarm``, ``grbl_message`` (``[MSG:…]``), ``door_opened``/``door_closed``, and telemetry
  ``feed_mm_min``, ``spindle_rpm`` or — in laser mode — ``laser_power_pct`` (S relative to ``$30``),
  ``pos_x_mm``/``pos_y_mm``/``pos_z_mm`` (work coordinates once ``WCO`` is known),
  ``feed_override_pct``, ``rapid_override_pct``, ``spindle_override_pct`` and ``progress_pct``;
- :mod:`.streaming` — G-code files streamed with the character-counting protocol
  (:meth:`GrblAdapter.start_job`), ``grbl_error`` (``error:n`` with its meaning), the job events, and
  the cancel sequence (feed hold, then soft reset once the hold is complete, so no ``ALARM:3``; if one
  comes anyway the adapter unlocks with ``$X`` and says so in the event);
- :mod:`.passthrough` — the pty for a sender program, with its rules;
- :mod:`.sender` — :func:`~.sender.send_file`, the ``send`` command line.

This module acknowledges a command only once GRBL's own status reports confirm it, within
``confirm_timeout_s`` (:data:`CONFIRM_TIMEOUT_S`): ``pause`` (``!``) when the hold is complete
(``Hold:0``), ``resume`` (``~``) when the machine left ``Hold`` (a resume during a hold that still
decelerates, ``Hold:1``, first waits for ``Hold:0``: GRBL ignores a cycle start before that),
``cancel`` when the job has ended and the machine stands still, ``disable`` when a running machine is
held. Otherwise :class:`CommandError` ``not_confirmed`` (the command was sent, the machine did not
show it) — never a hopeful ``ok``.

It enforces the interlock: while disabled it refuses jobs and resumes, feed-holds any ``Run`` (cancels
any ``Jog``) it sees, and the pass-through answers every line of the sender ``error:9`` itself and drops
every realtime byte but ``?``, so nothing else of the sender's reaches the controller.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import serial

from firmware_bridge.adapters.base import (
    PAUSED,
    RUNNING,
    Adapter,
    AdapterSink,
    CommandError,
    register,
)
from firmware_bridge.adapters.grbl import facts, wire
from firmware_bridge.adapters.grbl.link import MAX_STATUS_HZ, SerialLinkMixin
from firmware_bridge.adapters.grbl.passthrough import (
    PassthroughPty,
    SenderSideMixin,
    SenderStream,
    StatusPollArbiter,
)
from firmware_bridge.adapters.grbl.reports import ReportsMixin
from firmware_bridge.adapters.grbl.streaming import StreamingMixin, _Cancel, _InFlight, _Job
from firmware_bridge.protocol import JOB_ACTIONS, NOT_CONFIRMED

log = logging.getLogger(__name__)

#: Default of ``confirm_timeout_s``: how long a command waits for GRBL's reports to confirm it (and a
#: cancel for the hold to complete before it resets anyway). A hold takes v/a: 8 s from 5000 mm/min at
#: GRBL's default acceleration of 10 mm/s², far less on a tuned machine.
CONFIRM_TIMEOUT_S = 10.0

_OPTION_KEYS = {
    "port",
    "baudrate",
    "passthrough",
    "status_hz",
    "reset_on_connect",
    "reconnect_s",
    "confirm_timeout_s",
}


@register
class GrblAdapter(SerialLinkMixin, ReportsMixin, StreamingMixin, SenderSideMixin, Adapter):
    """A GRBL 1.1 machine on a serial port; see the module docstring."""

    name = "grbl"
    #: Feed hold, cycle start and the cancel sequence (see :meth:`command`).
    capabilities = JOB_ACTIONS
    #: poll() publishes telemetry and status once a second; ``?`` polling runs in the I/O thread.
    poll_interval_s = 1.0

    def __init__(
        self,
        machine: str,
        options: Mapping[str, Any],
        sink: AdapterSink,
        *,
        interlock: bool = False,
        enabled: bool = True,
    ) -> None:
        super().__init__(machine, options, sink, interlock=interlock, enabled=enabled)
        self.port: str = str(options["port"])
        self.baudrate = int(options.get("baudrate", 115200))
        self.passthrough_path: str | None = options.get("passthrough") or None
        self.status_hz = float(options.get("status_hz", 4.0))
        self.reset_on_connect = bool(options.get("reset_on_connect", True))
        self.reconnect_s = float(options.get("reconnect_s", 1.0))
        self.confirm_timeout_s = float(options.get("confirm_timeout_s", CONFIRM_TIMEOUT_S))
        self.settings: dict[int, float] = {}
        # All state below is shared by the mixins and guarded by ``_lock``.
        #: Notified (under ``_lock``) on every report, reset, alarm, job end and disconnect.
        self._changed = threading.Condition(self._lock)
        # The serial link (link.py).
        self._ser: serial.Serial | None = None
        self._write_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._rxbuf = bytearray()
        self._last_poll = 0.0
        self._offline_reason = "not connected yet"
        self._connected = False
        # Lines in GRBL's RX buffer, the bridge's own lines waiting, jobs and the cancel (streaming.py).
        self._inflight: collections.deque[_InFlight] = collections.deque()
        self._own_queue: collections.deque[_InFlight] = collections.deque()
        self._job: _Job | None = None
        self._pending_job: _Job | None = None
        self._last_job: _Job | None = None
        self._cancel: _Cancel | None = None
        # The sender on the pass-through (passthrough.py).
        self._held: collections.deque[bytes] = collections.deque()
        self._pt: PassthroughPty | None = None
        self._sender = SenderStream()
        self._polls = StatusPollArbiter()
        self._sender_attached = False
        self._sender_marker: tuple[str, int] | None = None
        self._sender_lines = 0
        self._sender_acks = 0
        # What GRBL reported, and what was published (reports.py).
        self._report: wire.StatusReport | None = None
        self._report_t = 0.0
        self._wco: tuple[float, ...] | None = None
        self._overrides: tuple[int, int, int] | None = None
        self._alarm_code: int | None = None
        self._door_open = False
        self._last_hold_sent = 0.0
        self._published: tuple[Any, ...] | None = None
        #: Status reports read so far (from the adapter's own queries and the sender's).
        self.reports_seen = 0

    # --- options ------------------------------------------------------------------------------------

    @classmethod
    def validate_options(cls, options: Mapping[str, Any]) -> list[str]:
        problems: list[str] = []
        for key in options:
            if key not in _OPTION_KEYS:
                problems.append(f"options.{key}: unknown option for the grbl adapter")
        port = options.get("port")
        if not isinstance(port, str) or not port:
            problems.append("options.port: required, the serial port path (e.g. /dev/serial/by-id/usb-…)")
        baud = options.get("baudrate", 115200)
        if isinstance(baud, bool) or not isinstance(baud, int) or baud <= 0:
            problems.append(f"options.baudrate: must be a positive integer (GRBL uses 115200), got {baud!r}")
        pt = options.get("passthrough")
        if pt is not None and (not isinstance(pt, str) or not pt.startswith("/")):
            problems.append(
                f"options.passthrough: must be an absolute path for the sender's pty link, got {pt!r}"
            )
        if isinstance(pt, str) and pt and pt == port:
            problems.append("options.passthrough: must differ from options.port")
        hz = options.get("status_hz", 4.0)
        if isinstance(hz, bool) or not isinstance(hz, int | float) or not 0 < hz <= MAX_STATUS_HZ:
            problems.append(
                f"options.status_hz: must be a number above 0 and at most 5 (GRBL's advice), got {hz!r}"
            )
        reset = options.get("reset_on_connect", True)
        if not isinstance(reset, bool):
            problems.append(f"options.reset_on_connect: must be true or false, got {reset!r}")
        rec = options.get("reconnect_s", 1.0)
        if isinstance(rec, bool) or not isinstance(rec, int | float) or not 0 < rec <= 60:
            problems.append(f"options.reconnect_s: must be a number of seconds in (0, 60], got {rec!r}")
        confirm = options.get("confirm_timeout_s", CONFIRM_TIMEOUT_S)
        if isinstance(confirm, bool) or not isinstance(confirm, int | float) or not 0 < confirm <= 120:
            problems.append(
                f"options.confirm_timeout_s: must be a number of seconds in (0, 120], got {confirm!r}"
            )
        return problems

    # --- life cycle -----------------------------------------------------------------------------------

    def setup(self) -> None:
        """Start the I/O thread. Never raises for a missing port: the thread keeps trying."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=f"grbl-{self.machine}", daemon=True)
            self._thread.start()

    def poll(self) -> None:
        """Publish the latest telemetry and status (the I/O thread started by setup() does the serial work)."""
        with self._lock:
            self._publish_status()
            values = self._telemetry_values()
        if values:
            self.sink.telemetry(values)

    def close(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)
        with self._lock:
            self._thread = None
            self._close_port("bridge stopping", report=False)

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def grbl_state(self) -> str | None:
        """The last GRBL state seen (``Hold:0`` style), or ``None`` when offline."""
        report = self._report
        if not self._connected or report is None:
            return None
        return wire.state_name(report)

    @property
    def sender_attached(self) -> bool:
        """True while a sender has the pass-through open (checked every I/O cycle, ~50 ms)."""
        return self._sender_attached

    @property
    def laser_mode(self) -> bool:
        return bool(self.settings.get(32, 0))

    # --- commands (any thread) --------------------------------------------------------------------------

    def command(self, action: str, params: Mapping[str, Any] | None = None) -> None:
        """Carry out ``action`` and return once GRBL's reports confirm it (see the module docstring).

        Raises :class:`CommandError`: ``invalid_state`` when the machine cannot do it now (nothing
        sent), ``not_confirmed`` when it was sent but the reports did not show it within
        ``confirm_timeout_s``, ``device_error`` when the port failed. Must not run on the I/O thread.
        """
        if action in ("enable", "disable"):
            super().command(action, params)
            if action == "disable":
                self._confirm_disabled()
            return
        if action == "pause":
            self._pause()
            return
        if action == "resume":
            self._resume()
            return
        if action == "cancel":
            self._cancel_job()
            return
        raise CommandError("unsupported", f"grbl adapter cannot {action}")

    # Predicates on the last report (called under the lock).

    def _grbl(self) -> tuple[str | None, int | None]:
        report = self._report
        return (report.state, report.substate) if report is not None else (None, None)

    def _still_moving(self) -> bool:
        """Run, Jog, Home, a hold that still decelerates (Hold:1, Door:2) or a door restore (Door:3)."""
        state, sub = self._grbl()
        return state in ("Run", "Jog", "Home") or (state, sub) in (("Hold", 1), ("Door", 2), ("Door", 3))

    def _await(self, predicate: Callable[[], bool], deadline: float) -> bool:
        """Under the lock: wait for ``predicate`` (re-checked on every change) until ``deadline``."""
        while not predicate():
            if not self._connected:
                raise CommandError("device_error", f"{self.machine} went offline ({self._offline_reason})")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._changed.wait(min(remaining, 0.2))
        return True

    def _ask_now(self) -> None:
        """Under the lock: let the I/O thread send its next ``?`` at once (if the sender is not polling)."""
        self._last_poll = 0.0

    def _pause(self) -> None:
        with self._lock:
            if not self._connected:
                raise CommandError("invalid_state", f"{self.machine} is offline ({self._offline_reason})")
            state = self._contract_state()
            if state != RUNNING:
                raise CommandError("invalid_state", f"cannot pause: machine is {state}")
            jog = self._grbl()[0] == "Jog"
            self._write(facts.JOG_CANCEL if jog else facts.FEED_HOLD)
            self._ask_now()
            deadline = time.monotonic() + self.confirm_timeout_s

            def stopped() -> bool:
                grbl, sub = self._grbl()
                if jog:
                    return grbl in ("Idle", "Hold", "Door") and not self._still_moving()
                return (grbl, sub) in (("Hold", 0), ("Door", 0), ("Door", 1)) or grbl in ("Alarm", "Idle")

            if not self._await(stopped, deadline):
                raise CommandError(
                    NOT_CONFIRMED,
                    f"{'jog cancel' if jog else 'feed hold'} sent, but GRBL still reports "
                    f"{self.grbl_state} after {self.confirm_timeout_s:g} s",
                )
            grbl = self._grbl()[0]
            if grbl == "Alarm":
                raise CommandError("device_error", f"{self.machine} went into alarm while pausing")
            if grbl == "Idle" and not jog:
                # The motion ended before the hold took hold: nothing is paused, and GRBL says so.
                raise CommandError("invalid_state", "cannot pause: the machine finished its motion first")

    def _resume(self) -> None:
        with self._lock:
            deadline = time.monotonic() + self.confirm_timeout_s
            self._check_resumable()
            if self._still_moving():
                # A hold still decelerating (Hold:1, Door:2): GRBL would drop a '~' now (protocol.c:
                # cycle start only when the hold is complete). Wait for Hold:0 first, then resume.
                self._ask_now()
                if not self._await(lambda: not self._still_moving() or not self._resumable(), deadline):
                    raise CommandError(
                        NOT_CONFIRMED,
                        f"cannot resume yet: the hold is still decelerating ({self.grbl_state}) after "
                        f"{self.confirm_timeout_s:g} s; resume not sent",
                    )
                self._check_resumable()
            self._write(facts.CYCLE_START)
            self._ask_now()
            if not self._await(lambda: self._grbl()[0] not in ("Hold", "Door"), deadline):
                raise CommandError(
                    NOT_CONFIRMED,
                    f"cycle start sent, but GRBL still reports {self.grbl_state} after "
                    f"{self.confirm_timeout_s:g} s",
                )
            if self._grbl()[0] == "Alarm":
                raise CommandError("device_error", f"{self.machine} went into alarm while resuming")

    def _resumable(self) -> bool:
        try:
            self._check_resumable()
        except CommandError:
            return False
        return True

    def _check_resumable(self) -> None:
        """Under the lock: raise ``invalid_state`` unless a resume may be sent now or once the hold completes."""
        if self.interlock and not self._enabled:
            raise CommandError("invalid_state", "cannot resume: the machine is disabled by the interlock")
        if not self._connected:
            raise CommandError("invalid_state", f"{self.machine} is offline ({self._offline_reason})")
        state = self._contract_state()
        if state != PAUSED:
            raise CommandError("invalid_state", f"cannot resume: machine is {state}")
        if self._door_open:
            raise CommandError("invalid_state", "cannot resume: the safety door is open")

    def _cancel_job(self) -> None:
        with self._lock:
            if not self._connected:
                raise CommandError("invalid_state", f"{self.machine} is offline ({self._offline_reason})")
            state = self._contract_state()
            if state not in (RUNNING, PAUSED) and self._job is None and self._pending_job is None:
                raise CommandError("invalid_state", f"nothing to cancel: machine is {state}")
            if self._pending_job is not None and self._job is None:
                job, self._pending_job = self._pending_job, None
                self._finish_job(job, "cancelled", {"reason": "cancelled before it started"})
                return
            if self._cancel is None:
                self._cancel = _Cancel("cancelled", {"reason": "cancel command"}, time.monotonic())
            job = self._job
            # The hold may take confirm_timeout_s, then the reset's welcome up to 5 s.
            deadline = time.monotonic() + self.confirm_timeout_s + 6.0

            def done() -> bool:
                ended = job is None or job.outcome is not None
                return (
                    ended and self._cancel is None and self._grbl()[0] in ("Idle", "Alarm", "Check", "Sleep")
                )

            if not self._await(done, deadline):
                raise CommandError(
                    NOT_CONFIRMED,
                    f"cancel under way, but GRBL still reports {self.grbl_state} after "
                    f"{self.confirm_timeout_s + 6.0:g} s",
                )

    def _confirm_disabled(self) -> None:
        """After ``disable``: a machine that was running must be seen standing still (held)."""
        with self._lock:
            if not self.interlock:
                return
            if not self._connected:
                # The bridge now refuses every job and sender line, and a machine found running at
                # reconnect is held; but nothing can tell what the controller is doing now.
                raise CommandError(
                    NOT_CONFIRMED,
                    "disabled on the bridge, but GRBL is not connected: cannot confirm it stands still",
                )
            self._ask_now()
            deadline = time.monotonic() + self.confirm_timeout_s
            if not self._await(lambda: not self._still_moving() or self._grbl()[0] == "Home", deadline):
                raise CommandError(
                    NOT_CONFIRMED,
                    f"disabled, and a feed hold sent, but GRBL still reports {self.grbl_state} after "
                    f"{self.confirm_timeout_s:g} s",
                )

    def set_enabled(self, enabled: bool, *, initial: bool = False) -> None:
        """Record the interlock; disabling feed-holds a running job (never on ``initial`` restore).

        Disabling also answers the sender's lines that wait in the bridge with ``error:9``: from now on
        nothing of the sender's but ``?`` reaches the controller.
        """
        with self._lock:
            self._enabled = enabled if self.interlock else True
            if self._enabled:
                return
            while self._held:
                self._refuse_sender_line(self._held.popleft())
            if initial or not self._connected:
                return
            grbl = self._report.state if self._report else None
            try:
                if grbl == "Run":
                    self._write(facts.FEED_HOLD)
                    self._last_hold_sent = time.monotonic()
                elif grbl == "Jog":
                    self._write(facts.JOG_CANCEL)
            except CommandError:
                log.warning("%s: could not hold the machine while disabling", self.machine)
            self._publish_status()
