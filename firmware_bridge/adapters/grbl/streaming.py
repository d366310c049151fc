"""Streaming G-code to GRBL with character counting, and the life of a job.

GRBL acknowledges each line with ``ok`` or ``error:n`` in the order received, and its RX buffer holds
at most :data:`~firmware_bridge.adapters.grbl.facts.RX_BUFFER_USABLE` bytes. :class:`StreamingMixin`
keeps one FIFO of every line in that buffer with its owner (``_inflight``: the bridge's own lines, a
job's, the sender's, and lines the pass-through answers itself), sends a job's next lines while they
fit, and hands each ``ok``/``error`` to the owner of the oldest line. A job ends ``finished`` when every
line is acknowledged and a later report says Idle, ``failed`` on ``error:n`` (the machine is then
stopped like a cancel) or an alarm, ``cancelled`` by the cancel sequence: feed hold, soft reset once the
hold is complete (``Hold:0``) so that GRBL keeps its position, and ``$X`` if an ``ALARM:3`` came anyway.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from firmware_bridge.adapters.base import IDLE, CommandError, JobInfo
from firmware_bridge.adapters.grbl import facts, wire

log = logging.getLogger(__name__)

#: A sender job ends after the machine has been Idle this long with no sender line in flight.
SENDER_JOB_IDLE_S = 2.0
#: A ``$n=value`` line: a sender changing a setting.
_SETTING_WRITE_RE = re.compile(r"^\$(\d+)=(-?[0-9.]+)$")


def load_gcode(path: str | Path) -> list[str]:
    """Read a G-code file as the lines to stream: comments stripped, empty lines dropped.

    Raises ``ValueError`` naming the first line that GRBL could not take (longer than its 80-character
    line buffer, or bytes GRBL would read as realtime commands).
    """
    lines: list[str] = []
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    for number, raw in enumerate(text.splitlines(), start=1):
        line = wire.clean_gcode_line(raw)
        if not line:
            continue
        bad = [c for c in line if facts.is_realtime_byte(ord(c)) or ord(c) < 0x20 or ord(c) > 0x7E]
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
    done: Callable[[_InFlight, wire.ParsedLine], None] | None = None


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


class StreamingMixin:
    """Jobs and the line FIFO of a :class:`~firmware_bridge.adapters.grbl.adapter.GrblAdapter`."""

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

    def _on_ack(self, entry: _InFlight | None, parsed: wire.ParsedLine) -> None:
        if isinstance(parsed, wire.Error):
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
        if entry.owner == "sender" and isinstance(parsed, wire.Ok):
            match = _SETTING_WRITE_RE.match(entry.line.strip())
            if match:  # the sender changed a setting ($32 laser mode…): keep ours in step
                self.settings[int(match.group(1))] = float(match.group(2))
        if entry.owner == "sender":
            self._sender_acks += 1
            if self._job is not None and self._job.source == "sender":
                self._job.acked += 1
        if entry.owner == "job" and self._job is not None:
            self._job.acked += 1
            if isinstance(parsed, wire.Error) and self._cancel is None:
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
                if used + size > facts.RX_BUFFER_USABLE:
                    break
                self._write(line.encode("ascii") + b"\n")
                self._inflight.append(_InFlight("job", size, line))
                job.sent += 1
                used += size
        if self._held and not self._bridge_owns_buffer():
            while self._held:
                self._send_sender_line(self._held.popleft())

    def _tick_cancel(self, now: float) -> None:
        cancel = self._cancel
        if cancel is None:
            return
        if self._job is not None:
            self._job.stop_sending = True
        report = self._report
        if cancel.phase == "hold":
            self._write(facts.FEED_HOLD)
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
                self._write(facts.SOFT_RESET)
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
