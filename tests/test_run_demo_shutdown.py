"""`make run` stops the scheduler and the demo makers first, then the hub, the bridges and the web,
then the servers they write to.

The hub flushes its last batches into InfluxDB (and acknowledges them to
Mosquitto) as it stops; InfluxDB going first lost them. The scheduler and the demo makers act on
the machines through the hub and the bridges: they go before them.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# A child that, told to stop, takes a moment (a hub flushing its batches) and then exits 0.
CHILD = """
import signal, sys, time
def stop(signum, frame):
    time.sleep(0.3)
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
print("ready", flush=True)
while True:
    time.sleep(1)
"""


@pytest.fixture
def run_demo(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("run_demo_under_test", ROOT / "scripts" / "run_demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "LOG", tmp_path)
    return module


def wait_ready(log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if log.exists() and "ready" in log.read_text():
            return
        time.sleep(0.05)
    raise AssertionError(f"{log.name} never got ready")


def test_the_servers_are_stopped_only_after_every_client_has_exited(run_demo, tmp_path, monkeypatch):
    sup = run_demo.Supervisor()
    # The order `make run` starts them in.
    names = ["mosquitto", "influxdb", "redis", "hub", "bridge-bxl-centre", "web", "scheduler", "demo_makers"]
    procs = {name: sup.start(name, [sys.executable, "-c", CHILD]) for name in names}
    for name in names:
        wait_ready(tmp_path / f"{name}.log")

    clients = [p for n, p in procs.items() if n not in run_demo.SERVERS]
    actors = [p for n, p in procs.items() if n in run_demo.ACTORS]
    assert len(actors) == 2
    alive_when_a_server_was_told_to_stop = []
    actors_alive_when_a_client_was_told_to_stop = []
    real_killpg = os.killpg

    def killpg(pgid: int, sig: int) -> None:
        if sig == signal.SIGTERM and pgid in {procs[n].pid for n in run_demo.SERVERS}:
            alive_when_a_server_was_told_to_stop.extend(
                name for name, p in procs.items() if p in clients and p.poll() is None
            )
        if sig == signal.SIGTERM and pgid in {p.pid for p in clients if p not in actors}:
            actors_alive_when_a_client_was_told_to_stop.extend(
                name for name, p in procs.items() if p in actors and p.poll() is None
            )
        real_killpg(pgid, sig)

    monkeypatch.setattr(os, "killpg", killpg)
    sup.stop_all()
    assert alive_when_a_server_was_told_to_stop == []
    assert actors_alive_when_a_client_was_told_to_stop == []
    # Everyone was asked, not killed: each had the time to finish.
    assert {name: p.returncode for name, p in procs.items()} == dict.fromkeys(names, 0)


def test_a_restarted_hub_still_stops_before_the_servers(run_demo, tmp_path, monkeypatch):
    """watch() re-appends a restarted hub at the end of the list; the order must not depend on that."""
    sup = run_demo.Supervisor()
    influx = sup.start("influxdb", [sys.executable, "-c", CHILD])
    hub = sup.start("hub", [sys.executable, "-c", CHILD], restart=True)
    wait_ready(tmp_path / "influxdb.log")
    wait_ready(tmp_path / "hub.log")
    sup.procs.reverse()  # the hub now comes first, as after a restart of everything else
    hub_alive = []
    real_killpg = os.killpg

    def killpg(pgid: int, sig: int) -> None:
        if pgid == influx.pid and sig == signal.SIGTERM:
            hub_alive.append(hub.poll() is None)
        real_killpg(pgid, sig)

    monkeypatch.setattr(os, "killpg", killpg)
    sup.stop_all()
    assert hub_alive == [False]
