"""Feed holds as GRBL 1.1h does them, and GRBL acks that tell what the machine really did (issue 7)."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from firmware_bridge.adapters.base import ADAPTERS, CommandError
from firmware_bridge.adapters.grbl import GrblAdapter
from firmware_bridge.simulators.grbl import GrblSimulator
from tests.firmware_bridge.test_grbl_adapter import BridgeLoop, RecordingSink
from tests.firmware_bridge.test_grbl_simulator import Client
from tests.firmware_bridge.test_passthrough import open_sender

#: Slow acceleration: a hold from 1200 mm/min (20 mm/s) at 2 mm/s² takes 10 s and 100 mm (simulated).
SLOW_ACCEL = {120: 2.0, 121: 2.0, 122: 2.0}


def make_adapter(
    sim: GrblSimulator,
    sink: RecordingSink,
    *,
    confirm_timeout_s: float,
    passthrough: str | None = None,
    **kwargs: object,
) -> GrblAdapter:
    options: dict[str, object] = {
        "port": sim.port,
        "status_hz": 5,
        "reconnect_s": 0.2,
        "confirm_timeout_s": confirm_timeout_s,
    }
    if passthrough:
        options["passthrough"] = passthrough
    return ADAPTERS["grbl"]("cnc-router", options, sink, **kwargs)  # type: ignore[arg-type,return-value]


@pytest.fixture
def slow_sim(tmp_path: Path) -> Iterator[GrblSimulator]:
    machine = GrblSimulator(speed=5, link_path=str(tmp_path / "usb-grbl"), settings=SLOW_ACCEL)
    machine.start()
    yield machine
    machine.stop()


def test_cycle_start_during_hold_1_is_ignored_like_grbl(slow_sim: GrblSimulator) -> None:
    client = Client(slow_sim.port)
    try:
        client.expect(lambda line: line.startswith("Grbl 1.1h"))
        assert client.command("G21 G91 G1 X1000 F1200") == ["ok"]
        client.wait_state("Run")
        client.write(b"!")
        decelerating = client.wait_state("Hold:1")
        assert decelerating.feed is not None and 0 < decelerating.feed <= 1200
        client.write(b"~")  # dropped: the hold is not complete
        client.wait_state("Hold:0")
        for _ in range(5):  # the ignored '~' was not remembered either
            assert client.status().state == "Hold" and client.status().substate == 0
        client.write(b"~")  # accepted once the hold is complete
        client.wait_state("Run")
    finally:
        client.close()


def test_a_hold_decelerates_over_v_squared_over_2a(slow_sim: GrblSimulator) -> None:
    client = Client(slow_sim.port)
    try:
        client.expect(lambda line: line.startswith("Grbl 1.1h"))
        assert client.command("G21 G91 G1 X1000 F1200") == ["ok"]
        client.wait_state("Run")
        before = slow_sim.position[0]
        client.write(b"!")
        client.wait_state("Hold:0")
        travelled = slow_sim.position[0] - before
        # v²/2a = 20² / (2·2) = 100 mm; the slack covers the few ms between reading and '!'.
        assert travelled == pytest.approx(100.0, abs=15.0)
        # Ten times the acceleration stops in a tenth of the distance.
        client.write(b"\x18")
        client.expect(lambda line: line.startswith("Grbl 1.1h"))
        assert client.command("$120=20") == ["ok"]
        assert client.command("G21 G91 G1 X1000 F1200") == ["ok"]
        client.wait_state("Run")
        before = slow_sim.position[0]
        client.write(b"!")
        client.wait_state("Hold:0")
        assert slow_sim.position[0] - before == pytest.approx(10.0, abs=15.0)
        assert math.isfinite(slow_sim.position[0])
    finally:
        client.close()


def test_resume_during_a_decelerating_hold_is_not_acked_ok_early(
    slow_sim: GrblSimulator, tmp_path: Path
) -> None:
    """The issue's scenario: a sender streams a long move, pause, then resume while still in Hold:1."""
    pt_path = str(tmp_path / "fablab" / "cnc")
    sink = RecordingSink()
    adapter = make_adapter(slow_sim, sink, passthrough=pt_path, confirm_timeout_s=30)
    with BridgeLoop(adapter):
        sink.wait_state("idle")
        sender = open_sender(pt_path, sink)
        try:
            assert sender.command("G21 G91 G1 X1000 F1200") == ["ok"]
            sink.wait_state("running")
            job = sink.wait(lambda: sink.last_status["job"], "the sender's job")
            adapter.command("pause")
            # Acked only once the hold is complete.
            assert adapter.grbl_state == "Hold:0"
            assert sink.last_status["state"] == "paused" and sink.last_status["job"].id == job.id
            sender.command("G1 X1 F1200")  # keeps the sender busy like a streaming program

            # Now pause again from the sender's side and resume at once, while GRBL decelerates.
            adapter.command("resume")
            sink.wait_state("running")
            sender.write(b"!")
            sink.wait(lambda: adapter.grbl_state == "Hold:1", "Hold:1")
            states_seen: list[str | None] = []

            def watch() -> None:
                while not done.is_set():
                    states_seen.append(adapter.grbl_state)
                    done.wait(0.01)

            done = threading.Event()
            watcher = threading.Thread(target=watch)
            watcher.start()
            try:
                adapter.command("resume")  # returns only once GRBL runs again
                grbl_at_ack = slow_sim.state_name
            finally:
                done.set()
                watcher.join()
            assert grbl_at_ack == "Run"
            assert "Hold:0" in states_seen  # it waited for the hold to complete, then resumed
            assert sink.wait_state("running")["job"].id == job.id  # the job survived pause and resume
        finally:
            sender.close()


def test_pause_is_not_acked_ok_when_the_hold_cannot_complete_in_time(slow_sim: GrblSimulator) -> None:
    sink = RecordingSink()
    adapter = make_adapter(slow_sim, sink, confirm_timeout_s=0.2)
    with BridgeLoop(adapter):
        sink.wait_state("idle")
        adapter.start_job_lines(["G21 G91", "G1 X1000 F1200"], name="long")
        sink.wait_state("running")
        with pytest.raises(CommandError) as slow:
            adapter.command("pause")  # a 10 s (2 s real) deceleration outlasts 0.2 s
        assert slow.value.code == "not_confirmed"
        assert "Hold:1" in slow.value.message
        sink.wait(lambda: adapter.grbl_state == "Hold:0", "the hold to complete anyway")
        assert sink.state == "paused"


def test_disable_is_acked_once_the_running_machine_is_held(slow_sim: GrblSimulator) -> None:
    sink = RecordingSink()
    adapter = make_adapter(slow_sim, sink, interlock=True, enabled=True, confirm_timeout_s=30)
    with BridgeLoop(adapter):
        sink.wait_state("idle")
        adapter.start_job_lines(["G21 G91", "G1 X1000 F1200"], name="long")
        sink.wait_state("running")
        adapter.command("disable")
        assert slow_sim.state_name == "Hold:0"  # stopped before the ack, not merely asked to
        with pytest.raises(CommandError) as refused:
            adapter.command("resume")
        assert refused.value.code == "invalid_state"
        adapter.command("cancel")  # held first, then reset: no ALARM:3
        assert slow_sim.state_name == "Idle" and "ALARM:3" not in slow_sim.sent
        assert sink.events_of("job_cancelled")
