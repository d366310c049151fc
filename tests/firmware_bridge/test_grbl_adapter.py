"""The GRBL adapter against the GRBL simulator, through a real pseudo-terminal (pyserial both ends)."""

from __future__ import annotations

import io
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from firmware_bridge.adapters.base import ADAPTERS, CommandError, ErrorInfo, JobInfo
from firmware_bridge.adapters.grbl import GrblAdapter
from firmware_bridge.adapters.grbl.sender import send_file
from firmware_bridge.simulators.gcode_jobs import cnc_pocket_job, laser_job, write_job
from firmware_bridge.simulators.grbl import GrblSimulator

DEADLINE_S = 30.0


class RecordingSink:
    """An in-memory AdapterSink: records everything, thread-safe, with a poll-until helper."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.statuses: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.telemetries: list[dict[str, float]] = []

    def set_status(
        self, *, state: str, job: JobInfo | None = None, error: ErrorInfo | None = None, ts: int | None = None
    ) -> None:
        with self.lock:
            self.statuses.append({"state": state, "job": job, "error": error})

    def telemetry(self, values: Mapping[str, float], ts: int | None = None) -> None:
        with self.lock:
            self.telemetries.append(dict(values))

    def event(
        self,
        type: str,
        *,
        job: JobInfo | None = None,
        detail: Mapping[str, Any] | None = None,
        ts: int | None = None,
    ) -> None:
        with self.lock:
            self.events.append({"type": type, "job": job, "detail": dict(detail or {})})

    def subscribe(self, topic: str, callback: Callable[[str, bytes], None]) -> None:
        raise AssertionError("the grbl adapter must not subscribe")

    def publish(self, topic: str, payload: bytes | str, *, retain: bool = False) -> None:
        raise AssertionError("the grbl adapter must not publish")

    @property
    def state(self) -> str | None:
        with self.lock:
            return self.statuses[-1]["state"] if self.statuses else None

    @property
    def last_status(self) -> dict[str, Any]:
        with self.lock:
            return self.statuses[-1]

    def events_of(self, type: str) -> list[dict[str, Any]]:
        with self.lock:
            return [e for e in self.events if e["type"] == type]

    def wait(self, predicate: Callable[[], object], what: str, timeout: float = DEADLINE_S) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = predicate()
            if result:
                return result
            time.sleep(0.02)
        with self.lock:
            tail = [s["state"] for s in self.statuses[-10:]], [e["type"] for e in self.events[-10:]]
        raise AssertionError(f"timed out waiting for {what}; last states/events: {tail}")

    def wait_state(self, state: str, timeout: float = DEADLINE_S) -> dict[str, Any]:
        self.wait(lambda: self.state == state, f"state {state}", timeout)
        return self.last_status

    def wait_event(self, type: str, timeout: float = DEADLINE_S) -> dict[str, Any]:
        return self.wait(lambda: (self.events_of(type) or [None])[-1], f"event {type}", timeout)


class BridgeLoop:
    """Calls ``adapter.poll()`` like the bridge does, in its own thread."""

    def __init__(self, adapter: GrblAdapter, interval: float = 0.2) -> None:
        self.adapter = adapter
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.adapter.poll()

    def __enter__(self) -> BridgeLoop:
        self.adapter.setup()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.adapter.close()


def make_adapter(
    sim: GrblSimulator, sink: RecordingSink, *, passthrough: str | None = None, **kwargs: Any
) -> GrblAdapter:
    options: dict[str, Any] = {"port": sim.port, "baudrate": 115200, "status_hz": 5, "reconnect_s": 0.2}
    if passthrough:
        options["passthrough"] = passthrough
    return ADAPTERS["grbl"]("cnc-router", options, sink, **kwargs)  # type: ignore[return-value]


def long_job(path: Path, moves: int = 6) -> Path:
    """Long straight moves: time to pause, resume and cancel while it runs."""
    lines = ["G21 G90", "M3 S10000"]
    for i in range(moves):
        lines.append(f"G1 X{300 if i % 2 == 0 else 0} Y{10 * i} F600")
    lines += ["M5", "M30"]
    return write_job(path, "\n".join(lines) + "\n")


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[GrblSimulator]:
    machine = GrblSimulator(speed=40, link_path=str(tmp_path / "usb-grbl-if00"))
    machine.start()
    yield machine
    machine.stop()


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


def test_registered_and_options_validated() -> None:
    assert ADAPTERS["grbl"] is GrblAdapter
    assert GrblAdapter.validate_options({"port": "/dev/ttyACM0"}) == []
    problems = GrblAdapter.validate_options(
        {"baudrate": "fast", "status_hz": 10, "passthrough": "relative", "colour": "red"}
    )
    assert any(p.startswith("options.port") for p in problems)
    assert any(p.startswith("options.baudrate") for p in problems)
    assert any(p.startswith("options.status_hz") for p in problems)
    assert any(p.startswith("options.passthrough") for p in problems)
    assert any(p.startswith("options.colour") for p in problems)
    with pytest.raises(ValueError, match="status_hz"):
        GrblAdapter("m", {"port": "/dev/x", "status_hz": 6}, RecordingSink())


def test_connects_reads_settings_and_reports_telemetry(sim: GrblSimulator, sink: RecordingSink) -> None:
    adapter = make_adapter(sim, sink)
    with BridgeLoop(adapter):
        sink.wait_state("idle")
        assert adapter.settings[30] == 24000 and not adapter.laser_mode
        values = sink.wait(
            lambda: next((t for t in reversed(sink.telemetries) if "feed_override_pct" in t), None),
            "telemetry",
        )
        assert {"feed_mm_min", "spindle_rpm", "pos_x_mm", "pos_y_mm", "pos_z_mm"} <= set(values)
        assert "laser_power_pct" not in values
        assert values["feed_override_pct"] == 100.0 and values["rapid_override_pct"] == 100.0
        assert sink.statuses[0]["state"] == "offline"  # until the port answered


def test_full_job_streams_to_100_percent(sim: GrblSimulator, sink: RecordingSink, tmp_path: Path) -> None:
    job_file = write_job(
        tmp_path / "pocket.nc", cnc_pocket_job(width=24, height=16, depth=2, line_numbers=True)
    )
    adapter = make_adapter(sim, sink)
    with BridgeLoop(adapter):
        sink.wait_state("idle")
        job = adapter.start_job(job_file)
        assert job.name == "pocket.nc"
        started = sink.wait_event("job_started")
        finished = sink.wait_event("job_finished", timeout=60)
        assert started["job"].id == finished["job"].id == job.id
        assert finished["job"].progress_pct == 100.0
        assert sink.wait_state("idle")["job"] is None
        running = [s for s in sink.statuses if s["state"] == "running"]
        assert running and all(s["job"].id == job.id for s in running)
        progress = [t["progress_pct"] for t in sink.telemetries if "progress_pct" in t]
        assert progress == sorted(progress) and progress[-1] > 0
        assert sink.events_of("job_failed") == [] and sink.events_of("grbl_error") == []
    assert sim.rx_overflows == 0  # character counting never overfilled the 127-byte buffer
    numbered = [line for line in job_file.read_text().splitlines() if line.startswith("N")]
    assert [line for line in sim.received if line.startswith("N")] == numbered
    assert sim.position[2] == pytest.approx(5.0)  # the job's last move: retract to Z5 (then X0 Y0)


def test_pause_resume_cancel(sim: GrblSimulator, sink: RecordingSink, tmp_path: Path) -> None:
    sim.speed = 10
    adapter = make_adapter(sim, sink)
    with BridgeLoop(adapter):
        sink.wait_state("idle")
        adapter.start_job(long_job(tmp_path / "long.nc"))
        sink.wait_state("running")
        adapter.command("pause")
        sink.wait_state("paused")
        sink.wait(lambda: sim.state_name == "Hold:0", "hold complete")
        with pytest.raises(CommandError) as refused:
            adapter.command("pause")
        assert refused.value.code == "invalid_state"
        adapter.command("resume")
        sink.wait_state("running")
        adapter.command("cancel")
        cancelled = sink.wait_event("job_cancelled")
        assert cancelled["detail"]["reason"] == "cancel command"
        sink.wait_state("idle")
        assert sink.events_of("alarm") == []  # held first, so the reset threw no ALARM:3
        assert "ALARM:3" not in sim.sent
        with pytest.raises(CommandError) as nothing:
            adapter.command("cancel")
        assert nothing.value.code == "invalid_state"
        # The machine takes a new job after the cancel.
        job = adapter.start_job(write_job(tmp_path / "short.nc", "G21 G90\nG0 X5 Y5\nG1 X10 F3000\n"))
        outcome, _detail = adapter.wait_job(job.id, timeout=DEADLINE_S)
        assert outcome == "finished"


def test_alarm_is_error_with_code_and_meaning(sim: GrblSimulator, sink: RecordingSink) -> None:
    adapter = make_adapter(sim, sink)
    with BridgeLoop(adapter):
        sink.wait_state("idle")
        sim.trigger_alarm(9)
        status = sink.wait_state("error")
        assert status["error"].code == "ALARM:9"
        assert "could not find limit switch" in status["error"].message
        alarm = sink.wait_event("alarm")
        assert alarm["detail"]["code"] == 9 and "Homing fail" in alarm["detail"]["message"]


def test_door_is_paused_and_reported(sim: GrblSimulator, sink: RecordingSink, tmp_path: Path) -> None:
    sim.speed = 10
    adapter = make_adapter(sim, sink)
    with BridgeLoop(adapter):
        sink.wait_state("idle")
        adapter.start_job(long_job(tmp_path / "long.nc"))
        sink.wait_state("running")
        sim.open_door()
        sink.wait_state("paused")
        sink.wait_event("door_opened")
        with pytest.raises(CommandError, match="door"):
            adapter.command("resume")
        sim.close_door()
        sink.wait_event("door_closed")
        adapter.command("resume")
        sink.wait_state("running")
        adapter.command("cancel")
        sink.wait_event("job_cancelled")


def test_laser_mode_reports_power_percent(tmp_path: Path, sink: RecordingSink) -> None:
    sim = GrblSimulator(laser=True, speed=10, link_path=str(tmp_path / "usb-laser"))
    sim.start()
    try:
        adapter = make_adapter(sim, sink)
        job_file = write_job(
            tmp_path / "engrave.nc",
            laser_job(width=14, height=8, line_spacing=1.0, engrave_power=300, cut_power=900, passes=1),
        )
        with BridgeLoop(adapter, interval=0.1):
            sink.wait_state("idle")
            assert adapter.laser_mode
            job = adapter.start_job(job_file)
            outcome, _ = adapter.wait_job(job.id, timeout=60)
            assert outcome == "finished"
        powers = {t["laser_power_pct"] for t in sink.telemetries if "laser_power_pct" in t}
        assert any(p > 0 for p in powers), powers
        assert powers <= {0.0, 30.0, 90.0}  # S300 and S900 of $30=1000
        assert not any("spindle_rpm" in t for t in sink.telemetries)
    finally:
        sim.stop()


def test_cable_pulled_and_put_back(sim: GrblSimulator, sink: RecordingSink, tmp_path: Path) -> None:
    sim.speed = 10
    adapter = make_adapter(sim, sink)
    with BridgeLoop(adapter):
        sink.wait_state("idle")
        adapter.start_job(long_job(tmp_path / "long.nc"))
        sink.wait_state("running")
        sim.unplug()
        status = sink.wait_state("offline")
        assert status["error"].code == "offline"
        failed = sink.wait_event("job_failed")
        assert "connection lost" in failed["detail"]["reason"]
        assert not os.path.exists(sim.port)
        time.sleep(0.5)  # the adapter keeps retrying the missing path meanwhile; it must not crash
        sim.replug()
        sink.wait_state("idle")
        assert adapter.connected
        # And works again.
        job = adapter.start_job(write_job(tmp_path / "short.nc", "G21 G90\nG1 X3 F3000\n"))
        assert adapter.wait_job(job.id, timeout=DEADLINE_S)[0] == "finished"


def test_error_mid_job_fails_it_with_the_meaning(
    sim: GrblSimulator, sink: RecordingSink, tmp_path: Path
) -> None:
    job_file = write_job(tmp_path / "bad.nc", "G21 G90\nG1 X5 F600\nG5 X1\nG1 X10\nG1 X20\n")
    adapter = make_adapter(sim, sink)
    with BridgeLoop(adapter):
        sink.wait_state("idle")
        job = adapter.start_job(job_file)
        outcome, detail = adapter.wait_job(job.id, timeout=DEADLINE_S)
        assert outcome == "failed"
        assert detail["reason"] == "error:20" and detail["line"] == "G5 X1" and detail["line_number"] == 3
        error = sink.wait_event("grbl_error")
        assert error["detail"]["code"] == 20 and "Unsupported command" in error["detail"]["message"]
        sink.wait_state("idle")


def test_interlock_refuses_and_holds(sim: GrblSimulator, sink: RecordingSink, tmp_path: Path) -> None:
    sim.speed = 10
    adapter = make_adapter(sim, sink, interlock=True, enabled=False)
    job_file = long_job(tmp_path / "long.nc")
    with BridgeLoop(adapter):
        sink.wait_state("idle")
        # Restoring "disabled" at start must not touch the machine (a '!' would leave it in Hold).
        adapter.set_enabled(False, initial=True)
        adapter.command("disable")  # disabling an idle machine holds nothing either
        seen = adapter.reports_seen
        sink.wait(lambda: adapter.reports_seen > seen + 3, "more status reports")
        assert sim.state_name == "Idle" and sink.state == "idle"
        with pytest.raises(CommandError) as refused:
            adapter.start_job(job_file)
        assert refused.value.code == "invalid_state"
        out = io.StringIO()
        assert send_file(adapter, job_file, out=out) == 1
        assert "interlock" in out.getvalue()
        adapter.command("enable")
        assert adapter.enabled
        adapter.start_job(job_file)
        sink.wait_state("running")
        adapter.command("disable")  # a running job is held, not killed
        sink.wait_state("paused")
        with pytest.raises(CommandError) as no_resume:
            adapter.command("resume")
        assert no_resume.value.code == "invalid_state"
        adapter.command("enable")
        adapter.command("resume")
        sink.wait_state("running")
        adapter.command("cancel")
        sink.wait_event("job_cancelled")


def test_disable_while_grbl_is_unplugged_is_not_acked_ok_but_holds(
    sim: GrblSimulator, sink: RecordingSink, tmp_path: Path
) -> None:
    adapter = make_adapter(sim, sink, interlock=True, enabled=True)
    with BridgeLoop(adapter):
        sink.wait_state("idle")
        sim.unplug()
        sink.wait_state("offline")
        with pytest.raises(CommandError) as info:
            adapter.command("disable")
        assert info.value.code == "not_confirmed" and "not connected" in info.value.message
        assert not adapter.enabled  # the bridge enforces it all the same
        sim.replug()
        sink.wait_state("idle")
        with pytest.raises(CommandError) as refused:
            adapter.start_job(long_job(tmp_path / "long.nc"))
        assert refused.value.code == "invalid_state"


def test_send_file_straight_to_the_port(sim: GrblSimulator, tmp_path: Path) -> None:
    job_file = write_job(tmp_path / "pocket.nc", cnc_pocket_job(width=16, height=12, depth=1))
    out = io.StringIO()
    assert send_file(sim.port, job_file, out=out, timeout_s=60) == 0
    text = out.getvalue()
    assert "pocket.nc: sending" in text and "done" in text and "(100 %)" in text
    assert sim.rx_overflows == 0
    bad = write_job(tmp_path / "bad.nc", "G21\nG1 X5 F900\nG1 X1 Y1 Z1 Q4\n")
    out = io.StringIO()
    assert send_file(sim.port, bad, out=out, timeout_s=60) == 1
    assert "error:20 at line 3" in out.getvalue()
    assert send_file(str(tmp_path / "nowhere"), job_file, out=io.StringIO()) == 2


def test_send_file_to_a_locked_machine_fails(tmp_path: Path) -> None:
    with GrblSimulator(speed=40, homing=True) as sim:  # homing enabled: powers up in Alarm
        out = io.StringIO()
        assert send_file(sim.port, write_job(tmp_path / "a.nc", "G21\nG0 X1\n"), out=out, timeout_s=60) == 1
        assert "error:9 at line 1" in out.getvalue()
