"""The file sender: ``python -m firmware_bridge send`` streams a G-code file to a GRBL machine.

:func:`send_file` streams with character counting and prints progress, either through a running
bridge's pass-through pty (:func:`resolve_send_port` prefers it), straight to the machine's port, or
through a :class:`~firmware_bridge.adapters.grbl.adapter.GrblAdapter` in this process. It announces the
job with a marker line first (see :mod:`.passthrough`), and stops the machine the safe way (feed hold,
then a soft reset once the hold is complete) on an error, a timeout or Ctrl-C.
"""

from __future__ import annotations

import collections
import contextlib
import os
import select
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

import serial

from firmware_bridge.adapters.base import CommandError
from firmware_bridge.adapters.grbl import facts, wire
from firmware_bridge.adapters.grbl.adapter import GrblAdapter
from firmware_bridge.adapters.grbl.link import WELCOME_WAIT_S
from firmware_bridge.adapters.grbl.passthrough import job_marker
from firmware_bridge.adapters.grbl.streaming import load_gcode

#: Seconds ``send`` waits for the feed hold to complete before resetting anyway.
HOLD_WAIT_S = 5.0


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
            self.ser.write(facts.FEED_HOLD)
            end = time.monotonic() + HOLD_WAIT_S
            while time.monotonic() < end:
                self.ser.write(facts.STATUS_QUERY)
                for text in self._lines_in(0.2):
                    parsed = wire.parse_line(text)
                    if isinstance(parsed, wire.StatusReport) and (
                        parsed.state in ("Idle", "Alarm")
                        or (parsed.state in ("Hold", "Door") and parsed.substate == 0)
                    ):
                        end = 0
                        break
            self.ser.write(facts.SOFT_RESET)

    def run(self) -> int:
        # Opening a USB GRBL resets it, and a pass-through resets an idle machine on open: wait briefly
        # for that welcome so it is not mistaken for a reset in the middle of the job.
        end = time.monotonic() + WELCOME_WAIT_S
        while time.monotonic() < end:
            if any(isinstance(wire.parse_line(t), wire.Welcome) for t in self._lines_in(0.1)):
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
                parsed = wire.parse_line(text)
                if isinstance(parsed, wire.Message):
                    self._print(f"[{parsed.kind}:{parsed.text}]")
                elif isinstance(parsed, wire.Error):
                    self._print(f"{self.name}: refused (error:{parsed.code}: {parsed.meaning})")
                    return 1
                elif isinstance(parsed, wire.Ok):
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
                while self.sent < total and used + len(all_lines[self.sent]) + 1 <= facts.RX_BUFFER_USABLE:
                    data = all_lines[self.sent].encode("ascii") + b"\n"
                    self.ser.write(data)
                    self.inflight.append(len(data))
                    used += len(data)
                    self.sent += 1
                if now - last_query >= 0.25:
                    self.ser.write(facts.STATUS_QUERY)
                    last_query = now
                for text in self._lines_in(0.05):
                    parsed = wire.parse_line(text)
                    if wire.is_ack(parsed):
                        if self.inflight:
                            self.inflight.popleft()
                        self.acked += 1
                        if isinstance(parsed, wire.Error):
                            where = "job marker" if self.acked == 1 else f"line {self.acked - 1}"
                            self._print(f"{self.name}: error:{parsed.code} at {where}: {parsed.meaning}")
                            if self.acked > 1:
                                self._print(f"  {all_lines[self.acked - 1]}")
                                self._stop_machine()
                            return 1
                        if self.acked == total:
                            finished_at = time.monotonic()
                    elif isinstance(parsed, wire.Alarm):
                        self._print(f"{self.name}: ALARM:{parsed.code}: {parsed.meaning}")
                        return 1
                    elif isinstance(parsed, wire.Welcome):
                        self._print(f"{self.name}: the controller was reset; job aborted")
                        return 1
                    elif isinstance(parsed, wire.Message):
                        self._print(f"[{parsed.kind}:{parsed.text}]")
                    elif isinstance(parsed, wire.StatusReport):
                        self.state = wire.state_name(parsed)
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
