"""The ``octoprint`` adapter against a real OctoPrint 1.11 with its Virtual Printer.

The adapter is driven as the bridge drives it (``setup``, then ``poll`` every
``poll_interval_s`` in its own thread) and reports into an in-memory sink.
Prints are short demo G-code files (see ``demo_gcode``): about one second per
line on the Virtual Printer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from firmware_bridge.adapters import ADAPTERS
from firmware_bridge.adapters.base import ERROR, IDLE, OFFLINE, PAUSED, RUNNING, CommandError
from firmware_bridge.adapters.octoprint import OctoPrintAdapter
from firmware_bridge.simulators.octoprint_server import VirtualOctoPrint, demo_gcode, free_port
from tests.support.octoprint import (  # noqa: F401
    AdapterRunner,
    MemorySink,
    make_idle,
    octoprint_server,
    octoprint_venv,
)

MACHINE = "prusa-mk4-1"


@pytest.fixture
def server(octoprint_server: VirtualOctoPrint) -> VirtualOctoPrint:  # noqa: F811
    make_idle(octoprint_server)
    return octoprint_server


def make_adapter(server: VirtualOctoPrint, sink: MemorySink, **kwargs: object) -> OctoPrintAdapter:
    options = {"url": server.url, "api_key": server.api_key, "timeout": 3}
    options.update(kwargs.pop("options", {}))  # type: ignore[call-overload]
    return OctoPrintAdapter(MACHINE, options, sink, **kwargs)  # type: ignore[arg-type]


def polls_seen(sink: MemorySink) -> int:
    return len(sink.of("status"))


def wait_polls(sink: MemorySink, count: int) -> None:
    """Wait until the adapter has reported ``count`` more statuses (one per poll)."""
    target = polls_seen(sink) + count
    sink.wait_for(lambda: polls_seen(sink) >= target, f"{count} more polls")


# -- options ------------------------------------------------------------------------------------


def test_registered_by_name() -> None:
    assert ADAPTERS["octoprint"] is OctoPrintAdapter


def test_good_options_pass() -> None:
    assert OctoPrintAdapter.validate_options({"url": "http://octopi.local", "api_key": "K"}) == []
    assert (
        OctoPrintAdapter.validate_options(
            {"url": "https://lab/octoprint/", "api_key": "K", "timeout": 2.5, "poll_interval": 5}
        )
        == []
    )


def test_every_wrong_option_is_named() -> None:
    problems = OctoPrintAdapter.validate_options(
        {"url": "octopi.local", "api_key": "", "timeout": "5", "poll_interval": 0.2, "apikey": "K"}
    )
    assert [p.split(":")[0] for p in problems] == ["url", "api_key", "timeout", "poll_interval", "apikey"]
    assert OctoPrintAdapter.validate_options({}) == [
        "url: is required (e.g. http://octopi.local)",
        "api_key: is required (an OctoPrint application key)",
    ]
    with pytest.raises(ValueError, match="url"):
        OctoPrintAdapter(MACHINE, {"api_key": "K"}, MemorySink())


def test_poll_interval_is_at_least_one_second(server: VirtualOctoPrint) -> None:
    sink = MemorySink()
    adapter = make_adapter(server, sink)
    assert adapter.poll_interval_s >= 1.0
    adapter.setup()
    # A bridge loop that calls poll() back to back still reaches OctoPrint at most once a second.
    start = time.monotonic()
    while time.monotonic() - start < 2.5:
        adapter.poll()
    elapsed = time.monotonic() - start
    adapter.close()
    assert 1 <= polls_seen(sink) <= int(elapsed / 0.95) + 1


# -- a print, pause, resume, cancel -------------------------------------------------------------


def test_full_print_reports_state_telemetry_and_job_events(server: VirtualOctoPrint) -> None:
    sink = MemorySink()
    with AdapterRunner(make_adapter(server, sink)):
        sink.wait_state(IDLE)
        server.upload_and_print("benchy.gcode", demo_gcode(10))
        started = sink.wait_event("job_started")
        running = sink.wait_state(RUNNING)
        finished = sink.wait_event("job_finished")
        sink.wait_state(IDLE)

    job = started["job"]
    assert job.name == "benchy.gcode"
    assert running["job"].id == job.id
    assert finished["job"].id == job.id and finished["job"].started_ts == job.started_ts
    assert finished["job"].progress_pct == 100.0
    assert finished["detail"]["print_time_s"] >= 1
    assert [e["type"] for e in sink.events()] == ["job_started", "job_finished"]
    assert sink.status["job"] is None and sink.status["error"] is None

    telemetry = sink.of("telemetry")
    nozzle_targets = {t.get("temp_nozzle_target_c") for t in telemetry}
    assert 210.0 in nozzle_targets  # M104 S210 from the file
    assert any(t.get("temp_bed_target_c") == 60.0 for t in telemetry)
    assert all(isinstance(v, float) for t in telemetry for v in t.values())
    progress = [t["progress_pct"] for t in telemetry if "progress_pct" in t]
    assert progress and progress == sorted(progress) and 0 <= progress[0] < 100
    assert any("print_time_s" in t and "print_time_left_s" in t for t in telemetry)
    # While the job ran, status carried its progress.
    assert any(s["job"] and s["job"].progress_pct is not None for s in sink.of("status"))


def test_pause_resume_cancel_commands(server: VirtualOctoPrint) -> None:
    sink = MemorySink()
    adapter = make_adapter(server, sink)
    with AdapterRunner(adapter):
        sink.wait_state(IDLE)
        with pytest.raises(CommandError) as info:
            adapter.command("pause")
        assert info.value.code == "invalid_state"

        server.upload_and_print("bracket.gcode", demo_gcode(60))
        sink.wait_state(RUNNING)
        adapter.command("pause")
        paused = sink.wait_state(PAUSED)
        assert paused["job"].name == "bracket.gcode"
        server.wait_for("paused")
        adapter.command("pause")  # pausing a paused print is not a toggle: it stays paused
        wait_polls(sink, 2)
        assert sink.state == PAUSED and server.printer_flags()["paused"]

        adapter.command("resume")
        sink.wait_state(RUNNING)
        adapter.command("resume")  # resuming a running print is a no-op too
        wait_polls(sink, 1)
        assert sink.state == RUNNING

        adapter.command("cancel")
        cancelled = sink.wait_event("job_cancelled")
        sink.wait_state(IDLE)

    assert cancelled["job"].id == paused["job"].id
    assert cancelled["detail"]["by"] == "bridge"
    assert 0 < (cancelled["job"].progress_pct or 0) < 100
    assert [e["type"] for e in sink.events()] == ["job_started", "job_cancelled"]


def test_octoprint_resume_right_after_pause_resumes_the_printer(server: VirtualOctoPrint) -> None:
    """Issue 7: a resume while OctoPrint is still Pausing was answered 204 and dropped by OctoPrint."""
    sink = MemorySink()
    adapter = make_adapter(server, sink)
    with AdapterRunner(adapter):
        sink.wait_state(IDLE)
        server.upload_and_print("bracket.gcode", demo_gcode(60))
        sink.wait_state(RUNNING)
        server.job_command("pause", "pause")  # someone pauses at OctoPrint's UI...
        adapter.command("resume")  # ...and the resume follows at once, while OctoPrint is Pausing
        flags = server.printer_flags()
        assert flags["printing"] and not flags["paused"] and not flags["pausing"]
        wait_polls(sink, 2)
        assert sink.state == RUNNING and server.printer_flags()["printing"]
        adapter.command("pause")  # acked once OctoPrint shows Paused, not when it answered 204
        assert server.printer_flags()["paused"]
        adapter.command("cancel")  # acked once the job is gone
        flags = server.printer_flags()
        assert not any(flags.get(k) for k in ("printing", "paused", "pausing", "cancelling"))


def test_a_command_octoprint_does_not_carry_out_in_time_is_not_acked_ok(server: VirtualOctoPrint) -> None:
    sink = MemorySink()
    adapter = make_adapter(server, sink, options={"confirm_timeout_s": 0.01})
    with AdapterRunner(adapter):
        sink.wait_state(IDLE)
        server.upload_and_print("bracket.gcode", demo_gcode(60))
        sink.wait_state(RUNNING)
        try:
            adapter.command("pause")
        except CommandError as exc:  # a pause takes OctoPrint far longer than 10 ms
            assert exc.code == "not_confirmed" and "pausing" in exc.message
        else:
            assert server.printer_flags()["paused"]  # only ok when it really was paused
        server.wait_for("paused")
        server.job_command("cancel")
        sink.wait_state(IDLE)


def test_cancel_at_octoprint_is_reported_as_cancelled(server: VirtualOctoPrint) -> None:
    sink = MemorySink()
    adapter = make_adapter(server, sink)
    with AdapterRunner(adapter):
        sink.wait_state(IDLE)
        server.upload_and_print("keychain.gcode", demo_gcode(60))
        sink.wait_state(RUNNING)
        server.job_command("cancel")
        cancelled = sink.wait_event("job_cancelled")
        sink.wait_state(IDLE)
        with pytest.raises(CommandError) as info:
            adapter.command("cancel")
        assert info.value.code == "invalid_state"
    assert cancelled["detail"]["by"] == "octoprint"


def poll_until(adapter: OctoPrintAdapter, sink: MemorySink, condition: object, what: str) -> None:
    """Poll by hand (as the bridge would, once a second) until ``condition()`` holds."""
    deadline = time.monotonic() + 60
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}; {sink.reports[-5:]}"
        time.sleep(0.25)
        adapter.poll()


def test_outcome_comes_from_octoprint_s_record_when_the_end_was_not_seen(server: VirtualOctoPrint) -> None:
    """The print ends and the next file is selected between two polls: OctoPrint's record decides."""
    sink = MemorySink()
    adapter = make_adapter(server, sink)
    adapter.setup()
    poll_until(adapter, sink, lambda: sink.state == IDLE, "idle")

    server.upload_and_print("first.gcode", demo_gcode(4))
    poll_until(adapter, sink, lambda: sink.events("job_started"), "first job_started")
    server.wait_for("ready")  # finished, and the adapter did not look
    server.upload("second.gcode", demo_gcode(60), select=True)
    poll_until(adapter, sink, lambda: len(sink.events()) >= 2, "the verdict on first.gcode")
    assert [(e["type"], e["job"].name) for e in sink.events()] == [
        ("job_started", "first.gcode"),
        ("job_finished", "first.gcode"),
    ]

    server.job_command("start")
    poll_until(adapter, sink, lambda: len(sink.events("job_started")) == 2, "second job_started")
    server.job_command("cancel")
    server.wait_for("ready")
    server.upload("third.gcode", demo_gcode(5), select=True)
    poll_until(adapter, sink, lambda: len(sink.events()) >= 4, "the verdict on second.gcode")
    adapter.close()
    last = sink.events()[-1]
    assert (last["type"], last["job"].name, last["detail"]["by"]) == (
        "job_cancelled",
        "second.gcode",
        "octoprint",
    )


def test_printer_fault_is_error_and_the_job_failed(server: VirtualOctoPrint) -> None:
    sink = MemorySink()
    with AdapterRunner(make_adapter(server, sink)):
        sink.wait_state(IDLE)
        server.upload_and_print("hot.gcode", demo_gcode(60))
        sink.wait_state(RUNNING)
        server.send_gcode("!!DEBUG:trigger_fatal_error_marlin")
        failed = sink.wait_event("job_failed")
        status = sink.wait_state(ERROR)
        assert status["error"].code == "printer_error"
        assert "Thermal Runaway" in status["error"].message
        assert "Thermal Runaway" in failed["detail"]["reason"]
        server.connect_printer()
        sink.wait_state(IDLE)


# -- OctoPrint unreachable, hung, or refusing the key -------------------------------------------


def test_wrong_api_key_is_offline_with_a_clear_message_once(
    server: VirtualOctoPrint, caplog: pytest.LogCaptureFixture
) -> None:
    sink = MemorySink()
    adapter = make_adapter(server, sink, options={"api_key": "NOT" + server.api_key})
    caplog.set_level(logging.DEBUG, logger="firmware_bridge.adapters.octoprint")
    adapter.setup()
    for _ in range(3):
        adapter.poll()  # the bridge's loop; later calls fall inside the retry delay
        time.sleep(1.05)
    adapter.close()
    status = sink.status
    assert status is not None and status["state"] == OFFLINE
    assert status["error"].code == "auth_failed"
    assert "API key" in status["error"].message and "403" in status["error"].message
    warnings = [
        r for r in caplog.records if r.name.startswith("firmware_bridge") and r.levelno >= logging.WARNING
    ]
    assert len(warnings) == 1, warnings
    # The key is retried only every AUTH_RETRY_S, not on every poll.
    assert polls_seen(sink) == 1


def test_nothing_listening_is_offline() -> None:
    """Nothing listening at the URL (OctoPrint not started, wrong port): offline, with the reason."""
    sink = MemorySink()
    adapter = OctoPrintAdapter(MACHINE, {"url": f"http://127.0.0.1:{free_port()}", "api_key": "K"}, sink)
    with AdapterRunner(adapter):
        status = sink.wait_state(OFFLINE)
        assert status["error"].code == "unreachable"
        assert "Connection refused" in status["error"].message


@pytest.fixture
def own_server(octoprint_venv: Path, tmp_path: Path) -> Iterator[VirtualOctoPrint]:  # noqa: F811
    """A second OctoPrint that this test may stop, freeze and restart."""
    server = VirtualOctoPrint(tmp_path / "octoprint", venv=octoprint_venv)
    server.start()
    try:
        server.connect_printer()
        yield server
    finally:
        server.stop()


def test_server_stopping_mid_print_and_coming_back(own_server: VirtualOctoPrint) -> None:
    server = own_server
    sink = MemorySink()
    adapter = make_adapter(server, sink, options={"timeout": 2})
    with AdapterRunner(adapter):
        sink.wait_state(IDLE)
        server.upload_and_print("lost.gcode", demo_gcode(60))
        job = sink.wait_state(RUNNING)["job"]

        server.stop()
        sink.wait_for(
            lambda: sink.state == OFFLINE and sink.status["error"].code == "unreachable", "unreachable"
        )

        server.start()  # same port and basedir; the print died with the server
        failed = sink.wait_event("job_failed")
        assert failed["job"].id == job.id
        status = sink.wait_state(OFFLINE)
        assert status["error"].code == "printer_disconnected"
        server.connect_printer()
        sink.wait_state(IDLE)

        # Hung: the process keeps its socket but never answers; the timeout marks it offline.
        server.freeze()
        try:
            status = sink.wait_state(OFFLINE)
            assert status["error"].code == "unreachable"
            assert "did not answer" in status["error"].message
        finally:
            server.thaw()
        sink.wait_state(IDLE)
        assert [e["type"] for e in sink.events()] == ["job_started", "job_failed"]

        # A command while OctoPrint is down is a device error, not a crash.
        server.stop()
        sink.wait_state(OFFLINE)
        with pytest.raises(CommandError) as info:
            adapter.command("pause")
        assert info.value.code == "device_error"


def test_a_resume_whose_printer_disconnects_is_not_acked_ok(server: VirtualOctoPrint, monkeypatch) -> None:
    sink = MemorySink()
    adapter = make_adapter(server, sink)
    with AdapterRunner(adapter):
        sink.wait_state(IDLE)
        server.upload_and_print("gone.gcode", demo_gcode(60))
        sink.wait_state(RUNNING)
        adapter.command("pause")
        sink.wait_state(PAUSED)
        real_flags = adapter._flags
        calls = []

        def flags_then_gone(action: str) -> dict[str, bool]:
            # The first read is the real one (the printer is Paused, so the resume is sent);
            # after that OctoPrint answers as it does once the printer has dropped off its port.
            calls.append(action)
            return real_flags(action) if len(calls) == 1 else {}

        monkeypatch.setattr(adapter, "_flags", flags_then_gone)
        with pytest.raises(CommandError) as info:
            adapter.command("resume")
        assert info.value.code == "device_error" and "no longer connected" in info.value.message
        monkeypatch.undo()
        adapter.command("cancel")


# -- interlock ----------------------------------------------------------------------------------


def test_interlock_holds_a_print_started_at_octoprint_while_disabled(server: VirtualOctoPrint) -> None:
    sink = MemorySink()
    adapter = make_adapter(server, sink, interlock=True, enabled=True)
    adapter.set_enabled(False, initial=True)
    with AdapterRunner(adapter):
        sink.wait_state(IDLE)
        server.upload_and_print("sneaky.gcode", demo_gcode(60))
        hold = sink.wait_event("interlock_hold")
        assert hold["job"].name == "sneaky.gcode"
        sink.wait_state(PAUSED)
        server.wait_for("paused")

        with pytest.raises(CommandError) as info:
            adapter.command("resume")
        assert info.value.code == "invalid_state"

        # Resumed at OctoPrint's UI while still disabled: held again.
        seen = len(sink.events())
        server.job_command("pause", "resume")
        sink.wait_event("interlock_hold", after=seen)
        server.wait_for("paused")

        adapter.command("enable")
        assert adapter.enabled
        adapter.command("resume")
        sink.wait_state(RUNNING)
        adapter.command("cancel")
        sink.wait_event("job_cancelled")


def test_restoring_disabled_at_start_does_not_touch_a_running_print(server: VirtualOctoPrint) -> None:
    server.upload_and_print("already-running.gcode", demo_gcode(60))
    sink = MemorySink()
    adapter = make_adapter(server, sink, interlock=True, enabled=True)
    adapter.set_enabled(False, initial=True)
    assert not adapter.enabled
    with AdapterRunner(adapter):
        sink.wait_state(RUNNING)
        wait_polls(sink, 3)
        assert sink.state == RUNNING
        assert server.printer_flags()["printing"] and not server.printer_flags()["paused"]
        assert not sink.events("interlock_hold")
        started = sink.events("job_started")
        assert len(started) == 1 and started[0]["job"].name == "already-running.gcode"
        adapter.command("disable")  # a disable while it runs lets it finish, too
        wait_polls(sink, 2)
        assert sink.state == RUNNING
        adapter.command("cancel")
        sink.wait_event("job_cancelled")


def test_no_interlock_means_enable_is_unsupported(server: VirtualOctoPrint) -> None:
    adapter = make_adapter(server, MemorySink())
    with pytest.raises(CommandError) as info:
        adapter.command("disable")
    assert info.value.code == "unsupported"


def test_malformed_replies_do_not_kill_the_adapter() -> None:
    """A server that answers 200 with the wrong shapes (a broken proxy, a future API) is survived."""
    import http.server
    import json
    import threading

    replies = {
        "/api/printer": {"state": "weird", "temperature": [1, 2]},
        "/api/job": {"job": None, "progress": "half", "state": 7},
        "/api/version": {"server": "9.9.9"},
    }

    class Broken(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(replies.get(self.path.split("?")[0], [])).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Broken)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    sink = MemorySink()
    adapter = OctoPrintAdapter(
        MACHINE, {"url": f"http://127.0.0.1:{httpd.server_address[1]}", "api_key": "K"}, sink
    )
    try:
        adapter.setup()
        adapter.poll()  # must not raise
        status = sink.status
        assert status is not None and status["state"] == OFFLINE
        assert not sink.events()
    finally:
        adapter.close()
        httpd.shutdown()
        httpd.server_close()
