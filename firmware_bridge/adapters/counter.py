"""``counter``: a TEST AND DEMO adapter with no hardware behind it.

It emits one telemetry message per poll whose ``count`` value increases by
one (so a test can check that every reading arrives exactly once), plus a few
plausible readings, and runs endless fake jobs so that status, events and the
pause/resume/cancel/enable/disable commands all have something to act on. The
reliability tests and ``scripts/bench_bridge.py`` run the bridge with it in a
subprocess. Never configure it for a real machine.

Options: ``interval_s`` (poll period, default 1.0), ``job_s`` (fake job length,
default 30), ``fail_setup`` (how many ``setup()`` calls fail first, default 0),
``fail_poll_every`` (every n-th poll raises, default 0 = never), ``limit`` (stop
reporting after this many readings, default 0 = never; the status stays idle).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

from firmware_bridge.adapters.base import (
    IDLE,
    PAUSED,
    RUNNING,
    Adapter,
    CommandError,
    JobInfo,
    register,
)
from firmware_bridge.protocol import JOB_ACTIONS

_OPTIONS = {"interval_s": float, "job_s": float, "fail_setup": int, "fail_poll_every": int, "limit": int}


@register
class CounterAdapter(Adapter):
    """Test/demo adapter: a counter and a fake job; see the module docstring."""

    name = "counter"
    #: Its fake jobs pause, resume and cancel (see :meth:`command`).
    capabilities = JOB_ACTIONS
    poll_interval_s = 1.0

    def __init__(self, machine: str, options: Mapping[str, Any], sink: Any, **kw: Any) -> None:
        super().__init__(machine, options, sink, **kw)
        self.poll_interval_s = float(self.options.get("interval_s", 1.0))
        self.job_s = float(self.options.get("job_s", 30.0))
        self.fail_setup = int(self.options.get("fail_setup", 0))
        self.fail_poll_every = int(self.options.get("fail_poll_every", 0))
        self.limit = int(self.options.get("limit", 0))
        self.count = 0
        self.polls = 0
        self.setups = 0
        self.state = IDLE
        self.job: JobInfo | None = None
        self.job_progress = 0.0
        self.jobs = 0

    @classmethod
    def validate_options(cls, options: Mapping[str, Any]) -> list[str]:
        problems = []
        for key, value in options.items():
            kind = _OPTIONS.get(key)
            if kind is None:
                problems.append(f"{key}: unknown option (allowed: {', '.join(sorted(_OPTIONS))})")
            elif (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or (kind is int and not isinstance(value, int))
            ):
                problems.append(f"{key}: must be {'an integer' if kind is int else 'a number'}")
            elif value < 0 or (key == "interval_s" and value < 0.01):
                problems.append(f"{key}: out of range")
        return problems

    def setup(self) -> None:
        self.setups += 1
        if self.setups <= self.fail_setup:
            raise ConnectionError(f"simulated setup failure {self.setups} of {self.fail_setup}")
        self._report()

    def _report(self) -> None:
        self.sink.set_status(state=self.state, job=self.job)

    def _start_job(self) -> None:
        self.jobs += 1
        now = time.time_ns() // 1_000_000
        self.job = JobInfo(
            id=f"{self.machine}-{self.jobs}",
            name=f"demo-job-{self.jobs}.gcode",
            started_ts=now,
            progress_pct=0.0,
        )
        self.job_progress = 0.0
        self.state = RUNNING
        self.sink.event("job_started", job=self.job)

    def poll(self) -> None:
        self.polls += 1
        if self.fail_poll_every and self.polls % self.fail_poll_every == 0:
            raise RuntimeError(f"simulated poll failure at poll {self.polls}")
        with self._lock:
            if self.limit and self.count >= self.limit:
                if self.state != IDLE:
                    self.state, self.job = IDLE, None
                    self._report()
                return
            if self.state == IDLE and self.enabled:
                self._start_job()
            elif self.state == RUNNING:
                self.job_progress = min(100.0, self.job_progress + 100.0 * self.poll_interval_s / self.job_s)
                assert self.job is not None
                self.job = JobInfo(
                    self.job.id, self.job.name, self.job.started_ts, round(self.job_progress, 1)
                )
                if self.job_progress >= 100.0:
                    self.sink.event("job_finished", job=self.job)
                    self.state, self.job = IDLE, None
            self.count += 1
            phase = self.count / 10.0
            values = {
                "count": self.count,
                "power_w": round(120.0 + 80.0 * math.sin(phase), 2) if self.state == RUNNING else 3.0,
                "temp_nozzle_c": round(210.0 + math.sin(phase), 2),
            }
            if self.job is not None and self.job.progress_pct is not None:
                values["progress_pct"] = self.job.progress_pct
            self.sink.telemetry(values)
            self._report()

    def command(self, action: str, params: Mapping[str, Any] | None = None) -> None:
        with self._lock:
            if action == "pause":
                if self.state != RUNNING:
                    raise CommandError("invalid_state", f"cannot pause while {self.state}")
                self.state = PAUSED
            elif action == "resume":
                if self.state != PAUSED:
                    raise CommandError("invalid_state", f"cannot resume while {self.state}")
                if self.interlock and not self.enabled:
                    raise CommandError("invalid_state", "machine is disabled by its interlock")
                self.state = RUNNING
            elif action == "cancel":
                if self.job is None:
                    raise CommandError("invalid_state", "no job to cancel")
                self.sink.event("job_cancelled", job=self.job)
                self.state, self.job = IDLE, None
            else:
                super().command(action, params)
            self._report()

    def set_enabled(self, enabled: bool, *, initial: bool = False) -> None:
        with self._lock:
            super().set_enabled(enabled, initial=initial)
            if not enabled and self.state == RUNNING:
                self.state = PAUSED  # hold a running job, as grbl/octoprint adapters do
