"""The command line: check, run (signals), send and simulate, as a user types them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from firmware_bridge import protocol
from firmware_bridge.cli import main
from tests.firmware_bridge.conftest import REPO, BridgeProcess, Collector, wait_until, write_config
from tests.support.mosquitto import Mosquitto

DEMO = REPO / "firmware_bridge" / "demo"


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "firmware_bridge", *args],
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_check_ok_and_problems(tmp_path: Path) -> None:
    ok = run_cli("check", "--config", str(DEMO / "bxl-centre.toml"))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "bxl-centre-bridge" in ok.stdout and "5 machines" in ok.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[bridge]\nid = "x"\nspool_max_messages = -5\n[mqtt]\nurl = "mqtt://h"\n'
        '[[machines]]\nlab = "l"\nmachine = "m"\nadapter = "counter"\n[machines.options]\ninterval_s = "x"\n'
    )
    result = run_cli("check", "--config", str(bad))
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "bridge.spool_max_messages: must be >= 100",
        "machines[0].options.interval_s: must be a number",
    ]


def test_run_refuses_a_bad_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "b.toml").write_text("[bridge]\n")
    assert main(["run", "--config", str(tmp_path / "b.toml")]) == 1
    err = capsys.readouterr().err.splitlines()
    assert "bridge.id: missing" in err and "mqtt: missing section" in err


def test_run_and_sigterm(tmp_path: Path, mosquitto: Mosquitto, collector: Collector) -> None:
    config = write_config(
        tmp_path / "bridge.toml",
        mosquitto,
        [{"lab": "cli-lab", "machine": "m", "adapter": "counter", "options": {"interval_s": 0.1}}],
    )
    proc = BridgeProcess(config, tmp_path / "bridge.log")
    proc.start()
    wait_until(lambda: collector.seqs("cli-lab", "m") or not proc.alive(), what="telemetry")
    assert proc.alive(), proc.log()
    assert proc.kill(signal.SIGTERM) == 0
    assert wait_until(lambda: collector.last(protocol.ONLINE), what="online").online is False
    log = proc.log()
    assert "received SIGTERM; stopping" in log and "Traceback" not in log


def test_send_streams_a_file_to_a_grbl_machine(tmp_path: Path) -> None:
    from firmware_bridge.simulators.gcode_jobs import cnc_pocket_job, write_job
    from firmware_bridge.simulators.grbl import GrblSimulator

    sim = GrblSimulator(speed=50, link_path=str(tmp_path / "usb-grbl"))
    sim.start()
    try:
        config = tmp_path / "bridge.toml"
        config.write_text(
            '[bridge]\nid = "b"\n[mqtt]\nurl = "mqtt://127.0.0.1:1"\n'
            f'[[machines]]\nlab = "l"\nmachine = "cnc"\nadapter = "grbl"\n[machines.options]\nport = "{sim.port}"\n'
            '[[machines]]\nlab = "l"\nmachine = "other"\nadapter = "counter"\n'
        )
        job = write_job(tmp_path / "job.nc", cnc_pocket_job(width=12, height=10, depth=1))
        done = run_cli("send", "--config", str(config), "--machine", "cnc", str(job), timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        assert sim.received, "the simulator saw no G-code"
        wrong = run_cli("send", "--config", str(config), "--machine", "other", str(job))
        assert wrong.returncode == 1 and "uses the counter adapter" in wrong.stderr
        missing = run_cli("send", "--config", str(config), "--machine", "nope", str(job))
        assert missing.returncode == 1 and "no single machine" in missing.stderr
    finally:
        sim.stop()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("config", "lab", "grbl", "plug"),
    [
        ("bxl-centre.toml", "bxl-centre", "cnc-router", "epilog-laser"),
        ("bxl-south.toml", "bxl-south", "diode-laser", "trotec-laser"),
    ],
)
def test_simulate_runs_the_demo_lab(
    tmp_path: Path, mosquitto: Mosquitto, collector: Collector, config: str, lab: str, grbl: str, plug: str
) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "firmware_bridge",
            "simulate",
            "--config",
            str(DEMO / config),
            "--mqtt-url",
            mosquitto.url(),
            "--no-octoprint",
            "--speed",
            "20",
            "--workdir",
            str(tmp_path / "demo"),
        ],
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "demo.log", "wb"),  # noqa: SIM115
    )
    try:
        # The GRBL machine runs a demo job through the real adapter; the plug laser draws power.
        wait_until(
            lambda: (
                any(e.type == "job_started" for _, e in collector.of_kind(protocol.EVENT, lab, grbl))
                or proc.poll() is not None
            ),
            what=f"{grbl} to start a job",
        )
        wait_until(
            lambda: (
                any("power_w" in t.values for _, t in collector.of_kind(protocol.TELEMETRY, lab, plug))
                or proc.poll() is not None
            ),
            what=f"{plug} power readings",
        )
        assert proc.poll() is None, (tmp_path / "demo.log").read_text()
        # simulate enables the interlocked plug once it is up; the first
        # statuses may still say disabled.
        wait_until(
            lambda: (s := collector.last(protocol.STATUS, lab, plug)) is not None and s.enabled,
            what=f"{plug} enabled",
        )
        assert collector.last(protocol.STATUS, lab, plug).bridge == f"{lab}-bridge"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 0, (tmp_path / "demo.log").read_text()[-3000:]


def test_simulate_scales_the_plug_hold_times(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """A sped-up demo divides on_s/off_s like the load's phases, or a compressed pause never ends a job."""
    import argparse

    from firmware_bridge.adapters.tasmota import TasmotaAdapter
    from firmware_bridge.config import load
    from firmware_bridge.simulate import Demo

    cfg = load(DEMO / "bxl-centre.toml", mqtt_url=mosquitto.url())
    plug = cfg.machine("epilog-laser")
    args = argparse.Namespace(speed=20.0, plug_mqtt_url=[])
    demo = Demo(cfg, tmp_path, args)
    try:
        scaled = demo.start_plug(plug)
    finally:
        for cleanup in reversed(demo.cleanups):
            cleanup()
    assert scaled.options["off_s"] == plug.options["off_s"] / 20
    assert scaled.options["on_s"] == plug.options["on_s"] / 20
    assert (scaled.options["on_w"], scaled.options["off_w"]) == (plug.options["on_w"], plug.options["off_w"])
    assert TasmotaAdapter.validate_options(scaled.options) == []
