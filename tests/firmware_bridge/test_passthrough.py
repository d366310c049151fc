"""The GRBL pass-through: a fake sender opens the bridge's pty while the adapter watches the traffic."""

from __future__ import annotations

import collections
import io
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import serial

from firmware_bridge.adapters.grbl import GrblAdapter, facts, wire
from firmware_bridge.adapters.grbl.passthrough import (
    SenderStream,
    StatusPollArbiter,
    job_marker,
    parse_job_marker,
)
from firmware_bridge.adapters.grbl.sender import resolve_send_port, send_file
from firmware_bridge.simulators.gcode_jobs import cnc_pocket_job, write_job
from firmware_bridge.simulators.grbl import GrblSimulator
from tests.firmware_bridge.test_grbl_adapter import BridgeLoop, RecordingSink, make_adapter
from tests.firmware_bridge.test_grbl_simulator import Client

DEADLINE_S = 30.0


# --- pure parts ---------------------------------------------------------------------------------------


def test_sender_stream_splits_realtime_bytes_and_lines() -> None:
    stream = SenderStream()
    assert stream.feed(b"G1 X1") == []
    items = stream.feed(b"0?\nG0\r\n!\x18\x91")
    assert items == [
        ("rt", b"?"),
        ("line", b"G1 X10\n"),
        ("line", b"G0\r"),
        ("line", b"\n"),  # GRBL answers the empty line after \r with its own ok
        ("rt", b"!"),
        ("rt", b"\x18"),
        ("rt", b"\x91"),
    ]


def test_job_marker_round_trip() -> None:
    marker = job_marker("bracket (v2)!.nc", 1234)
    assert marker.startswith("(FABLAB JOB lines=1234") and marker.count("(") == 1 and "!" not in marker
    assert parse_job_marker(marker) == ("bracket v2.nc", 1234)
    assert parse_job_marker(job_marker("", 5)) == ("", 5)
    assert parse_job_marker(b"(some other comment)\n") is None
    assert len(job_marker("x" * 500, 10**6)) < 100  # always fits GRBL's RX buffer


def test_poll_arbiter_forwards_sender_reports_and_swallows_bridge_ones() -> None:
    arbiter = StatusPollArbiter()
    t = 100.0
    assert arbiter.bridge_may_poll(t)
    arbiter.bridge_polled(t)
    assert not arbiter.bridge_may_poll(t + 0.1)  # one outstanding query at a time
    assert arbiter.route_report(t + 0.01, sender_attached=True) is False  # ours: swallowed
    arbiter.sender_polled(t + 0.2)
    assert not arbiter.bridge_may_poll(t + 0.5)  # the sender polls: the bridge only listens
    assert arbiter.route_report(t + 0.21, sender_attached=True) is True
    # The bridge's query and the sender's: the first report goes to the sender. GRBL may have merged
    # the two; if it did not, the next report answers the bridge's and is swallowed (the CI once saw a
    # sender get a report it never asked for), and only one after that is unsolicited.
    arbiter.bridge_polled(t + 3)
    arbiter.sender_polled(t + 3.001)
    assert arbiter.route_report(t + 3.01, sender_attached=True) is True
    assert arbiter.route_report(t + 3.02, sender_attached=True) is False  # the bridge's, late
    assert arbiter.route_report(t + 3.03, sender_attached=True) is True  # unsolicited: forwarded
    # A query GRBL never answered (critical alarm) expires, as does a merged one's memory.
    arbiter.bridge_polled(t + 5)
    arbiter.sender_polled(t + 5.001)
    assert arbiter.route_report(t + 5.01, sender_attached=True) is True  # merged, this time
    arbiter.bridge_polled(t + 6)
    assert arbiter.route_report(t + 9, sender_attached=True) is True
    assert arbiter.bridge_may_poll(t + 9)
    assert arbiter.swallowed == 2


def test_resolve_send_port_prefers_a_live_passthrough(tmp_path: Path) -> None:
    link = tmp_path / "pt"
    options = {"port": "/dev/ttyACM0", "passthrough": str(link)}
    assert resolve_send_port(options) == "/dev/ttyACM0"
    link.write_text("")
    assert resolve_send_port(options) == str(link)


# --- with the simulator ---------------------------------------------------------------------------------


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[GrblSimulator]:
    machine = GrblSimulator(speed=30, link_path=str(tmp_path / "usb-grbl"))
    machine.start()
    yield machine
    machine.stop()


@pytest.fixture
def pt_path(tmp_path: Path) -> str:
    return str(tmp_path / "fablab" / "cnc-router")


def open_sender(pt_path: str, sink: RecordingSink) -> Client:
    sink.wait(lambda: os.path.exists(pt_path), "the pass-through link")
    sender = Client(pt_path)
    sender.expect(lambda line: line.startswith("Grbl 1.1h"))  # opening resets an idle machine
    return sender


def test_sender_streams_a_job_undisturbed(sim: GrblSimulator, tmp_path: Path, pt_path: str) -> None:
    sink = RecordingSink()
    adapter = make_adapter(sim, sink, passthrough=pt_path)
    text = cnc_pocket_job(width=20, height=14, depth=2)
    lines = [line for line in (wire.clean_gcode_line(raw) for raw in text.splitlines()) if line]
    with BridgeLoop(adapter):
        sink.wait_state("idle")
        sender = open_sender(pt_path, sink)
        try:
            inflight: collections.deque[int] = collections.deque()
            sent = acked = queries = reports = 0
            unexpected: list[str] = []
            last_query = 0.0
            deadline = time.monotonic() + 60
            idle_after_end = False
            while not idle_after_end:
                assert time.monotonic() < deadline, f"stalled at {acked}/{len(lines)}"
                while sent < len(lines) and sum(inflight) + len(lines[sent]) + 1 <= facts.RX_BUFFER_USABLE:
                    sender.write(lines[sent].encode() + b"\n")
                    inflight.append(len(lines[sent]) + 1)
                    sent += 1
                if time.monotonic() - last_query > 0.2:  # UGS polls at 5 Hz
                    sender.write(b"?")
                    queries += 1
                    last_query = time.monotonic()
                sender._pump()
                while sender.lines:
                    line = sender.lines.pop(0)
                    parsed = wire.parse_line(line)
                    if wire.is_ack(parsed):
                        assert inflight, f"an ok/error the sender never asked for: {line}"
                        inflight.popleft()
                        acked += 1
                        if line != "ok":
                            unexpected.append(line)
                    elif isinstance(parsed, wire.StatusReport):
                        reports += 1
                        idle_after_end = acked == len(lines) and parsed.state == "Idle"
                    elif line != "[MSG:Pgm End]":
                        unexpected.append(line)
            assert unexpected == []
            assert reports <= queries  # never a report the sender did not ask for
        finally:
            sender.close()
        started = sink.wait_event("job_started")
        assert started["detail"]["source"] == "passthrough"
        finished = sink.wait_event("job_finished")
        assert finished["job"].id == started["job"].id
        assert any(s["state"] == "running" for s in sink.statuses)
        # The adapter polled nothing itself while the sender did: it read the sender's reports.
        assert adapter._polls.swallowed <= 2
    assert sim.rx_overflows == 0


def test_silent_sender_never_sees_the_bridges_reports(sim: GrblSimulator, pt_path: str) -> None:
    sink = RecordingSink()
    adapter = make_adapter(sim, sink, passthrough=pt_path)
    with BridgeLoop(adapter):
        sink.wait_state("idle")
        sender = open_sender(pt_path, sink)
        try:
            assert sender.command("G21 G91") == ["ok"]
            assert sender.command("G1 X100 F600") == ["ok"]
            sink.wait_state("running")  # seen through the bridge's own queries
            sink.wait_state("idle")
            seen = adapter.reports_seen
            sink.wait(lambda: adapter.reports_seen > seen + 3, "more reports")
            assert sender.command("$G")[0].startswith("[GC:")  # replies to the sender's lines still come
            sender._pump()
            assert not any(line.startswith("<") for line in sender.lines)
            assert adapter._polls.swallowed > 3
        finally:
            sender.close()


def test_sender_drives_every_state(tmp_path: Path, pt_path: str) -> None:
    sink = RecordingSink()
    with GrblSimulator(speed=2, homing=True, link_path=str(tmp_path / "usb")) as sim:  # homing takes 1 s
        adapter = make_adapter(sim, sink, passthrough=pt_path)
        with BridgeLoop(adapter):
            status = sink.wait_state("error")  # homing enabled: powers up locked
            assert status["error"].code == "ALARM" and "unlock" in status["error"].message
            sink.wait(lambda: os.path.exists(pt_path), "link")
            sender = Client(pt_path)
            try:
                sender.expect(lambda line: line == "[MSG:'$H'|'$X' to unlock]")
                sender.write(b"$H\n")
                sink.wait(lambda: adapter.grbl_state == "Home", "Home")
                assert sink.wait_state("running")
                sender.expect(lambda line: line == "ok")
                sink.wait_state("idle")
                assert sender.command("$J=G91 X100 F200") == ["ok"]
                sink.wait(lambda: adapter.grbl_state == "Jog", "Jog")
                assert sink.state == "running"
                sender.write(b"\x85")
                sink.wait_state("idle")
                assert sender.command("$C") == ["[MSG:Enabled]", "ok"]
                sink.wait(lambda: adapter.grbl_state == "Check", "Check")
                assert sink.state == "idle"
                assert sender.command("$C") == ["[MSG:Disabled]", "ok"]
                sender.expect(lambda line: line.startswith("Grbl"))
                assert sender.command("$SLP") == ["ok"]
                sink.wait(lambda: adapter.grbl_state == "Sleep", "Sleep")
                assert sink.state == "idle"
                sender.write(b"\x18")
                sender.expect(lambda line: line == "[MSG:'$H'|'$X' to unlock]")
                assert sink.wait_state("error")["error"].code == "ALARM"
                assert sender.command("$X") == ["[MSG:Caution: Unlocked]", "ok"]
                sink.wait_state("idle")
                messages = [e["detail"]["text"] for e in sink.events_of("grbl_message")]
                assert "Caution: Unlocked" in messages and "Sleeping" in messages
            finally:
                sender.close()


def test_send_file_through_the_passthrough(sim: GrblSimulator, tmp_path: Path, pt_path: str) -> None:
    sink = RecordingSink()
    adapter = make_adapter(sim, sink, passthrough=pt_path)
    job_file = write_job(tmp_path / "plate.nc", cnc_pocket_job(width=16, height=12, depth=1))
    with BridgeLoop(adapter):
        sink.wait_state("idle")
        sink.wait(lambda: os.path.exists(pt_path), "link")
        out = io.StringIO()
        assert send_file(adapter.options, job_file, out=out, timeout_s=60) == 0  # as `send` calls it
        assert "done" in out.getvalue()
        finished = sink.wait_event("job_finished")
        assert finished["job"].name == "plate.nc"  # learnt from the job marker
        assert finished["job"].progress_pct == 100.0
        progress = [s["job"].progress_pct for s in sink.statuses if s["job"] is not None]
        assert progress and progress[-1] == 100.0


def test_interlock_through_the_passthrough(sim: GrblSimulator, tmp_path: Path, pt_path: str) -> None:
    sink = RecordingSink()
    adapter = make_adapter(sim, sink, passthrough=pt_path, interlock=True, enabled=False)
    job_file = write_job(tmp_path / "plate.nc", cnc_pocket_job(width=16, height=12, depth=1))
    with BridgeLoop(adapter):
        sink.wait_state("idle")
        sink.wait(lambda: os.path.exists(pt_path), "link")
        out = io.StringIO()
        assert send_file(pt_path, job_file, out=out, timeout_s=60) == 1  # refused at the job marker
        assert "interlock" in out.getvalue() and "error:9" in out.getvalue()
        assert sink.events_of("job_started") == []
        sink.wait(lambda: not adapter.sender_attached, "send_file to close the pass-through")
        # A sender that just streams gets error:9 for each line; nothing reaches GRBL.
        sender = open_sender(pt_path, sink)
        try:
            refused = ["[MSG:FabLab interlock: machine disabled]", "error:9"]
            assert sender.command("G21 G91 G1 X200 F600") == refused
            assert sender.status().state == "Idle"  # status queries still pass
            assert not any("X200" in line for line in sim.received)
            adapter.command("enable")
            assert sender.command("G21 G91 G1 X200 F100") == ["ok"]
            sink.wait_state("running")
        finally:
            sender.close()


def test_a_disabled_grbl_passthrough_never_forwards_spindle_commands(
    sim: GrblSimulator, pt_path: str
) -> None:
    sink = RecordingSink()
    adapter = make_adapter(sim, sink, passthrough=pt_path, interlock=True, enabled=False)
    with BridgeLoop(adapter):
        sink.wait_state("idle")
        sender = open_sender(pt_path, sink)
        try:
            received_before = len(sim.received)
            refused = ["[MSG:FabLab interlock: machine disabled]", "error:9"]
            for line in ("M3 S1000", "M4 S300", "S500", "G1 X5 F100 S1000 M3", "$X", "$$", "$I", ""):
                assert sender.command(line) == refused, line
            realtime_before = list(sim.realtime_received)
            # Cycle start, feed hold, reset, spindle override and stop, door: all dropped; '?' answered.
            sender.write(b"~!\x18\x9a\x9e\x84")
            report = sender.status()
            assert report.state == "Idle" and report.spindle in (None, 0)
            sink.wait(lambda: 0x3F in list(sim.realtime_received)[len(realtime_before) :], "the ? at GRBL")
            assert [b for b in list(sim.realtime_received)[len(realtime_before) :] if b != 0x3F] == []
            assert list(sim.received)[received_before:] == []  # not one line reached the controller
            assert sim.spindle_output() == 0.0
        finally:
            sender.close()


def test_unplug_closes_the_passthrough_and_both_come_back(sim: GrblSimulator, pt_path: str) -> None:
    sink = RecordingSink()
    adapter = make_adapter(sim, sink, passthrough=pt_path)
    with BridgeLoop(adapter):
        sink.wait_state("idle")
        sender = open_sender(pt_path, sink)
        sim.unplug()
        sink.wait_state("offline")
        with pytest.raises(serial.SerialException):
            deadline = time.monotonic() + DEADLINE_S
            while time.monotonic() < deadline:
                sender.ser.read(10)
        sender.close()
        assert not os.path.exists(pt_path)  # the sender sees its port vanish, like a USB cable
        sim.replug()
        sink.wait_state("idle")
        again = open_sender(pt_path, sink)
        try:
            assert again.command("$I")[0].startswith("[VER:1.1h")
        finally:
            again.close()
    assert isinstance(adapter, GrblAdapter)
