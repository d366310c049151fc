"""What GRBL reports, turned into the contract: state, errors, events and telemetry.

:class:`ReportsMixin` keeps the last status report (``_report``, with the last ``WCO`` and override
values, the alarm code, the door) and handles the push messages: ``ALARM:n`` (an ``alarm`` event, a
bridge job failed), ``[MSG:…]`` (a ``grbl_message`` event), the welcome after a reset (every line in
flight lost, a cancel completed). It maps GRBL's states onto the contract (:func:`map_state`),
publishes the machine's status when it changes, and computes the telemetry values
(:meth:`~ReportsMixin._telemetry_values`). While the interlock has the machine disabled, a ``Run`` seen
in a report is feed-held and a ``Jog`` cancelled.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time

from firmware_bridge.adapters.base import ERROR, IDLE, OFFLINE, PAUSED, RUNNING, CommandError, ErrorInfo
from firmware_bridge.adapters.grbl import facts, wire
from firmware_bridge.adapters.grbl.streaming import _InFlight

log = logging.getLogger(__name__)


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


class ReportsMixin:
    """State tracking and reporting of a :class:`~firmware_bridge.adapters.grbl.adapter.GrblAdapter`."""

    def _on_status(self, report: wire.StatusReport) -> None:
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
                    self._write(facts.FEED_HOLD)
                self.sink.event("interlock_hold", detail={"grbl_state": wire.state_name(report)})
            elif report.state == "Jog" and now - self._last_hold_sent > 1.0:
                self._last_hold_sent = now
                with contextlib.suppress(CommandError):
                    self._write(facts.JOG_CANCEL)
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

    def _on_alarm(self, alarm: wire.Alarm) -> None:
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

    def _on_message(self, message: wire.Message) -> None:
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
            return ErrorInfo(f"ALARM:{self._alarm_code}", facts.alarm_meaning(self._alarm_code))
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
