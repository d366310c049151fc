"""A GRBL 1.1 controller on a pseudo-terminal, for tests and the live demo.

It behaves as ``gnea/grbl`` ``doc/markdown/interface.md`` describes, closely enough that a sender, the
bridge's adapter and its pass-through cannot tell it from an Arduino on a USB port:

- the welcome line ``Grbl 1.1h ['$' for help]`` on every reset (Ctrl-X, and — like an Arduino, whose
  DTR line resets it — whenever a client opens the port), followed by ``[MSG:'$H'|'$X' to unlock]``
  when it comes up in alarm;
- ``ok`` / ``error:n`` per line, the 128-byte RX ring that holds at most 127 bytes (bytes beyond that
  are dropped, as the real ISR does; :attr:`GrblSimulator.rx_overflows` counts them so tests can prove
  that a client's character counting is right), an 80-character line buffer (``error:11``);
- a 15-block planner: ``ok`` for a motion line comes when its block enters the planner; moves execute in
  simulated time (distance / feed, arcs by their length, dwells, homing) scaled by ``speed``;
- a feed hold (``!``, or the door during motion) decelerates at the block's acceleration (``$120``-``$122``
  along the move's direction) from the speed it had: ``Hold:1`` (``Door:2``) while the machine still
  moves, for ``v / a`` simulated seconds and ``v² / 2a`` mm along the path, then ``Hold:0`` (``Door:1``/
  ``Door:0``). A cycle start ``~`` during ``Hold:1`` is ignored, as GRBL does (see :meth:`_cycle_start`);
  the planned job stays in the planner through the hold. (Acceleration at the start of a move is not
  modelled: a move starts at its full feed.)
- realtime bytes ``?`` ``!`` ``~`` Ctrl-X, safety door 0x84, jog cancel 0x85, feed/rapid/spindle
  overrides 0x90-0x9D, spindle stop 0x9E, coolant toggles 0xA0/0xA1;
- status reports with ``MPos``/``WPos`` (``$10``), ``Bf`` (``$10`` bit 1), ``Ln``, ``FS``, ``Pn``, and
  ``WCO`` / ``Ov`` + ``A`` on grbl's refresh counters (WCO every 10 idle / 30 busy reports or on change,
  Ov every 10 idle / 20 busy reports, A only with Ov);
- states Idle, Run, Hold:0/1, Jog, Alarm, Door:0-3, Check, Home, Sleep; ``$$`` (``$32`` laser mode),
  ``$x=val``, ``$X``, ``$H``, ``$C``, ``$I``, ``$G``, ``$#``, ``$N``, ``$J=``, ``$SLP``, ``$RST=``;
  a soft reset while moving throws ``ALARM:3`` (``ALARM:6`` while homing);
- fault injection: :meth:`trigger_alarm`, :meth:`open_door` / :meth:`close_door`, :meth:`unplug` /
  :meth:`replug` (the USB cable).

Run it with ``python -m firmware_bridge.simulators.grbl --link /tmp/grbl0`` for a manual session.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import errno
import fcntl
import math
import os
import re
import select
import signal
import threading
import time
import tty
from collections.abc import Callable

# Only the firmware's facts are shared with the adapter, never its parser: the simulator reads and
# writes the wire format with its own code, so a parsing bug cannot hide on both sides of a test.
from firmware_bridge.adapters.grbl import facts
from firmware_bridge.adapters.grbl.facts import LINE_BUFFER_SIZE, RX_BUFFER_SIZE, RX_BUFFER_USABLE

VERSION = "1.1h"
BUILD = "20190830"
WELCOME = facts.WELCOME_FORMAT.format(version=VERSION)
PLANNER_BLOCKS = 15  # BLOCK_BUFFER_SIZE 16, one kept free
HOMING_S = 2.0

_RT_RESET = facts.SOFT_RESET[0]
_RT_STATUS = facts.STATUS_QUERY[0]
_RT_FEED_HOLD = facts.FEED_HOLD[0]
_RT_CYCLE_START = facts.CYCLE_START[0]
_RT_SAFETY_DOOR = facts.SAFETY_DOOR[0]
_RT_JOG_CANCEL = facts.JOG_CANCEL[0]
_FEED_OV_STEPS = {
    facts.FEED_OV_PLUS_10: 10,
    facts.FEED_OV_MINUS_10: -10,
    facts.FEED_OV_PLUS_1: 1,
    facts.FEED_OV_MINUS_1: -1,
}
_SPINDLE_OV_STEPS = {
    facts.SPINDLE_OV_PLUS_10: 10,
    facts.SPINDLE_OV_MINUS_10: -10,
    facts.SPINDLE_OV_PLUS_1: 1,
    facts.SPINDLE_OV_MINUS_1: -1,
}

_NUMBER_RE = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)")
_FLOAT_SETTINGS = {11, 12, 24, 25, 27, 30, 31, 100, 101, 102, 110, 111, 112, 120, 121, 122, 130, 131, 132}

DEFAULT_SETTINGS: dict[int, float] = {
    0: 10, 1: 25, 2: 0, 3: 0, 4: 0, 5: 0, 6: 0, 10: 1, 11: 0.010, 12: 0.002, 13: 0,
    20: 0, 21: 0, 22: 0, 23: 0, 24: 25.0, 25: 500.0, 26: 250, 27: 1.0,
    30: 1000.0, 31: 0.0, 32: 0,
    100: 250.0, 101: 250.0, 102: 250.0, 110: 5000.0, 111: 5000.0, 112: 1000.0,
    120: 10.0, 121: 10.0, 122: 10.0, 130: 400.0, 131: 300.0, 132: 80.0,
}  # fmt: skip

Vec = tuple[float, float, float]


class _GcodeError(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


@dataclasses.dataclass
class _Block:
    """One planned motion (or dwell) with the machine state it carries into execution."""

    start: Vec
    target: Vec
    length: float  # mm
    rate: float  # mm/min before overrides
    rapid: bool
    motion: int  # 0..3
    spindle: str  # "off" | "cw" | "ccw"
    s: float
    flood: bool
    mist: bool
    line: int | None = None
    jog: bool = False
    arc: tuple[float, float, float, float, float] | None = None  # cx, cy, r, start angle, sweep

    def point(self, fraction: float) -> Vec:
        f = min(max(fraction, 0.0), 1.0)
        z = self.start[2] + (self.target[2] - self.start[2]) * f
        if self.arc is not None:
            cx, cy, r, a0, sweep = self.arc
            angle = a0 + sweep * f
            return (cx + r * math.cos(angle), cy + r * math.sin(angle), z)
        return (
            self.start[0] + (self.target[0] - self.start[0]) * f,
            self.start[1] + (self.target[1] - self.start[1]) * f,
            z,
        )


@dataclasses.dataclass
class _Pending:
    """A parsed line whose ``ok`` must wait: for planner room, a sync, a dwell or homing."""

    kind: str  # "plan" | "sync" | "dwell" | "home"
    block: _Block | None = None
    action: Callable[[], list[str]] | None = None
    seconds: float = 0.0
    started: bool = False


class GrblSimulator:
    """A GRBL 1.1 machine behind a pty; see the module docstring for what it models.

    ``speed`` scales simulated time (20 runs a 60 s job in 3 s). ``link_path`` makes a symlink to the
    pty, like a udev ``/dev/serial/by-id/…`` link, which :meth:`unplug` removes and :meth:`replug`
    re-creates. ``homing`` sets ``$22=1`` (then the machine powers up in Alarm, as real GRBL does).
    ``reset_on_open`` mimics the Arduino's DTR auto-reset: a client opening the port gets a welcome.
    """

    def __init__(
        self,
        *,
        laser: bool = False,
        speed: float = 1.0,
        link_path: str | None = None,
        homing: bool = False,
        reset_on_open: bool = True,
        settings: dict[int, float] | None = None,
    ) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.laser = laser
        self.speed = float(speed)
        self.link_path = link_path
        self.reset_on_open = reset_on_open
        self.settings: dict[int, float] = dict(DEFAULT_SETTINGS)
        if laser:
            self.settings.update({32: 1, 30: 1000.0, 112: 500.0})
        else:
            self.settings.update({30: 24000.0, 31: 0.0})
        if homing:
            self.settings.update({22: 1})
        if settings:
            self.settings.update(settings)
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._master: int | None = None
        self._generation = 0
        self._slave_name: str | None = None
        self._client_open = False
        self._plugged = False
        # Counters and logs tests may read.
        self.rx_overflows = 0
        self.resets = 0
        self.received: collections.deque[str] = collections.deque(maxlen=5000)
        #: Every realtime byte received (``?`` ``!`` ``~`` 0x18 0x80-0xFF), in order.
        self.realtime_received: collections.deque[int] = collections.deque(maxlen=5000)
        self.sent: collections.deque[str] = collections.deque(maxlen=5000)
        # Physical inputs.
        self.door_open = False
        self.limit_pins = ""
        self._power_up()

    # --- life cycle ---------------------------------------------------------------------------------

    @property
    def port(self) -> str:
        """The path a client opens: the link when one is configured, else the pty slave."""
        if self.link_path:
            return self.link_path
        if self._slave_name is None:
            raise RuntimeError("simulator not started")
        return self._slave_name

    def start(self) -> str:
        """Create the pty (and link) and start the machine thread; return the path to open."""
        with self._lock:
            if self._thread is not None:
                return self.port
            self._plug()
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="grbl-sim", daemon=True)
            self._thread.start()
            return self.port

    def stop(self) -> None:
        """Stop the thread, close the pty and remove the link."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        with self._lock:
            self._unplug_io()

    def unplug(self) -> None:
        """The USB cable is pulled: the device vanishes (clients get EIO) and its link is removed."""
        with self._lock:
            self._unplug_io()

    def replug(self) -> str:
        """The cable is put back: a new pty (the board powers up again), the link re-created."""
        with self._lock:
            if not self._plugged:
                self._power_up()
                self._plug()
            return self.port

    def __enter__(self) -> GrblSimulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _plug(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no CR/LF translation: a serial line, not a terminal
        name = os.ttyname(slave)
        os.close(slave)  # POLLHUP on the master then tells us when no client has it open
        flags = fcntl.fcntl(master, fcntl.F_GETFL)
        fcntl.fcntl(master, fcntl.F_SETFL, flags | os.O_NONBLOCK)
        self._master, self._slave_name = master, name
        self._generation += 1
        self._client_open = False
        self._plugged = True
        if self.link_path:
            tmp = f"{self.link_path}.tmp{os.getpid()}"
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            os.symlink(name, tmp)
            os.replace(tmp, self.link_path)

    def _unplug_io(self) -> None:
        if self.link_path and self._plugged:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.link_path)
        if self._master is not None:
            with contextlib.suppress(OSError):
                os.close(self._master)
        self._master = None
        self._plugged = False
        self._client_open = False

    # --- fault injection and introspection ----------------------------------------------------------

    def trigger_alarm(self, code: int) -> None:
        """Throw ``ALARM:code``. 1 and 2 (limits) are critical: everything but a reset is ignored."""
        with self._lock:
            self._stop_motion()
            if code == 1:
                self.limit_pins = "X"
            self._emit(f"ALARM:{code}")
            self.state, self.substate = "Alarm", None
            if code in (1, 2):
                self._critical = True
                self._emit("[MSG:Reset to continue]")

    def release_limits(self) -> None:
        """The machine is moved off its limit switch."""
        with self._lock:
            self.limit_pins = ""

    def open_door(self) -> None:
        """Open the safety door (the door input goes high)."""
        with self._lock:
            self.door_open = True
            self._door_event()

    def close_door(self) -> None:
        """Close the safety door; ``~`` then resumes."""
        with self._lock:
            self.door_open = False
            if self.state == "Door":
                self._emit("[MSG:Check Door]")
                if self.substate == 1:
                    self.substate = 0

    @property
    def state_name(self) -> str:
        """``Idle``, ``Hold:0``, ``Door:1``… as a status report would show it."""
        with self._lock:
            return self.state if self.substate is None else f"{self.state}:{self.substate}"

    @property
    def position(self) -> Vec:
        """Machine position (MPos)."""
        with self._lock:
            return self.mpos

    @property
    def client_connected(self) -> bool:
        return self._client_open

    def spindle_output(self) -> float:
        """What the spindle or laser is doing now (0 when off), after overrides."""
        with self._lock:
            return self._spindle_now()

    # --- machine model ------------------------------------------------------------------------------

    def _power_up(self) -> None:
        """Power-on state: position unknown (0), alarm when homing is enabled."""
        self.mpos: Vec = (0.0, 0.0, 0.0)
        self.coord_systems: list[Vec] = [(0.0, 0.0, 0.0)] * 6
        self.state = "Alarm" if self.settings.get(22) else "Idle"
        self.substate: int | None = None
        self._soft_init(power_up=True)

    def _soft_init(self, *, power_up: bool) -> None:
        self._rx = bytearray()
        self._planner: collections.deque[_Block] = collections.deque()
        self._cur: _Block | None = None
        self._cur_done = 0.0
        self._pending: _Pending | None = None
        self._hold_v = 0.0  # mm/s while a hold decelerates
        self._home_left = 0.0
        self._restore_left = 0.0
        self._critical = False
        self._status_requested = False
        self._wco_counter = 0
        self._ovr_counter = 0
        self.feed_ov, self.rapid_ov, self.spindle_ov = 100, 100, 100
        self._spindle_stop = False
        self._spindle, self._spindle_s, self._flood, self._mist = "off", 0.0, False, False
        # Parser (modal) state.
        self.g92: Vec = (0.0, 0.0, 0.0)
        self._motion = 0
        self._absolute = True
        self._inches = False
        self._coord = 0
        self._feed = 0.0
        self._s = 0.0
        self._m_spindle = "off"
        self._m_flood = False
        self._m_mist = False
        self._parser_pos: Vec = self.mpos
        self._prev_ov: tuple[int, int, int, str] = (100, 100, 100, "")
        self._prev_wco: Vec = self.wco
        self._line_chars = 0

    @property
    def wco(self) -> Vec:
        cs = self.coord_systems[self._coord]
        return (cs[0] + self.g92[0], cs[1] + self.g92[1], cs[2] + self.g92[2])

    def _moving(self) -> bool:
        if self.state in ("Run", "Jog", "Home"):
            return True
        return (self.state == "Hold" and self.substate == 1) or (
            self.state == "Door" and self.substate in (2, 3)
        )

    def _reset(self) -> None:
        """Ctrl-X: abort, report an alarm if it interrupted motion, re-initialise, welcome."""
        self.resets += 1
        alarm = None
        if self.state == "Home":
            alarm = 6
        elif self._moving():
            alarm = 3
        if alarm is not None:
            self._emit(f"ALARM:{alarm}")
            self.state = "Alarm"
        self._soft_init(power_up=False)
        self._welcome()

    def _welcome(self) -> None:
        self._emit_raw(f"\r\n{WELCOME}\r\n")
        if self.state in ("Alarm", "Sleep"):
            self.state, self.substate = "Alarm", None
            self._emit("[MSG:'$H'|'$X' to unlock]")
        else:
            self.state, self.substate = "Idle", None
            if self.door_open:
                self.state, self.substate = "Door", 1
                self._emit("[MSG:Check Door]")

    def _stop_motion(self) -> None:
        self._planner.clear()
        self._cur = None
        self._pending = None
        self._spindle, self._spindle_s = "off", 0.0
        self._parser_pos = self.mpos

    def _door_event(self) -> None:
        if self.state in ("Alarm", "Sleep", "Check"):
            return
        if self.state == "Home":
            self._stop_motion()
            self._emit("ALARM:7")
            self.state, self.substate = "Alarm", None
            return
        self._emit("[MSG:Check Door]")
        if self.state == "Jog":
            self._planner.clear()
            self._cur = None
            self._parser_pos = self.mpos
        if self._moving():
            if not (self.state == "Hold" and self.substate == 1):
                self._hold_v = self._speed_now()
            self.state, self.substate = "Door", 2
        elif self.state == "Door":
            self.substate = 1
        else:
            self.state, self.substate = "Door", 1

    def _spindle_now(self) -> float:
        if self._spindle == "off" or self._spindle_stop:
            return 0.0
        if self.state == "Door" and self.substate in (0, 1):
            return 0.0
        if self.settings.get(32):
            # Laser mode: the beam is on only while a G1/G2/G3 move executes (M4 is off when stopped).
            if self._cur is None or self._cur.motion == 0 or self._cur.jog:
                return 0.0
            if self.state == "Hold" and self.substate == 0:
                return 0.0
        return self._spindle_s * self.spindle_ov / 100.0

    # --- the thread ------------------------------------------------------------------------------------

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.is_set():
            with self._lock:
                # The generation tells a new pty from the old one: replug() may reuse the fd number.
                master, generation = self._master, self._generation
            data = b""
            if master is None:
                time.sleep(0.01)
            else:
                poller = select.poll()
                poller.register(master, select.POLLIN)
                try:
                    events = poller.poll(5)
                except (OSError, ValueError):
                    events = []
                hup = any(ev & (select.POLLHUP | select.POLLERR | select.POLLNVAL) for _, ev in events)
                with self._lock:
                    current = generation == self._generation
                    if hup:
                        if current:
                            self._client_open = False
                    elif current and not self._client_open:
                        self._client_open = True
                        if self.reset_on_open:
                            # An Arduino resets when the port opens (DTR): a fresh power-up.
                            self.resets += 1
                            self._power_up()
                            self._welcome()
                if hup:
                    time.sleep(0.005)  # POLLHUP is level-triggered; don't spin
                elif events:
                    with self._lock:
                        if generation == self._generation:
                            try:
                                data = os.read(master, 4096)
                            except OSError:
                                data = b""
            now = time.monotonic()
            dt = min(now - last, 0.25)
            last = now
            with self._lock:
                try:
                    for byte in data:
                        self._on_byte(byte)
                    self._advance(dt * self.speed, dt)
                    self._process_input()
                    if self._status_requested:
                        self._status_requested = False
                        self._emit(self.status_report())
                except Exception as exc:  # a simulator bug must not kill the device silently
                    self._emit(f"[MSG:Simulator fault {type(exc).__name__}: {exc}]")

    def _emit_raw(self, text: str) -> None:
        master = self._master
        if master is None or not self._client_open:
            return
        try:
            os.write(master, text.encode("ascii", "replace"))
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EIO):
                raise

    def _emit(self, line: str) -> None:
        self.sent.append(line)
        self._emit_raw(line + "\r\n")

    def _on_byte(self, byte: int) -> None:
        if facts.is_realtime_byte(byte):
            self.realtime_received.append(byte)
        if byte == _RT_RESET:
            self._reset()
            return
        if self._critical:
            return  # a critical alarm ignores everything but a reset, status queries included
        if byte == _RT_STATUS:  # two queries before a report give one report
            self._status_requested = True
        elif byte == _RT_FEED_HOLD:
            self._feed_hold()
        elif byte == _RT_CYCLE_START:
            self._cycle_start()
        elif byte == _RT_SAFETY_DOOR:
            self._door_event()
        elif byte == _RT_JOG_CANCEL:
            if self.state == "Jog":
                self._planner.clear()
                self._cur = None
                self._parser_pos = self.mpos
                self.state = "Idle"
        elif facts.FEED_OV_RESET[0] <= byte <= facts.MIST_TOGGLE[0]:
            self._override(byte)
        elif byte >= 0x80:
            return  # unused extended byte: ignored by GRBL
        elif len(self._rx) < RX_BUFFER_USABLE:
            self._rx.append(byte)
        else:
            self.rx_overflows += 1  # the real ISR drops it too

    def _feed_hold(self) -> None:
        if self.state in ("Alarm", "Check", "Sleep", "Home", "Door"):
            return
        if self.state == "Jog":  # a feed hold cancels a jog
            self._planner.clear()
            self._cur = None
            self._parser_pos = self.mpos
            self.state = "Idle"
            return
        if self.state == "Run":
            # st_update_plan_block_parameters(): the stepper re-plans a deceleration to zero from the
            # speed it has now; the hold is complete (Hold:0) once the machine has stopped.
            self.state, self.substate = "Hold", 1
            self._hold_v = self._speed_now()
        elif self.state == "Idle":
            self.state, self.substate = "Hold", 0

    def _cycle_start(self) -> None:
        # gnea/grbl protocol.c, protocol_exec_rt_system(), EXEC_CYCLE_START (lines 331-368 of v1.1h):
        # "Cycle start only when IDLE or when a hold is complete and ready to resume":
        #     if ((sys.state == STATE_IDLE) || ((sys.state & STATE_HOLD) && (sys.suspend & SUSPEND_HOLD_COMPLETE)))
        # SUSPEND_HOLD_COMPLETE is set only by EXEC_CYCLE_STOP once the stepper has decelerated to a
        # stop (report.c prints "Hold:0" then, "Hold:1" before). So a '~' during Hold:1 is dropped, not
        # remembered: the flag is cleared at the end of that block either way.
        if self.state == "Hold" and self.substate == 0:
            self._spindle_stop = False
            self.state, self.substate = ("Run" if self._has_motion() else "Idle"), None
        elif self.state == "Door" and self.substate == 0 and not self.door_open:
            self.state, self.substate = "Door", 3
            self._restore_left = 0.2
        elif self.state == "Idle" and self._has_motion():
            self.state = "Run"

    def _has_motion(self) -> bool:
        return self._cur is not None or bool(self._planner)

    def _block_rate(self, block: _Block) -> float:
        """The block's feed after overrides, mm/min."""
        if block.rapid:
            return block.rate * self.rapid_ov / 100.0
        return block.rate * (1.0 if block.jog else self.feed_ov / 100.0)

    def _speed_now(self) -> float:
        """The machine's speed along its path, mm/s (0 when nothing executes)."""
        block = self._cur if self._cur is not None else (self._planner[0] if self._planner else None)
        return 0.0 if block is None else self._block_rate(block) / 60.0

    def _acceleration(self, block: _Block | None) -> float:
        """The block's acceleration limit, mm/s²: each moving axis's ``$12x`` over its share of the move.

        As GRBL's planner (``limit_value_by_axis_maximum``): the smallest ``$12x / |unit_x|``. An arc
        moves X and Y in turn, so it gets the smaller of the two.
        """
        accels = [max(float(self.settings.get(120 + i, 10.0)), 1e-6) for i in range(3)]
        if block is None:
            return min(accels)
        if block.arc is not None:
            limits = [accels[0], accels[1]]
            if block.target[2] != block.start[2]:
                limits.append(accels[2])
            return min(limits)
        delta = [t - s for t, s in zip(block.target, block.start, strict=True)]
        length = math.sqrt(sum(d * d for d in delta))
        if length <= 0:
            return min(accels)
        return min(accels[i] / (abs(d) / length) for i, d in enumerate(delta) if d != 0)

    def _override(self, byte: int) -> None:
        value = bytes([byte])
        if value == facts.FEED_OV_RESET:
            self.feed_ov = 100
        elif value in _FEED_OV_STEPS:
            self.feed_ov = min(200, max(10, self.feed_ov + _FEED_OV_STEPS[value]))
        elif value == facts.RAPID_OV_RESET:
            self.rapid_ov = 100
        elif value == facts.RAPID_OV_50:
            self.rapid_ov = 50
        elif value == facts.RAPID_OV_25:
            self.rapid_ov = 25
        elif value == facts.SPINDLE_OV_RESET:
            self.spindle_ov = 100
        elif value in _SPINDLE_OV_STEPS:
            self.spindle_ov = min(200, max(10, self.spindle_ov + _SPINDLE_OV_STEPS[value]))
        elif value == facts.SPINDLE_STOP_TOGGLE:
            if self.state == "Hold" and self.substate == 0:
                self._spindle_stop = not self._spindle_stop
        elif value == facts.FLOOD_TOGGLE:
            self._flood = not self._flood
        elif value == facts.MIST_TOGGLE:
            self._mist = not self._mist

    # --- motion ------------------------------------------------------------------------------------

    def _advance(self, dt: float, dt_real: float) -> None:
        """Execute ``dt`` simulated seconds of motion, holds, homing and dwells."""
        if self.state == "Home":
            self._home_left -= dt
            if self._home_left <= 0:
                self.mpos = (0.0, 0.0, 0.0)
                self._parser_pos = self.mpos
                self.state = "Idle"
                self._pending = None
                self._emit("ok")
            return
        decelerating = (self.state == "Hold" and self.substate == 1) or (
            self.state == "Door" and self.substate == 2
        )
        if self.state in ("Run", "Jog"):
            self._move(dt)
        if decelerating:
            self._decelerate(dt)
        if self.state == "Door" and self.substate == 3:
            self._restore_left -= dt
            if self._restore_left <= 0:
                self.state, self.substate = ("Run" if self._has_motion() else "Idle"), None
        if self.state in ("Run", "Jog") and not self._has_motion():
            self.state = "Idle"
        if self._pending is not None and self._pending.kind == "dwell" and self._pending.started:
            self._pending.seconds -= dt
            if self._pending.seconds <= 0:
                self._pending = None
                self._emit("ok")

    def _decelerate(self, dt: float) -> None:
        """``dt`` simulated seconds of a hold's deceleration: v falls by a·t, the path goes on meanwhile."""
        block = self._cur if self._cur is not None else (self._planner[0] if self._planner else None)
        accel = self._acceleration(block)
        v0 = self._hold_v
        t = min(dt, v0 / accel) if v0 > 0 else 0.0
        v1 = max(0.0, v0 - accel * t)
        self._travel((v0 + v1) / 2.0 * t)
        self._hold_v = v1
        if v1 <= 1e-9 or not self._has_motion():
            self._hold_v = 0.0
            # protocol.c, EXEC_CYCLE_STOP: the hold is complete (SUSPEND_HOLD_COMPLETE): Hold:0, Door:1/0.
            self.substate = 0 if self.state == "Hold" else (1 if self.door_open else 0)

    def _travel(self, distance: float) -> None:
        """Move ``distance`` mm along the planned path (a deceleration's share of it)."""
        remaining = distance
        while remaining > 1e-12:
            if self._cur is None:
                if not self._planner:
                    return
                self._cur = self._planner.popleft()
                self._cur_done = 0.0
                if not self._cur.jog:
                    self._spindle, self._spindle_s = self._cur.spindle, self._cur.s
                    self._flood, self._mist = self._cur.flood, self._cur.mist
            block = self._cur
            left = block.length - self._cur_done
            if left <= remaining:
                remaining -= left
                self.mpos = block.target
                self._cur = None
            else:
                self._cur_done += remaining
                self.mpos = block.point(self._cur_done / block.length if block.length else 1.0)
                remaining = 0.0

    def _move(self, dt: float) -> None:
        remaining = dt
        while remaining > 0:
            if self._cur is None:
                if not self._planner:
                    return
                self._cur = self._planner.popleft()
                self._cur_done = 0.0
                if not self._cur.jog:
                    self._spindle, self._spindle_s = self._cur.spindle, self._cur.s
                    self._flood, self._mist = self._cur.flood, self._cur.mist
            block = self._cur
            mm_s = max(self._block_rate(block) / 60.0, 1e-6)
            left = block.length - self._cur_done
            need = left / mm_s
            if need <= remaining:
                remaining -= need
                self.mpos = block.target
                self._cur = None
            else:
                self._cur_done += mm_s * remaining
                self.mpos = block.point(self._cur_done / block.length if block.length else 1.0)
                remaining = 0.0

    # --- line input --------------------------------------------------------------------------------

    def _process_input(self) -> None:
        while True:
            if self._critical or self.state in ("Sleep", "Home"):
                return
            if self._pending is not None and not self._try_pending():
                return
            terminator = -1
            for index, byte in enumerate(self._rx):
                if byte in (0x0A, 0x0D):
                    terminator = index
                    break
            if terminator < 0:
                if len(self._rx) >= RX_BUFFER_USABLE:
                    # A line longer than the buffer can hold: GRBL would report an overflow for it.
                    self._rx.clear()
                    self._emit("error:11")
                return
            raw = bytes(self._rx[:terminator]).decode("ascii", "replace")
            del self._rx[: terminator + 1]
            self.received.append(raw)
            self._execute_line(raw)

    def _try_pending(self) -> bool:
        """Progress the pending line; True once it is done (its reply sent)."""
        pending = self._pending
        assert pending is not None
        if pending.kind == "plan":
            if len(self._planner) + (1 if self._cur else 0) >= PLANNER_BLOCKS:
                return False
            assert pending.block is not None
            self._plan(pending.block)
            self._pending = None
            self._emit("ok")
            return True
        idle = not self._has_motion() and self.state not in ("Hold", "Door")
        if pending.kind == "sync":
            if not idle:
                return False
            assert pending.action is not None
            self._pending = None
            for line in pending.action():
                self._emit(line)
            return True
        if pending.kind == "dwell":
            if not pending.started:
                if not idle:
                    return False
                pending.started = True
            return False  # _advance finishes it
        return False

    def _plan(self, block: _Block) -> None:
        self._planner.append(block)
        if self.state == "Idle":
            self.state = "Jog" if block.jog else "Run"  # auto cycle start

    def _execute_line(self, raw: str) -> None:
        line = _strip_line(raw)
        if len(line) >= LINE_BUFFER_SIZE:
            self._emit("error:11")
            return
        if not line:
            self._emit("ok")
            return
        if line.startswith("$"):
            self._system_command(line)
            return
        if self.state in ("Alarm", "Jog"):
            self._emit("error:9")
            return
        try:
            self._gcode(line)
        except _GcodeError as exc:
            self._emit(f"error:{exc.code}")

    # --- $ commands --------------------------------------------------------------------------------

    def _system_command(self, line: str) -> None:
        cmd = line[1:]
        if cmd == "":
            self._emit("[HLP:$$ $# $G $I $N $x=val $Nx=line $J=line $SLP $C $X $H ~ ! ? ctrl-x]")
            self._emit("ok")
        elif cmd.startswith("J="):
            self._jog(cmd[2:])
        elif cmd == "$":
            if self.state in ("Run", "Hold"):
                self._emit("error:8")
                return
            for number, value in sorted(self.settings.items()):
                self._emit(f"${number}={_fmt_setting(number, value)}")
            self._emit("ok")
        elif cmd == "G":
            self._emit(f"[GC:{self._gc_modes()}]")
            self._emit("ok")
        elif cmd == "C":
            if self.state == "Check":
                self._emit("[MSG:Disabled]")
                self._emit("ok")
                self.state = "Idle"
                self._reset()
            elif self.state != "Idle":
                self._emit("error:8")
            else:
                self.state = "Check"
                self._emit("[MSG:Enabled]")
                self._emit("ok")
        elif cmd == "X":
            if self.state == "Alarm":
                if self.door_open:
                    self._emit("error:13")
                    return
                self._emit("[MSG:Caution: Unlocked]")
                self.state, self.substate = "Idle", None
            self._emit("ok")
        elif cmd.startswith("$"):
            self._emit("error:3")
        elif self.state not in ("Idle", "Alarm"):
            self._emit("error:8")
        elif cmd == "#":
            names = ["G54", "G55", "G56", "G57", "G58", "G59"]
            for name, offset in zip(names, self.coord_systems, strict=True):
                self._emit(f"[{name}:{_vec(offset)}]")
            self._emit("[G28:0.000,0.000,0.000]")
            self._emit("[G30:0.000,0.000,0.000]")
            self._emit(f"[G92:{_vec(self.g92)}]")
            self._emit("[TLO:0.000]")
            self._emit("[PRB:0.000,0.000,0.000:0]")
            self._emit("ok")
        elif cmd == "H":
            if not self.settings.get(22):
                self._emit("error:5")
            elif self.door_open:
                self._emit("error:13")
            else:
                self.state, self.substate = "Home", None
                self._home_left = HOMING_S
                self._pending = _Pending("home")
        elif cmd == "SLP":
            self._emit("ok")
            self._emit("[MSG:Sleeping]")
            self._stop_motion()
            self.state, self.substate = "Sleep", None
        elif cmd == "I":
            self._emit(f"[VER:{VERSION}.{BUILD}:]")
            self._emit(f"[OPT:V,{PLANNER_BLOCKS},{RX_BUFFER_SIZE}]")
            self._emit("ok")
        elif cmd == "N":
            self._emit("$N0=")
            self._emit("$N1=")
            self._emit("ok")
        elif cmd.startswith("RST="):
            if cmd[4:] not in ("$", "#", "*"):
                self._emit("error:3")
                return
            if cmd[4:] in ("$", "*"):
                laser = self.laser
                self.settings = dict(DEFAULT_SETTINGS)
                if laser:
                    self.settings.update({32: 1})
            if cmd[4:] in ("#", "*"):
                self.coord_systems = [(0.0, 0.0, 0.0)] * 6
            self._emit("[MSG:Restoring defaults]")
            self._emit("ok")
        else:
            match = re.fullmatch(r"(\d+)=(.*)", cmd)
            if not match:
                self._emit("error:3")
                return
            number = int(match.group(1))
            if number not in DEFAULT_SETTINGS:
                self._emit("error:3")
                return
            if not _NUMBER_RE.fullmatch(match.group(2)):
                self._emit("error:2")
                return
            value = float(match.group(2))
            if value < 0:
                self._emit("error:4")
                return
            if number == 0 and value < 3:
                self._emit("error:6")
                return
            self.settings[number] = value
            self._emit("ok")

    def _gc_modes(self) -> str:
        spindle = {"off": "M5", "cw": "M3", "ccw": "M4"}[self._m_spindle]
        coolant = " ".join(c for c, on in (("M7", self._m_mist), ("M8", self._m_flood)) if on) or "M9"
        return (
            f"G{self._motion} G{54 + self._coord} G17 {'G20' if self._inches else 'G21'} "
            f"{'G90' if self._absolute else 'G91'} G94 M0 {spindle} {coolant} T0 "
            f"F{_num(self._feed)} S{_num(self._s)}"
        )

    def _jog(self, text: str) -> None:
        if self.state not in ("Idle", "Jog"):
            self._emit("error:8")
            return
        try:
            words = _parse_words(text)
        except _GcodeError as exc:
            self._emit(f"error:{exc.code}")
            return
        absolute, inches, machine = self._absolute, self._inches, False
        axes: dict[str, float] = {}
        feed = None
        for letter, value in words:
            if letter == "G":
                if value == 90:
                    absolute = True
                elif value == 91:
                    absolute = False
                elif value == 20:
                    inches = True
                elif value == 21:
                    inches = False
                elif value == 53:
                    machine = True
                else:
                    self._emit("error:16")
                    return
            elif letter in "XYZ":
                axes[letter] = value
            elif letter == "F":
                feed = value
            else:
                self._emit("error:16")
                return
        if feed is None or feed <= 0:
            self._emit("error:22")
            return
        if not axes:
            self._emit("error:26")
            return
        scale = 25.4 if inches else 1.0
        start = self._parser_pos
        target = self._target(axes, scale, absolute=absolute, machine=machine, start=start)
        length = math.dist(start, target)
        block = self._block(start, target, length, feed * scale, rapid=False, motion=1, line=None)
        block.jog = True
        self._parser_pos = target
        if length > 0:
            self._pending = _Pending("plan", block=block)
            self._try_pending()
        else:
            self._emit("ok")

    # --- G-code --------------------------------------------------------------------------------------

    def _target(
        self, axes: dict[str, float], scale: float, *, absolute: bool, machine: bool, start: Vec
    ) -> Vec:
        wco = (0.0, 0.0, 0.0) if machine else self.wco
        out = list(start)
        for i, axis in enumerate("XYZ"):
            if axis in axes:
                value = axes[axis] * scale
                out[i] = value + wco[i] if (absolute or machine) else start[i] + value
        return (out[0], out[1], out[2])

    def _block(
        self,
        start: Vec,
        target: Vec,
        length: float,
        rate: float,
        *,
        rapid: bool,
        motion: int,
        line: int | None,
    ) -> _Block:
        return _Block(
            start=start,
            target=target,
            length=length,
            rate=rate,
            rapid=rapid,
            motion=motion,
            spindle=self._m_spindle,
            s=self._s,
            flood=self._m_flood,
            mist=self._m_mist,
            line=line,
        )

    def _gcode(self, line: str) -> None:
        words = _parse_words(line)
        values: dict[str, float] = {}
        gcodes: list[float] = []
        mcodes: list[float] = []
        for letter, value in words:
            if letter == "G":
                gcodes.append(value)
            elif letter == "M":
                mcodes.append(value)
            elif letter in values:
                raise _GcodeError(25)
            elif letter in "XYZIJKFSPNRLT":
                values[letter] = value
            else:
                raise _GcodeError(20)
        motion: int | None = None
        nonmodal: str | None = None
        absolute, inches, coord, machine = self._absolute, self._inches, self._coord, False
        for g in gcodes:
            code = round(g * 10) / 10
            if code in (0, 1, 2, 3):
                if motion is not None:
                    raise _GcodeError(21)
                motion = int(code)
            elif code in (4, 10, 28, 30, 92, 92.1, 28.1, 30.1):
                if nonmodal is not None:
                    raise _GcodeError(21)
                nonmodal = f"{code:g}"
            elif code in (90, 91):
                absolute = code == 90
            elif code in (20, 21):
                inches = code == 20
            elif code in (54, 55, 56, 57, 58, 59):
                coord = int(code) - 54
            elif code == 53:
                machine = True
            elif code in (17, 40, 49, 80, 91.1, 94, 61):
                pass
            else:
                raise _GcodeError(20)
        spindle, flood, mist, end = self._m_spindle, self._m_flood, self._m_mist, False
        for m in mcodes:
            code = round(m * 10) / 10
            if code in (3, 4, 5):
                spindle = {3: "cw", 4: "ccw", 5: "off"}[int(code)]
            elif code == 7:
                mist = True
            elif code == 8:
                flood = True
            elif code == 9:
                flood = mist = False
            elif code in (2, 30):
                end = True
            elif code in (0, 1, 56):
                pass
            else:
                raise _GcodeError(20)
        if "N" in values and not (0 <= values["N"] <= 9999999 and values["N"] == int(values["N"])):
            raise _GcodeError(27)
        line_no = int(values["N"]) if values.get("N") else None
        scale = 25.4 if inches else 1.0
        axes = {a: values[a] for a in "XYZ" if a in values}
        feed = values["F"] * scale if "F" in values else self._feed
        if "F" in values and values["F"] < 0:
            raise _GcodeError(4)
        if "S" in values and values["S"] < 0:
            raise _GcodeError(4)
        # Commit modal state (as GRBL does once the block checks out).
        self._absolute, self._inches, self._coord = absolute, inches, coord
        if "F" in values:
            self._feed = feed
        if "S" in values:
            self._s = min(values["S"], self.settings[30])
        spindle_changed = (spindle, flood, mist) != (self._m_spindle, self._m_flood, self._m_mist)
        self._m_spindle, self._m_flood, self._m_mist = spindle, flood, mist
        check = self.state == "Check"

        if nonmodal == "4":
            if "P" not in values:
                raise _GcodeError(28)
            if check:
                self._emit("ok")
                return
            self._pending = _Pending("dwell", seconds=values["P"])
            self._try_pending()
            return
        if nonmodal in ("10", "92", "92.1"):
            self._offsets(nonmodal, values, axes, scale, check)
            return
        if nonmodal in ("28", "30", "28.1", "30.1"):
            axes = {}
        if motion is None and axes:
            motion = self._motion
        if motion is not None:
            self._motion = motion
        if end:
            self._program_end(check)
            return
        if motion is None or not axes:
            if spindle_changed and not check and not self.settings.get(32):
                self._pending = _Pending("sync", action=self._apply_spindle)
                self._try_pending()
                return
            if spindle_changed and not check and not self._has_motion():
                self._apply_spindle()
            self._emit("ok")
            return
        start = self._parser_pos
        target = self._target(axes, scale, absolute=absolute, machine=machine, start=start)
        arc = None
        if motion == 0:
            rate = min(self.settings[110], self.settings[111], self.settings[112])
            length = math.dist(start, target)
        else:
            if feed <= 0:
                raise _GcodeError(22)
            rate = feed
            if motion in (2, 3):
                arc, length = self._arc(motion, start, target, values, scale)
            else:
                length = math.dist(start, target)
        self._parser_pos = target
        if check:
            self._emit("ok")
            return
        block = self._block(start, target, length, rate, rapid=motion == 0, motion=motion, line=line_no)
        block.arc = arc
        if length <= 0:
            self._emit("ok")
            return
        self._pending = _Pending("plan", block=block)
        self._try_pending()

    def _apply_spindle(self) -> list[str]:
        self._spindle, self._spindle_s = self._m_spindle, self._s
        self._flood, self._mist = self._m_flood, self._m_mist
        return ["ok"]

    def _arc(
        self, motion: int, start: Vec, target: Vec, values: dict[str, float], scale: float
    ) -> tuple[tuple[float, float, float, float, float], float]:
        dx, dy = target[0] - start[0], target[1] - start[1]
        if "R" in values:
            r = values["R"] * scale
            h2 = 4 * r * r - dx * dx - dy * dy
            if h2 < 0 or (dx == 0 and dy == 0):
                raise _GcodeError(33)
            h = -math.sqrt(h2) / math.hypot(dx, dy)
            if motion == 3:
                h = -h
            if r < 0:
                h, r = -h, -r
            i, j = 0.5 * (dx - dy * h), 0.5 * (dy + dx * h)
        else:
            if "I" not in values and "J" not in values:
                raise _GcodeError(35)
            i, j = values.get("I", 0.0) * scale, values.get("J", 0.0) * scale
        cx, cy = start[0] + i, start[1] + j
        r = math.hypot(i, j)
        if r == 0:
            raise _GcodeError(33)
        a0 = math.atan2(start[1] - cy, start[0] - cx)
        a1 = math.atan2(target[1] - cy, target[0] - cx)
        sweep = a1 - a0
        if motion == 2 and sweep >= 0:
            sweep -= 2 * math.pi
        elif motion == 3 and sweep <= 0:
            sweep += 2 * math.pi
        length = math.hypot(r * abs(sweep), target[2] - start[2])
        return (cx, cy, r, a0, sweep), length

    def _offsets(
        self, code: str, values: dict[str, float], axes: dict[str, float], scale: float, check: bool
    ) -> None:
        if check:
            self._emit("ok")
            return

        def apply() -> list[str]:
            pos = self._parser_pos
            if code == "92":
                wcs = self.coord_systems[self._coord]
                self.g92 = tuple(  # type: ignore[assignment]
                    (pos[i] - wcs[i] - axes[a] * scale) if a in axes else self.g92[i]
                    for i, a in enumerate("XYZ")
                )
            elif code == "92.1":
                self.g92 = (0.0, 0.0, 0.0)
            else:
                mode = int(values.get("L", 0))
                index = int(values.get("P", 1)) - 1 if values.get("P", 1) else self._coord
                if mode not in (2, 20) or not 0 <= index < 6:
                    return ["error:20" if mode not in (2, 20) else "error:29"]
                old = self.coord_systems[index]
                new = list(old)
                for i, a in enumerate("XYZ"):
                    if a in axes:
                        new[i] = axes[a] * scale if mode == 2 else pos[i] - self.g92[i] - axes[a] * scale
                self.coord_systems[index] = (new[0], new[1], new[2])
            return ["ok"]

        self._pending = _Pending("sync", action=apply)
        self._try_pending()

    def _program_end(self, check: bool) -> None:
        def finish() -> list[str]:
            self._motion = 1
            self._absolute, self._coord = True, 0
            self._m_spindle, self._m_flood, self._m_mist = "off", False, False
            self._spindle, self._spindle_s, self._flood, self._mist = "off", 0.0, False, False
            self.feed_ov, self.rapid_ov, self.spindle_ov = 100, 100, 100
            return ["[MSG:Pgm End]", "ok"]

        if check:
            for line in finish():
                self._emit(line)
            return
        self._pending = _Pending("sync", action=finish)
        self._try_pending()

    # --- status report -------------------------------------------------------------------------------

    def status_report(self) -> str:
        """Build one ``<…>`` report, advancing the WCO/Ov refresh counters as GRBL's report.c does."""
        state = self.state if self.substate is None else f"{self.state}:{self.substate}"
        mask = int(self.settings.get(10, 1))
        wco = self.wco
        if mask & 1:
            fields = [state, "MPos:" + _vec(self.mpos)]
        else:
            fields = [state, "WPos:" + _vec(tuple(m - o for m, o in zip(self.mpos, wco, strict=True)))]
        if mask & 2:
            used = len(self._planner) + (1 if self._cur else 0)
            fields.append(f"Bf:{PLANNER_BLOCKS - used},{RX_BUFFER_SIZE - len(self._rx)}")
        if self._cur is not None and self._cur.line is not None and not self._cur.jog:
            fields.append(f"Ln:{self._cur.line}")
        feed = 0.0
        if self._cur is not None and self.state in ("Run", "Jog"):
            feed = self._block_rate(self._cur)
        elif (self.state, self.substate) in (("Hold", 1), ("Door", 2)):
            feed = self._hold_v * 60.0  # the speed it has slowed down to
        fields.append(f"FS:{_num(feed)},{_num(self._spindle_now())}")
        pins = self.limit_pins + ("D" if self.door_open else "")
        if pins:
            fields.append(f"Pn:{pins}")
        busy = self.state in ("Run", "Hold", "Jog", "Home", "Door")
        if wco != self._prev_wco:
            self._wco_counter = 0
            self._prev_wco = wco
        accessories = ""
        if self._spindle != "off":
            accessories += "S" if self._spindle == "cw" else "C"
        if self._flood:
            accessories += "F"
        if self._mist:
            accessories += "M"
        ov_now = (self.feed_ov, self.rapid_ov, self.spindle_ov, accessories)
        if ov_now != self._prev_ov:
            self._ovr_counter = 0
            self._prev_ov = ov_now
        if self._wco_counter > 0:
            self._wco_counter -= 1
        else:
            self._wco_counter = (30 if busy else 10) - 1
            if self._ovr_counter == 0:
                self._ovr_counter = 1  # Ov is delayed one report when WCO is sent
            fields.append("WCO:" + _vec(wco))
        if self._ovr_counter > 0:
            self._ovr_counter -= 1
        else:
            self._ovr_counter = (20 if busy else 10) - 1
            fields.append(f"Ov:{self.feed_ov},{self.rapid_ov},{self.spindle_ov}")
            if accessories:
                fields.append("A:" + accessories)
        return "<" + "|".join(fields) + ">"


def _strip_line(raw: str) -> str:
    """What GRBL keeps of a line: no spaces, no comments, upper case."""
    out: list[str] = []
    in_paren = False
    for char in raw:
        if in_paren:
            if char == ")":
                in_paren = False
            continue
        if char == "(":
            in_paren = True
        elif char == ";":
            break
        elif char.isspace() or ord(char) < 0x20:
            continue
        else:
            out.append(char.upper())
    return "".join(out)


def _parse_words(line: str) -> list[tuple[str, float]]:
    words: list[tuple[str, float]] = []
    pos = 0
    while pos < len(line):
        letter = line[pos]
        if not ("A" <= letter <= "Z"):
            raise _GcodeError(1)
        match = _NUMBER_RE.match(line, pos + 1)
        if not match:
            raise _GcodeError(2)
        words.append((letter, float(match.group())))
        pos = match.end()
    return words


def _num(value: float) -> str:
    return str(round(value)) if abs(value - round(value)) < 1e-9 else f"{value:.1f}"


def _vec(values: tuple[float, ...]) -> str:
    return ",".join(f"{v:.3f}" for v in values)


def _fmt_setting(number: int, value: float) -> str:
    return f"{value:.3f}" if number in _FLOAT_SETTINGS else str(int(value))


def main(argv: list[str] | None = None) -> int:
    """Run a simulator until interrupted (for manual sessions with a sender or the bridge)."""
    parser = argparse.ArgumentParser(description="GRBL 1.1 simulator on a pseudo-terminal")
    parser.add_argument("--link", help="create this symlink to the pty (like a udev by-id link)")
    parser.add_argument("--laser", action="store_true", help="laser mode ($32=1)")
    parser.add_argument("--speed", type=float, default=1.0, help="simulated-time factor")
    parser.add_argument("--homing", action="store_true", help="homing enabled ($22=1): powers up in Alarm")
    args = parser.parse_args(argv)
    sim = GrblSimulator(laser=args.laser, speed=args.speed, link_path=args.link, homing=args.homing)

    def _terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)  # stop cleanly (remove the link) under a supervisor
    path = sim.start()
    print(f"GRBL simulator on {path} ({'laser' if args.laser else 'cnc'}, speed x{args.speed})", flush=True)
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()
    return 0


__all__ = ["GrblSimulator", "main"]

if __name__ == "__main__":
    raise SystemExit(main())
