"""GRBL 1.1 adapter: a CNC or laser controller on a USB serial port (pyserial).

What it does, in its own I/O thread (:meth:`GrblAdapter.setup` starts it):

- opens ``port`` by its configured path (a udev ``/dev/serial/by-id/…`` link), waits for the welcome
  line the Arduino sends after the open resets it (else sends a soft reset), reads ``$$`` (laser mode
  ``$32``, ``$30``, ``$13``), and when the port vanishes (cable pulled) reports ``offline`` and reopens
  the same path when it reappears;
- polls ``?`` at ``status_hz`` (at most 5 Hz) — or only listens, while a sender on the pass-through
  polls; maps GRBL states onto the contract (Idle/Sleep/Check → idle; Run/Jog/Home → running;
  Hold/Door → paused; Alarm → error with the alarm's code and meaning);
- reports ``alarm``, ``grbl_error`` (``error:n`` with its meaning), ``grbl_message`` (``[MSG:…]``),
  ``door_opened``/``door_closed`` and the job events; telemetry ``feed_mm_min``, ``spindle_rpm`` or —
  in laser mode — ``laser_power_pct`` (S relative to ``$30``), ``pos_x_mm``/``pos_y_mm``/``pos_z_mm``
  (work coordinates once ``WCO`` is known), ``feed_override_pct``, ``rapid_override_pct``,
  ``spindle_override_pct`` and ``progress_pct`` during a job;
- streams G-code files with the character-counting protocol (:meth:`GrblAdapter.start_job`), pauses
  (``!``), resumes (``~``) and cancels (feed hold, then soft reset once the hold is complete, so no
  ``ALARM:3``; if one comes anyway the adapter unlocks with ``$X`` and says so in the event);
- acknowledges a command only once GRBL's own status reports confirm it, within ``confirm_timeout_s``
  (:data:`CONFIRM_TIMEOUT_S`): ``pause`` when the hold is complete (``Hold:0``), ``resume`` when the
  machine left ``Hold`` (a resume during a hold that still decelerates, ``Hold:1``, first waits for
  ``Hold:0``: GRBL ignores a cycle start before that), ``cancel`` when the job has ended and the machine
  stands still, ``disable`` when a running machine is held. Otherwise :class:`CommandError`
  ``not_confirmed`` (the command was sent, the machine did not show it) — never a hopeful ``ok``;
- exposes the pass-through pty for a sender (see :mod:`firmware_bridge.passthrough` for the rules);
- enforces the interlock: while disabled it refuses jobs and resumes, feed-holds any ``Run`` (cancels
  any ``Jog``) it sees, and answers every line of the sender ``error:9`` itself and drops every realtime
  byte but ``?``, so nothing else of the sender's reaches the controller.

:func:`send_file` streams a file from the command line (``python -m firmware_bridge send``), either
through a running bridge's pass-through pty or straight to the port.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import os
import re
import select
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TextIO

import serial

from firmware_bridge import grbl_protocol as gp
from firmware_bridge.adapters.base import (
    ERROR,
    IDLE,
    OFFLINE,
    PAUSED,
    RUNNING,
    Adapter,
    AdapterSink,
    CommandError,
    ErrorInfo,
    JobInfo,
    register,
)
from firmware_bridge.passthrough import (
    PassthroughPty,
    SenderStream,
    StatusPollArbiter,
    job_marker,
    parse_job_marker,
)
from firmware_bridge.protocol import NOT_CONFIRMED

log = logging.getLogger(__name__)

MAX_STATUS_HZ = 5.0
#: Seconds to wait for the welcome after opening (an Arduino's bootloader takes 1-2 s).
WELCOME_WAIT_S = 2.5
#: Seconds ``send`` waits for the feed hold to complete before resetting anyway.
HOLD_WAIT_S = 5.0
#: Default of ``confirm_timeout_s``: how long a command waits for GRBL's reports to confirm it (and a
#: cancel for the hold to complete before it resets anyway). A hold takes v/a: 8 s from 5000 mm/min at
#: GRBL's default acceleration of 10 mm/s², far less on a tuned machine.
CONFIRM_TIMEOUT_S = 10.0
#: What the pass-through answers each line of a sender while the interlock has the machine disabled.
#: error:9 ("G-code locked out during alarm or jog state") is what senders already show and stop on.
DISABLED_LINE_REPLY = ("[MSG:FabLab interlock: machine disabled]", "error:9")
#: A sender job ends after the machine has been Idle this long with no sender line in flight.
SENDER_JOB_IDLE_S = 2.0

_OPTION_KEYS = {
    "port",
    "baudrate",
    "passthrough",
    "status_hz",
    "reset_on_connect",
    "reconnect_s",
    "confirm_timeout_s",
}
_SETTING_WRITE_RE = re.compile(r"^\$(\d+)=(-?[0-9.]+)$")


def map_state(state: str) -> str:
    """Contract state for a GRBL state name (without sub-state)."""
    if state in ("Idle", "Sleep", "Check"):
        return IDLE
    if state in ("Run", "Jog", "Home"):
        return RUNNING
    if state in ("Hold", "Door", "Tool"):  # "Tool": grblHAL's tool change, also waiting for the user
        return PAUSED
    if state == "Alarm":
        return ERROR
    return IDLE


def load_gcode(path: str | Path) -> list[str]:
    """Read a G-code file as the lines to stream: comments stripped, empty lines dropped.

    Raises ``ValueError`` naming the first line that GRBL could not take (longer than its 80-character
    line buffer, or bytes GRBL would read as realtime commands).
    """
    lines: list[str] = []
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    for number, raw in enumerate(text.splitlines(), start=1):
        line = gp.clean_gcode_line(raw)
        if not line:
            continue
        bad = [c for c in line if gp.is_realtime_byte(ord(c)) or ord(c) < 0x20 or ord(c) > 0x7E]
        if bad:
            raise ValueError(f"{path}:{number}: characters GRBL cannot take in a line: {''.join(bad)!r}")
        if len(line.replace(" ", "")) >= 80:
            raise ValueError(f"{path}:{number}: line longer than GRBL's 80-character buffer")
        lines.append(line)
    return lines


@dataclasses.dataclass
class _InFlight:
    """A line in GRBL's RX buffer (or answered locally), waiting for its ``ok``/``error``."""

    owner: str  # "sender" | "bridge" | "job" | "local"
    length: int
    line: str
    reply: list[str] = dataclasses.field(default_factory=list)  # for "local": the lines to answer
    response: list[str] = dataclasses.field(default_factory=list)  # lines GRBL sent before the ack
    done: Callable[[_InFlight, gp.ParsedLine], None] | None = None


@dataclasses.dataclass
class _Job:
    id: str
    name: str
    started_ts: int
    source: str  # "bridge" | "sender"
    lines: list[str] | None = None
    total: int | None = None
    sent: int = 0
    acked: int = 0
    stop_sending: bool = False
    drained: bool = False
    drained_at: float = 0.0
    idle_since: float | None = None
    outcome: str | None = None  # finished | failed | cancelled
    detail: dict[str, Any] = dataclasses.field(default_factory=dict)
    finished = None  # set in __post_init__

    def __post_init__(self) -> None:
        self.finished = threading.Event()

    @property
    def progress_pct(self) -> float | None:
        if not self.total:
            return None
        return round(min(100.0, 100.0 * self.acked / self.total), 1)

    def info(self) -> JobInfo:
        return JobInfo(id=self.id, name=self.name, started_ts=self.started_ts, progress_pct=self.progress_pct)


@dataclasses.dataclass
class _Cancel:
    outcome: str  # "cancelled" | "failed"
    detail: dict[str, Any]
    started: float
    phase: str = "hold"  # hold → wait_hold → wait_welcome → unlock
    reset_at: float = 0.0
    alarm_after_reset: int | None = None


def _now_ms() -> int:
    return int(time.time() * 1000)


@register
class GrblAdapter(Adapter):
    """A GRBL 1.1 machine on a serial port; see the module docstring."""

    name = "grbl"
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
        #: Notified (under ``_lock``) on every report, reset, alarm, job end and disconnect.
        self._changed = threading.Condition(self._lock)
        self._ser: serial.Serial | None = None
        self._write_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._rxbuf = bytearray()
        self._inflight: collections.deque[_InFlight] = collections.deque()
        self._own_queue: collections.deque[_InFlight] = collections.deque()
        self._held: collections.deque[bytes] = collections.deque()
        self._pt: PassthroughPty | None = None
        self._sender = SenderStream()
        self._polls = StatusPollArbiter()
        self._sender_attached = False
        self._last_poll = 0.0
        self._report: gp.StatusReport | None = None
        self._report_t = 0.0
        self._wco: tuple[float, ...] | None = None
        self._overrides: tuple[int, int, int] | None = None
        self._alarm_code: int | None = None
        self._door_open = False
        self._job: _Job | None = None
        self._pending_job: _Job | None = None
        self._last_job: _Job | None = None
        self._cancel: _Cancel | None = None
        self._sender_marker: tuple[str, int] | None = None
        self._sender_lines = 0
        self._sender_acks = 0
        self._last_hold_sent = 0.0
        self._published: tuple[Any, ...] | None = None
        self._offline_reason = "not connected yet"
        self._connected = False
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
        return gp.state_name(report)

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
            self._write(gp.JOG_CANCEL if jog else gp.FEED_HOLD)
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
            self._write(gp.CYCLE_START)
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
                    self._write(gp.FEED_HOLD)
                    self._last_hold_sent = time.monotonic()
                elif grbl == "Jog":
                    self._write(gp.JOG_CANCEL)
            except CommandError:
                log.warning("%s: could not hold the machine while disabling", self.machine)
            self._publish_status()

    def start_job(self, path: str | Path, *, name: str | None = None) -> JobInfo:
        """Stream ``path`` with character counting; return the job. Raises :class:`CommandError`."""
        try:
            lines = load_gcode(path)
        except (OSError, ValueError) as exc:
            raise CommandError("invalid", str(exc)) from exc
        if not lines:
            raise CommandError("invalid", f"{path}: no G-code in the file")
        return self.start_job_lines(lines, name=name or Path(path).name)

    def start_job_lines(self, lines: Iterable[str], *, name: str) -> JobInfo:
        """Stream already-cleaned ``lines`` as a job named ``name``."""
        with self._lock:
            if self.interlock and not self._enabled:
                raise CommandError("invalid_state", f"{self.machine} is disabled by the interlock")
            if not self._connected:
                raise CommandError("invalid_state", f"{self.machine} is offline ({self._offline_reason})")
            if self._job is not None or self._pending_job is not None or self._cancel is not None:
                raise CommandError("invalid_state", f"{self.machine} is already running a job")
            state = self._contract_state()
            if state != IDLE or (self._report is not None and self._report.state != "Idle"):
                raise CommandError("invalid_state", f"{self.machine} is not idle ({self.grbl_state})")
            items = list(lines)
            job = _Job(
                id=str(uuid.uuid4()),
                name=name,
                started_ts=_now_ms(),
                source="bridge",
                lines=items,
                total=len(items),
            )
            self._pending_job = job
            return job.info()

    def wait_job(self, job_id: str, timeout: float | None = None) -> tuple[str | None, dict[str, Any]]:
        """Block until job ``job_id`` ends; ``(outcome, detail)``, outcome ``None`` on timeout."""
        with self._lock:
            job = next(
                (
                    j
                    for j in (self._job, self._pending_job, self._last_job)
                    if j is not None and j.id == job_id
                ),
                None,
            )
        if job is None:
            return None, {"reason": "unknown job"}
        assert job.finished is not None
        job.finished.wait(timeout)
        return job.outcome, dict(job.detail)

    def current_job(self) -> JobInfo | None:
        with self._lock:
            job = self._job or self._pending_job
            return job.info() if job else None

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
        seen_welcome = self._wait_for(ser, gp.Welcome, WELCOME_WAIT_S)
        if seen_welcome is None and self.reset_on_connect:
            ser.write(gp.SOFT_RESET)
            seen_welcome = self._wait_for(ser, gp.Welcome, WELCOME_WAIT_S)
        ser.write(gp.STATUS_QUERY)
        report = self._wait_for(ser, gp.StatusReport, 2.0)
        if report is None:
            self._offline_reason = f"no answer from GRBL on {self.port}"
            return False
        ser.write(b"$$\n")
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            parsed = self._read_parsed(ser, deadline)
            if parsed is None:
                break
            if isinstance(parsed, gp.Setting):
                self.settings[parsed.number] = parsed.value
            elif gp.is_ack(parsed):
                break
        return True

    def _wait_for(self, ser: serial.Serial, kind: type, timeout: float) -> gp.ParsedLine | None:
        deadline = time.monotonic() + timeout
        while True:
            parsed = self._read_parsed(ser, deadline)
            if parsed is None or isinstance(parsed, kind):
                return parsed

    def _read_parsed(self, ser: serial.Serial, deadline: float) -> gp.ParsedLine | None:
        """Next line during the handshake (state lines are noted on the way); ``None`` at the deadline."""
        while True:
            if b"\n" in self._rxbuf:
                raw, _, rest = bytes(self._rxbuf).partition(b"\n")
                self._rxbuf[:] = rest
                text = raw.decode("ascii", "replace").strip()
                if not text:
                    continue
                parsed = gp.parse_line(text)
                with self._lock:
                    if isinstance(parsed, gp.StatusReport):
                        self._on_status(parsed)
                    elif isinstance(parsed, gp.Alarm):
                        self._on_alarm(parsed)
                    elif isinstance(parsed, gp.Message) and parsed.kind == "MSG":
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
        parsed = gp.parse_line(stripped)
        now = time.monotonic()
        if isinstance(parsed, gp.StatusReport):
            forward = self._polls.route_report(now, sender_attached=self._sender_attached)
            if forward:
                self._to_sender(stripped)
            self._on_status(parsed)
            return
        if gp.is_ack(parsed):
            entry = self._inflight.popleft() if self._inflight else None
            if entry is None or entry.owner == "sender":
                self._to_sender(stripped)
            self._on_ack(entry, parsed)
            self._answer_local()
            return
        if isinstance(parsed, gp.Welcome):
            self._to_sender("")
            self._to_sender(stripped)
            self._on_welcome()
            return
        if isinstance(parsed, gp.Alarm):
            self._to_sender(stripped)
            self._on_alarm(parsed)
            return
        if isinstance(parsed, gp.Message) and parsed.kind == "MSG":
            self._to_sender(stripped)
            self._on_message(parsed)
            return
        if isinstance(parsed, gp.Setting):
            self.settings[parsed.number] = parsed.value
        if isinstance(parsed, gp.StartupLine):
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

    def _on_ack(self, entry: _InFlight | None, parsed: gp.ParsedLine) -> None:
        if isinstance(parsed, gp.Error):
            owner = entry.owner if entry else "unknown"
            detail = {"code": parsed.code, "message": parsed.meaning, "source": owner}
            if entry is not None:
                detail["line"] = entry.line[:200]
            log.warning(
                "%s: error:%d (%s) for %r", self.machine, parsed.code, parsed.meaning, detail.get("line")
            )
            self.sink.event("grbl_error", job=self._job.info() if self._job else None, detail=detail)
        if entry is None:
            return
        if entry.owner == "sender" and isinstance(parsed, gp.Ok):
            match = _SETTING_WRITE_RE.match(entry.line.strip())
            if match:  # the sender changed a setting ($32 laser mode…): keep ours in step
                self.settings[int(match.group(1))] = float(match.group(2))
        if entry.owner == "sender":
            self._sender_acks += 1
            if self._job is not None and self._job.source == "sender":
                self._job.acked += 1
        if entry.owner == "job" and self._job is not None:
            self._job.acked += 1
            if isinstance(parsed, gp.Error) and self._cancel is None:
                self._job.stop_sending = True
                self._cancel = _Cancel(
                    "failed",
                    {
                        "reason": f"error:{parsed.code}",
                        "message": parsed.meaning,
                        "line_number": self._job.acked,
                        "line": entry.line[:200],
                    },
                    time.monotonic(),
                )
            elif self._job.total is not None and self._job.acked >= self._job.total:
                self._job.drained = True
                self._job.drained_at = time.monotonic()
                self._last_poll = 0.0  # ask now: the next report tells whether the motion is done
        if entry.done is not None:
            entry.done(entry, parsed)

    def _answer_local(self) -> None:
        """Answer the lines the pass-through handles itself, once they reach the head of the FIFO."""
        while self._inflight and self._inflight[0].owner == "local":
            entry = self._inflight.popleft()
            for line in entry.reply:
                self._to_sender(line)

    def _on_status(self, report: gp.StatusReport) -> None:
        previous = self._report
        self._report = report
        self.reports_seen += 1
        self._report_t = time.monotonic()
        if report.wco is not None:
            self._wco = report.wco
        if report.overrides is not None:
            self._overrides = report.overrides
        if report.state != "Alarm":
            self._alarm_code = None
        door = (report.state == "Door" and report.substate in (1, 2)) or "D" in (report.pins or "")
        if door != self._door_open:
            self._door_open = door
            self.sink.event(
                "door_opened" if door else "door_closed", job=self._job.info() if self._job else None
            )
        if self.interlock and not self._enabled and self._connected:
            now = time.monotonic()
            if report.state == "Run" and now - self._last_hold_sent > 1.0:
                self._last_hold_sent = now
                log.warning("%s: disabled by the interlock but running: feed hold", self.machine)
                with contextlib.suppress(CommandError):
                    self._write(gp.FEED_HOLD)
                self.sink.event("interlock_hold", detail={"grbl_state": gp.state_name(report)})
            elif report.state == "Jog" and now - self._last_hold_sent > 1.0:
                self._last_hold_sent = now
                with contextlib.suppress(CommandError):
                    self._write(gp.JOG_CANCEL)
        if (
            report.state == "Run"
            and self._job is None
            and self._pending_job is None
            and self._cancel is None
            and self._sender_lines_active()
        ):
            self._start_sender_job()
        if previous is None or previous.state != report.state or previous.substate != report.substate:
            self._publish_status()
        self._changed.notify_all()

    def _on_alarm(self, alarm: gp.Alarm) -> None:
        self._alarm_code = alarm.code
        log.warning("%s: ALARM:%d %s", self.machine, alarm.code, alarm.meaning)
        job = self._job
        self.sink.event(
            "alarm", job=job.info() if job else None, detail={"code": alarm.code, "message": alarm.meaning}
        )
        if self._cancel is not None and self._cancel.phase in ("wait_welcome",):
            self._cancel.alarm_after_reset = alarm.code
            return
        if job is not None and self._cancel is None:
            job.stop_sending = True
            self._finish_job(job, "failed", {"reason": f"ALARM:{alarm.code}", "message": alarm.meaning})
        if self._report is not None:
            self._report = dataclasses.replace(self._report, state="Alarm", substate=None)
        self._publish_status()
        self._changed.notify_all()

    def _on_message(self, message: gp.Message) -> None:
        log.info("%s: [MSG:%s]", self.machine, message.text)
        if "to unlock" in message.text and self._report is not None and self._report.state != "Alarm":
            self._report = dataclasses.replace(self._report, state="Alarm", substate=None)
            self._publish_status()
        self.sink.event(
            "grbl_message", job=self._job.info() if self._job else None, detail={"text": message.text}
        )

    def _on_welcome(self) -> None:
        """GRBL reset: its RX buffer and planner are empty, every line in flight is lost."""
        self._inflight.clear()
        self._held.clear()
        self._polls.clear()
        cancel = self._cancel
        if cancel is not None and cancel.phase == "wait_welcome":
            job = self._job
            detail = dict(cancel.detail)
            if cancel.alarm_after_reset is not None:
                # The hold did not complete in time: position may be lost. Unlock so the lab can go on,
                # and say so; re-homing is advised.
                detail["alarm"] = cancel.alarm_after_reset
                detail["note"] = "reset while moving: unlocked with $X, re-home before the next job"
                self._own_queue.append(_InFlight("bridge", 3, "$X"))
            if job is not None:
                self._finish_job(job, cancel.outcome, detail)
            self._cancel = None
        elif self._job is not None:
            job = self._job
            outcome = "cancelled" if job.source == "sender" else "failed"
            self._finish_job(job, outcome, {"reason": "controller reset"})
        self._sender_marker = None
        self._sender_lines = 0
        self._sender_acks = 0
        if self._report is not None:
            # As GRBL does: an alarm (or sleep) survives the reset, anything else comes back Idle.
            # "[MSG:'$H'|'$X' to unlock]" confirms an alarm; the next report tells the rest.
            prior = self._report.state
            state = "Alarm" if prior in ("Alarm", "Sleep") else "Idle"
            self._report = dataclasses.replace(self._report, state=state, substate=None)
        self._last_poll = 0.0  # ask at once
        self._publish_status()
        self._changed.notify_all()

    # --- from the sender ---------------------------------------------------------------------------------

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
                self._write(gp.SOFT_RESET)

    def _on_sender_realtime(self, byte: bytes) -> None:
        now = time.monotonic()
        if byte == gp.STATUS_QUERY:
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
        elif byte == gp.SOFT_RESET:
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

    # --- pumping lines and timers ----------------------------------------------------------------------

    def _pump(self) -> None:
        # Lines the bridge itself needs ($X after a cancel…) go when GRBL's buffer is all ours.
        while self._own_queue and not self._inflight:
            entry = self._own_queue.popleft()
            self._write(entry.line.encode("ascii") + b"\n")
            self._inflight.append(entry)
        if self._pending_job is not None and self._job is None and not self._inflight and not self._held:
            job, self._pending_job = self._pending_job, None
            self._job = job
            self.sink.event("job_started", job=job.info(), detail={"source": "bridge", "lines": job.total})
            log.info("%s: streaming %s (%d lines)", self.machine, job.name, job.total or 0)
            self._publish_status()
        job = self._job
        if (
            job is not None
            and job.source == "bridge"
            and job.lines is not None
            and not job.stop_sending
            and not any(entry.owner == "sender" for entry in self._inflight)
        ):
            used = sum(entry.length for entry in self._inflight)
            while job.sent < len(job.lines):
                line = job.lines[job.sent]
                size = len(line) + 1
                if used + size > gp.RX_BUFFER_USABLE:
                    break
                self._write(line.encode("ascii") + b"\n")
                self._inflight.append(_InFlight("job", size, line))
                job.sent += 1
                used += size
        if self._held and not self._bridge_owns_buffer():
            while self._held:
                self._send_sender_line(self._held.popleft())

    def _tick(self, now: float) -> None:
        interval = 1.0 / min(self.status_hz, MAX_STATUS_HZ)
        if now - self._last_poll >= interval and (
            not self._sender_attached or self._polls.bridge_may_poll(now)
        ):
            self._last_poll = now
            self._polls.bridge_polled(now)
            self._write(gp.STATUS_QUERY)
        self._tick_cancel(now)
        self._tick_job(now)

    def _tick_cancel(self, now: float) -> None:
        cancel = self._cancel
        if cancel is None:
            return
        if self._job is not None:
            self._job.stop_sending = True
        report = self._report
        if cancel.phase == "hold":
            self._write(gp.FEED_HOLD)
            cancel.phase = "wait_hold"
            return
        if cancel.phase == "wait_hold":
            # Hold:1 still decelerates, and a reset then throws ALARM:3 (position lost): wait for
            # Hold:0 (Door:1/Door:0 for a door hold), as long as a command may wait for confirmation.
            stopped = report is not None and (
                report.state in ("Idle", "Alarm", "Sleep", "Check")
                or (report.state == "Hold" and report.substate == 0)
                or (report.state == "Door" and report.substate in (0, 1))
            )
            if stopped or now - cancel.started > self.confirm_timeout_s:
                self._write(gp.SOFT_RESET)
                cancel.phase = "wait_welcome"
                cancel.reset_at = now
            return
        if cancel.phase == "wait_welcome" and now - cancel.reset_at > 5.0:
            if self._job is not None:
                self._finish_job(
                    self._job, cancel.outcome, {**cancel.detail, "note": "no welcome after reset"}
                )
            self._cancel = None
            self._changed.notify_all()

    def _tick_job(self, now: float) -> None:
        job = self._job
        report = self._report
        if job is None or self._cancel is not None or report is None:
            return
        if job.source == "bridge":
            # Done once every line is acknowledged and a report that arrived after that says Idle
            # (a report is generated after every byte before it, so it cannot predate the last ok).
            if job.drained and report.state == "Idle" and self._report_t > job.drained_at:
                self._finish_job(job, "finished", {"lines": job.acked})
            return
        idle = report.state in ("Idle", "Check") and not any(e.owner == "sender" for e in self._inflight)
        if idle and not self._held:
            if job.idle_since is None:
                job.idle_since = now
            elif now - job.idle_since >= SENDER_JOB_IDLE_S:
                self._finish_job(job, "finished", {"lines": job.acked})
        else:
            job.idle_since = None

    def _finish_job(self, job: _Job, outcome: str, detail: dict[str, Any]) -> None:
        if job.outcome is not None:
            return
        job.outcome = outcome
        job.detail = detail
        if self._job is job:
            self._job = None
        if self._pending_job is job:
            self._pending_job = None
        self._last_job = job
        self._sender_lines = 0
        self._sender_acks = 0
        self.sink.event(f"job_{outcome}", job=job.info(), detail=detail)
        log.info("%s: job %s %s %s", self.machine, job.name, outcome, detail)
        assert job.finished is not None
        job.finished.set()
        self._publish_status()
        self._changed.notify_all()

    # --- reporting -----------------------------------------------------------------------------------------

    def _contract_state(self) -> str:
        if not self._connected:
            return OFFLINE
        if self._report is None:
            return ERROR if self._alarm_code is not None else IDLE
        return map_state(self._report.state)

    def _error_info(self) -> ErrorInfo | None:
        if not self._connected:
            return ErrorInfo("offline", self._offline_reason or "not connected")
        if self._contract_state() != ERROR:
            return None
        if self._alarm_code is not None:
            return ErrorInfo(f"ALARM:{self._alarm_code}", gp.alarm_meaning(self._alarm_code))
        return ErrorInfo("ALARM", "Alarm lock: home the machine ('$H') or unlock it ('$X')")

    def _publish_status(self) -> None:
        state = self._contract_state()
        job = self._job.info() if self._job is not None else None
        error = self._error_info()
        key = (state, job.id if job else None, job.progress_pct if job else None, error)
        if key == self._published:
            return
        self._published = key
        self.sink.set_status(state=state, job=job, error=error)

    def _publish_offline(self, reason: str) -> None:
        with self._lock:
            self._offline_reason = reason
            self._publish_status()

    def _telemetry_values(self) -> dict[str, float]:
        report = self._report
        if not self._connected or report is None or time.monotonic() - self._report_t > 5.0:
            return {}
        scale = 25.4 if self.settings.get(13) else 1.0  # $13=1 reports inches
        values: dict[str, float] = {}
        if report.feed is not None:
            values["feed_mm_min"] = round(report.feed * scale, 3)
        if report.spindle is not None:
            if self.laser_mode:
                full = self.settings.get(30) or 1000.0
                values["laser_power_pct"] = round(100.0 * report.spindle / full, 2)
            else:
                values["spindle_rpm"] = float(report.spindle)
        position = report.work_position(self._wco) or report.machine_position(self._wco)
        if position is None:
            position = report.mpos or report.wpos
        if position is not None:
            for axis, value in zip(("x", "y", "z"), position, strict=False):
                values[f"pos_{axis}_mm"] = round(value * scale, 3)
        if self._overrides is not None:
            feed, rapid, spindle = self._overrides
            values["feed_override_pct"] = float(feed)
            values["rapid_override_pct"] = float(rapid)
            values["spindle_override_pct"] = float(spindle)
        job = self._job
        if job is not None and job.progress_pct is not None:
            values["progress_pct"] = job.progress_pct
        return values


# --- send_file: the `send` CLI -------------------------------------------------------------------------


def resolve_send_port(options: Mapping[str, Any]) -> str:
    """Where ``send`` should stream for a machine: its pass-through when a bridge serves it, else its port."""
    pt = options.get("passthrough")
    if isinstance(pt, str) and pt and os.path.exists(pt):
        return pt
    return str(options["port"])


def send_file(
    port_or_adapter: str | GrblAdapter | Mapping[str, Any],
    path: str | Path,
    *,
    baudrate: int = 115200,
    name: str | None = None,
    out: TextIO | None = None,
    timeout_s: float | None = None,
) -> int:
    """Stream a G-code file with character counting and print progress; return an exit code.

    ``port_or_adapter`` is a serial path (the machine's port, or a running bridge's pass-through pty),
    a machine's grbl options from ``bridge.toml`` (then :func:`resolve_send_port` picks the
    pass-through when a bridge serves it, else the port, and ``baudrate`` comes from the options), or
    a connected :class:`GrblAdapter` in this process. Returns 0 when the job finished, 1 on
    ``error:n``, an alarm, a reset, a refusal (interlock) or a timeout, 2 when the port cannot be used,
    130 on Ctrl-C (the machine is then feed-held and reset).
    """
    stream = out if out is not None else sys.stderr
    job_name = name or Path(path).name
    try:
        lines = load_gcode(path)
    except (OSError, ValueError) as exc:
        print(f"cannot send {path}: {exc}", file=stream)
        return 2
    if not lines:
        print(f"cannot send {path}: no G-code in the file", file=stream)
        return 2
    if isinstance(port_or_adapter, GrblAdapter):
        return _send_via_adapter(port_or_adapter, lines, job_name, stream, timeout_s)
    if isinstance(port_or_adapter, Mapping):
        baudrate = int(port_or_adapter.get("baudrate", baudrate))
        port = resolve_send_port(port_or_adapter)
    else:
        port = port_or_adapter
    try:
        ser = serial.Serial(port, baudrate, timeout=0, write_timeout=5)
    except (serial.SerialException, OSError, ValueError) as exc:
        print(f"cannot open {port}: {exc}", file=stream)
        return 2
    try:
        return _FileSender(ser, lines, job_name, stream, timeout_s).run()
    except (serial.SerialException, OSError) as exc:
        print(f"lost {port}: {exc}", file=stream)
        return 2
    finally:
        with contextlib.suppress(Exception):
            ser.close()


def _send_via_adapter(
    adapter: GrblAdapter, lines: list[str], name: str, out: TextIO, timeout_s: float | None
) -> int:
    try:
        job = adapter.start_job_lines(lines, name=name)
    except CommandError as exc:
        print(f"refused: {exc.message}", file=out)
        return 1
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    last = ""
    while True:
        outcome, detail = adapter.wait_job(job.id, timeout=1.0)
        if outcome is not None:
            print(f"{name}: {outcome} {detail}", file=out)
            return 0 if outcome == "finished" else 1
        current = adapter.current_job()
        line = f"{name}: {current.progress_pct if current else 0:.0f} % ({adapter.grbl_state})"
        if line != last:
            print(line, file=out)
            last = line
        if deadline is not None and time.monotonic() > deadline:
            with contextlib.suppress(CommandError):
                adapter.command("cancel")
            print(f"{name}: timed out", file=out)
            return 1


class _FileSender:
    """Character-counting streamer over a serial port (the machine's or the pass-through's)."""

    def __init__(
        self, ser: serial.Serial, lines: list[str], name: str, out: TextIO, timeout_s: float | None
    ) -> None:
        self.ser = ser
        self.lines = lines
        self.name = name
        self.out = out
        self.deadline = None if timeout_s is None else time.monotonic() + timeout_s
        self.buf = bytearray()
        self.inflight: collections.deque[int] = collections.deque()
        self.sent = 0
        self.acked = 0
        self.state: str | None = None
        self.last_print = 0.0
        self.last_pct = -1.0

    def _lines_in(self, timeout: float) -> list[str]:
        ready, _, _ = select.select([self.ser.fileno()], [], [], timeout)
        if ready:
            self.buf += self.ser.read(self.ser.in_waiting or 1)
        out = []
        while b"\n" in self.buf:
            raw, _, rest = bytes(self.buf).partition(b"\n")
            self.buf[:] = rest
            text = raw.decode("ascii", "replace").strip()
            if text:
                out.append(text)
        return out

    def _print(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def _stop_machine(self) -> None:
        """Feed hold, wait for the hold to complete (no ALARM:3), then soft reset."""
        with contextlib.suppress(Exception):
            self.ser.write(gp.FEED_HOLD)
            end = time.monotonic() + HOLD_WAIT_S
            while time.monotonic() < end:
                self.ser.write(gp.STATUS_QUERY)
                for text in self._lines_in(0.2):
                    parsed = gp.parse_line(text)
                    if isinstance(parsed, gp.StatusReport) and (
                        parsed.state in ("Idle", "Alarm")
                        or (parsed.state in ("Hold", "Door") and parsed.substate == 0)
                    ):
                        end = 0
                        break
            self.ser.write(gp.SOFT_RESET)

    def run(self) -> int:
        # Opening a USB GRBL resets it, and a pass-through resets an idle machine on open: wait briefly
        # for that welcome so it is not mistaken for a reset in the middle of the job.
        end = time.monotonic() + WELCOME_WAIT_S
        while time.monotonic() < end:
            if any(isinstance(gp.parse_line(t), gp.Welcome) for t in self._lines_in(0.1)):
                break
        time.sleep(0.05)
        self._lines_in(0.05)  # drop what came with the welcome ([MSG:…] is shown below if it repeats)
        marker = job_marker(self.name, len(self.lines))
        all_lines = [marker, *self.lines]
        total = len(all_lines)
        self._print(f"{self.name}: sending {len(self.lines)} lines")
        # The marker goes alone: a pass-through that refuses the job (interlock) answers it with an
        # error before any motion line is on its way.
        self.ser.write(marker.encode("ascii") + b"\n")
        self.inflight.append(len(marker) + 1)
        self.sent = 1
        end = time.monotonic() + 10.0
        while self.acked == 0:
            if time.monotonic() > end:
                self._print(f"{self.name}: no answer from the controller")
                return 1
            for text in self._lines_in(0.1):
                parsed = gp.parse_line(text)
                if isinstance(parsed, gp.Message):
                    self._print(f"[{parsed.kind}:{parsed.text}]")
                elif isinstance(parsed, gp.Error):
                    self._print(f"{self.name}: refused (error:{parsed.code}: {parsed.meaning})")
                    return 1
                elif isinstance(parsed, gp.Ok):
                    self.inflight.popleft()
                    self.acked = 1
        last_query = 0.0
        finished_at: float | None = None
        try:
            while True:
                now = time.monotonic()
                if self.deadline is not None and now > self.deadline:
                    self._print(f"{self.name}: timed out after {self.acked - 1} lines; stopping the machine")
                    self._stop_machine()
                    return 1
                used = sum(self.inflight)
                while self.sent < total and used + len(all_lines[self.sent]) + 1 <= gp.RX_BUFFER_USABLE:
                    data = all_lines[self.sent].encode("ascii") + b"\n"
                    self.ser.write(data)
                    self.inflight.append(len(data))
                    used += len(data)
                    self.sent += 1
                if now - last_query >= 0.25:
                    self.ser.write(gp.STATUS_QUERY)
                    last_query = now
                for text in self._lines_in(0.05):
                    parsed = gp.parse_line(text)
                    if gp.is_ack(parsed):
                        if self.inflight:
                            self.inflight.popleft()
                        self.acked += 1
                        if isinstance(parsed, gp.Error):
                            where = "job marker" if self.acked == 1 else f"line {self.acked - 1}"
                            self._print(f"{self.name}: error:{parsed.code} at {where}: {parsed.meaning}")
                            if self.acked > 1:
                                self._print(f"  {all_lines[self.acked - 1]}")
                                self._stop_machine()
                            return 1
                        if self.acked == total:
                            finished_at = time.monotonic()
                    elif isinstance(parsed, gp.Alarm):
                        self._print(f"{self.name}: ALARM:{parsed.code}: {parsed.meaning}")
                        return 1
                    elif isinstance(parsed, gp.Welcome):
                        self._print(f"{self.name}: the controller was reset; job aborted")
                        return 1
                    elif isinstance(parsed, gp.Message):
                        self._print(f"[{parsed.kind}:{parsed.text}]")
                    elif isinstance(parsed, gp.StatusReport):
                        self.state = gp.state_name(parsed)
                        if finished_at is not None and parsed.state == "Idle":
                            self._print(f"{self.name}: done, {len(self.lines)} lines (100 %)")
                            return 0
                        if parsed.state == "Alarm":
                            self._print(f"{self.name}: machine in alarm; job aborted")
                            return 1
                self._progress()
        except KeyboardInterrupt:
            self._print(f"{self.name}: interrupted; stopping the machine")
            self._stop_machine()
            return 130

    def _progress(self) -> None:
        now = time.monotonic()
        done = max(0, self.acked - 1)
        pct = 100.0 * done / len(self.lines)
        if now - self.last_print >= 1.0 or pct - self.last_pct >= 10:
            self.last_print = now
            self.last_pct = pct
            self._print(
                f"{self.name}: {done}/{len(self.lines)} lines ({pct:.0f} %) {self.state or ''}".rstrip()
            )
