"""The GRBL simulator, driven like a real controller: pyserial on its pseudo-terminal."""

from __future__ import annotations

import collections
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import serial

from firmware_bridge.adapters.grbl import facts, wire
from firmware_bridge.simulators.gcode_jobs import cnc_pocket_job, laser_job
from firmware_bridge.simulators.grbl import GrblSimulator

DEADLINE_S = 30.0


class Client:
    """A minimal GRBL client over pyserial: lines in, parsed lines out."""

    def __init__(self, port: str) -> None:
        self.ser = serial.Serial(port, 115200, timeout=0.05)
        self.lines: list[str] = []
        self._buf = b""

    def close(self) -> None:
        self.ser.close()

    def write(self, data: bytes) -> None:
        self.ser.write(data)

    def _pump(self) -> None:
        self._buf += self.ser.read(self.ser.in_waiting or 1)
        while b"\n" in self._buf:
            raw, self._buf = self._buf.split(b"\n", 1)
            text = raw.decode("ascii").strip()
            if text:
                self.lines.append(text)

    def expect(self, predicate: Callable[[str], bool], timeout: float = DEADLINE_S) -> str:
        """Consume lines until one matches; fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            while self.lines:
                line = self.lines.pop(0)
                if predicate(line):
                    return line
            self._pump()
        raise AssertionError(f"no matching line within {timeout} s")

    def command(self, line: str) -> list[str]:
        """Send one line (send-response) and return every line up to and including its ok/error."""
        self.write(line.encode() + b"\n")
        got: list[str] = []
        while True:
            text = self.expect(lambda _line: True)
            if text.startswith("<"):
                continue
            got.append(text)
            if text == "ok" or text.startswith("error:"):
                return got

    def status(self) -> wire.StatusReport:
        self.write(b"?")
        return wire.parse_status(self.expect(lambda line: line.startswith("<"), timeout=5))

    def wait_state(self, wanted: str, timeout: float = DEADLINE_S) -> wire.StatusReport:
        deadline = time.monotonic() + timeout
        seen = []
        while time.monotonic() < deadline:
            try:
                report = self.status()
            except AssertionError:
                continue
            seen.append(wire.state_name(report))
            if wire.state_name(report) == wanted or report.state == wanted:
                return report
            time.sleep(0.02)
        raise AssertionError(f"state {wanted} not reached; saw {seen[-10:]}")


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[GrblSimulator]:
    machine = GrblSimulator(speed=40, link_path=str(tmp_path / "ttyGRBL"))
    machine.start()
    yield machine
    machine.stop()


@pytest.fixture
def client(sim: GrblSimulator) -> Iterator[Client]:
    c = Client(sim.port)
    c.expect(lambda line: line.startswith("Grbl 1.1h"))
    yield c
    c.close()


def test_welcome_on_open_and_queries(client: Client, sim: GrblSimulator) -> None:
    settings = client.command("$$")
    assert settings[-1] == "ok"
    parsed = {s.number: s.value for s in map(wire.parse_line, settings) if isinstance(s, wire.Setting)}
    assert parsed[32] == 0 and parsed[30] == 24000 and parsed[10] == 1
    assert client.command("$I")[:2] == ["[VER:1.1h.20190830:]", "[OPT:V,15,128]"]
    assert client.command("$G")[0].startswith("[GC:G0 G54 G17 G21 G90 G94")
    assert client.command("$#")[0] == "[G54:0.000,0.000,0.000]"
    assert client.command("$")[0].startswith("[HLP:")
    assert client.command("$N")[:2] == ["$N0=", "$N1="]
    # Ctrl-X while idle: a welcome, no alarm.
    client.write(b"\x18")
    client.expect(lambda line: line.startswith("Grbl 1.1h"))
    assert client.status().state == "Idle"


def test_laser_mode_setting_and_power(tmp_path: Path) -> None:
    with GrblSimulator(laser=True, speed=5) as sim:
        c = Client(sim.port)
        try:
            c.expect(lambda line: line.startswith("Grbl"))
            assert "$32=1" in c.command("$$")
            c.command("G21 G90 M4 S500")
            c.command("G1 X40 F600")
            report = c.wait_state("Run")
            assert report.spindle == 500  # beam on during a G1 move
            c.wait_state("Idle")
            assert c.status().spindle == 0  # M4 in laser mode: off while stopped
            c.command("G0 X0")
            c.wait_state("Run")
            assert c.status().spindle == 0  # G0 never fires the laser
        finally:
            c.close()


def test_errors_have_their_codes(client: Client, sim: GrblSimulator) -> None:
    assert client.command("G1 X10") == ["error:22"]  # no feed rate yet
    assert client.command("G5 X1") == ["error:20"]  # unsupported
    assert client.command("G1 G0 X1") == ["error:21"]  # modal group violation
    assert client.command("G1 X") == ["error:2"]  # a word without a number
    assert client.command("X1.2.3") == ["error:1"]  # ".3" is not a command letter
    assert client.command("$H") == ["error:5"]  # homing disabled
    assert client.command("$Q") == ["error:3"]
    assert client.command("X" * 90) == ["error:11"]  # line overflow (80 characters)
    assert client.command("$0=2") == ["error:6"]
    assert client.command("") == ["ok"]  # an empty line is acknowledged
    assert client.command("(a comment only)") == ["ok"]


def test_moves_run_in_simulated_time_and_report_fields(client: Client, sim: GrblSimulator) -> None:
    first = client.status()
    assert first.wco is not None and first.overrides is None  # WCO in the first report after reset
    second = client.status()
    assert second.overrides == (100, 100, 100) and second.wco is None  # Ov in the second
    client.command("$10=3")  # MPos + buffer state
    client.command("G10 L20 P1 X0 Y0 Z0")
    client.command("G21 G90 M3 S12000")
    client.command("N77 G1 X60 Y0 F1200")
    report = client.wait_state("Run")
    assert report.planner_blocks_free is not None and report.rx_bytes_free is not None
    assert report.line_number == 77
    assert report.feed == 1200 and report.spindle == 12000
    client.wait_state("Idle")
    assert sim.position == pytest.approx((60.0, 0.0, 0.0))
    # Ov and A: refreshed at least every 20 reports; A:S because the spindle runs clockwise.
    ov = [r for r in (client.status() for _ in range(21)) if r.overrides is not None]
    assert ov and ov[-1].accessories == "S"
    # Overrides change at once and are reported on the next report.
    client.write(b"\x91\x91\x96\x9b")
    report = client.status()
    assert report.overrides == (120, 50, 90)
    client.command("G92 X10")  # WCO changes: reported at once
    assert client.status().wco == pytest.approx((50.0, 0.0, 0.0))


def test_character_counting_keeps_buffer_and_overflow_is_counted(client: Client, sim: GrblSimulator) -> None:
    text = cnc_pocket_job(width=30, height=20, depth=2, stepdown=1)
    lines = [wire.clean_gcode_line(raw) for raw in text.splitlines()]
    lines = [line for line in lines if line]
    inflight: collections.deque[int] = collections.deque()
    sent = acked = 0
    errors = []
    deadline = time.monotonic() + 60
    while acked < len(lines):
        assert time.monotonic() < deadline, f"stream stalled at {acked}/{len(lines)}"
        while sent < len(lines) and sum(inflight) + len(lines[sent]) + 1 <= facts.RX_BUFFER_USABLE:
            client.write(lines[sent].encode() + b"\n")
            inflight.append(len(lines[sent]) + 1)
            sent += 1
        reply = client.expect(lambda line: line == "ok" or line.startswith("error"))
        inflight.popleft()
        acked += 1
        if reply != "ok":
            errors.append((lines[acked - 1], reply))
    assert errors == []
    assert sim.rx_overflows == 0
    # Without counting, a burst beyond 127 bytes is partly dropped, as by the real serial ISR.
    client.write(b"G4 P5\n" + b"G0 X1 Y1 Z1\n" * 20)
    deadline = time.monotonic() + DEADLINE_S
    while sim.rx_overflows == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sim.rx_overflows > 0


def test_hold_resume_and_reset_while_moving_alarms(client: Client, sim: GrblSimulator) -> None:
    client.command("G21 G91")
    client.command("G1 X300 F600")
    client.wait_state("Run")
    client.write(b"!")
    client.wait_state("Hold:0")
    held = sim.position
    time.sleep(0.1)
    assert sim.position == held  # hold complete: stopped
    client.write(b"~")
    client.wait_state("Run")
    client.write(b"\x18")  # soft reset while moving
    client.expect(lambda line: line == "ALARM:3")
    client.expect(lambda line: line.startswith("Grbl 1.1h"))
    client.expect(lambda line: line == "[MSG:'$H'|'$X' to unlock]")
    assert client.status().state == "Alarm"
    assert client.command("G0 X1") == ["error:9"]  # G-code locked in alarm
    assert client.command("$X") == ["[MSG:Caution: Unlocked]", "ok"]
    assert client.status().state == "Idle"


def test_hold_complete_then_reset_keeps_no_alarm(client: Client, sim: GrblSimulator) -> None:
    client.command("G21 G91")
    client.command("G1 X300 F600")
    client.wait_state("Run")
    client.write(b"!")
    client.wait_state("Hold:0")
    client.write(b"\x18")
    client.expect(lambda line: line.startswith("Grbl 1.1h"))
    assert client.status().state == "Idle"
    assert "ALARM:3" not in sim.sent


def test_door_jog_check_sleep_home_states(tmp_path: Path) -> None:
    with GrblSimulator(speed=40, homing=True) as sim:
        c = Client(sim.port)
        try:
            c.expect(lambda line: line.startswith("Grbl"))
            c.expect(lambda line: line == "[MSG:'$H'|'$X' to unlock]")  # homing enabled: powers up locked
            assert c.status().state == "Alarm"
            c.write(b"$H\n")
            c.wait_state("Home")
            c.expect(lambda line: line == "ok")
            c.wait_state("Idle")
            # Jog, and a jog cancel.
            c.command("$J=G91 X100 F300")
            c.wait_state("Jog")
            c.write(b"\x85")
            c.wait_state("Idle")
            assert c.command("$J=G91 X1") == ["error:22"]
            # Safety door while running: Door:2 then Door:1; closed: Door:0; resume.
            c.command("G91 G1 X200 F600")
            c.wait_state("Run")
            sim.open_door()
            c.expect(lambda line: line == "[MSG:Check Door]")
            report = c.wait_state("Door:1")
            assert "D" in (report.pins or "")
            c.write(b"~")  # cannot resume with the door open
            assert c.status().state == "Door"
            sim.close_door()
            c.wait_state("Door:0")
            c.write(b"~")
            c.wait_state("Run")
            c.write(b"!")
            c.wait_state("Hold:0")
            c.write(b"\x18")
            c.expect(lambda line: line.startswith("Grbl"))
            # Check mode.
            assert c.command("$C") == ["[MSG:Enabled]", "ok"]
            assert c.status().state == "Check"
            assert c.command("G1 X10 F100") == ["ok"]
            assert c.status().state == "Check"
            assert c.command("$C") == ["[MSG:Disabled]", "ok"]
            c.expect(lambda line: line.startswith("Grbl"))  # check mode ends with a reset
            # Sleep needs a reset, and wakes up in alarm.
            assert c.command("$SLP") == ["ok"]
            c.expect(lambda line: line == "[MSG:Sleeping]")
            assert c.status().state == "Sleep"
            c.write(b"\x18")
            c.expect(lambda line: line == "[MSG:'$H'|'$X' to unlock]")
            assert c.status().state == "Alarm"
        finally:
            c.close()


def test_critical_alarm_ignores_everything_but_reset(client: Client, sim: GrblSimulator) -> None:
    sim.trigger_alarm(1)
    client.expect(lambda line: line == "ALARM:1")
    client.expect(lambda line: line == "[MSG:Reset to continue]")
    client.write(b"?")
    time.sleep(0.3)
    client._pump()
    assert not any(line.startswith("<") for line in client.lines)  # status ignored
    client.write(b"\x18")
    client.expect(lambda line: line == "[MSG:'$H'|'$X' to unlock]")
    report = client.status()
    assert report.state == "Alarm" and "X" in (report.pins or "")
    sim.release_limits()
    sim.trigger_alarm(5)  # a non-critical alarm (probe fail): status still answered
    client.expect(lambda line: line == "ALARM:5")
    assert client.status().state == "Alarm"


def test_unplug_and_replug(client: Client, sim: GrblSimulator) -> None:
    link = sim.port
    assert os.path.islink(link)
    sim.unplug()
    assert not os.path.exists(link)
    with pytest.raises(serial.SerialException):
        for _ in range(50):
            client.ser.read(10)
            time.sleep(0.01)
    sim.replug()
    assert os.path.islink(link)
    c2 = Client(link)
    try:
        c2.expect(lambda line: line.startswith("Grbl 1.1h"))
        assert c2.status().state == "Idle"
    finally:
        c2.close()


def test_generated_jobs_are_valid_gcode() -> None:
    for text in (cnc_pocket_job(line_numbers=True), laser_job()):
        lines = [wire.clean_gcode_line(line) for line in text.splitlines()]
        assert len([line for line in lines if line]) > 50
        assert all(len(line) < 80 for line in lines)
    laser = laser_job()
    assert "M4 S0" in laser and "G3" in laser and laser.rstrip().endswith("M2")
    assert cnc_pocket_job().rstrip().endswith("M30")
