"""The hub's start: the first batch without waiting for a full one, and ``run_hub --workers`` forking.

The backlog benchmark (``scripts/bench_hub.py``) times these; here they are proven without
timing: a batch interval of an hour that the first batch does not wait for, and worker
processes found through the supervisor's ``/proc`` children.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from firmware_bridge import protocol
from tests.devices.conftest import HubProcess, hub_thread, make_machine, new_sid, wait_until
from tests.factories import LabFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

# A day ago in whole seconds: inside the hub's accepted window (MAX_AGE_MS) on any date.
T0 = (int(time.time()) - 86_400) * 1000


def telemetry(seq: int, sid: str) -> protocol.Telemetry:
    return protocol.Telemetry(ts=T0 + seq * 1000, sid=sid, seq=seq, values={"power_w": float(seq)})


def points(influx) -> int:
    return influx.count('SELECT count("power_w") FROM "telemetry"')


def test_the_first_batch_is_written_when_the_first_pass_ends_and_the_next_waits_for_its_size_or_interval(
    broker, influx, publisher, tmp_path
):
    lab = LabFactory(slug="bxl-centre")
    make_machine(lab, slug="plug-1", adapter="tasmota")
    sid = new_sid()
    # Neither size nor interval would cut a batch during this test: only the first-pass rule can.
    with hub_thread(broker, influx, tmp_path, batch_size=100_000, batch_interval=3600) as hub:
        publisher.message(telemetry(0, sid), "bxl-centre", "plug-1")
        wait_until(lambda: points(influx) == 1, what="the first point, written after the first pass")
        publisher.message(telemetry(1, sid), "bxl-centre", "plug-1")
        # Received and in the open batch, neither written nor acknowledged: batches are full-size again.
        wait_until(lambda: len(hub._batch.acks) == 1, what="the second message in the open batch")
        wait_until(lambda: hub.stats.snapshot().get("acked", 0) >= 1, what="the first batch's ack")
        assert points(influx) == 1
        assert hub.stats.snapshot()["acked"] == 1
    # Stopping flushes the open batch.
    assert points(influx) == 2


def worker_pids(supervisor_pid: int) -> set[int]:
    path = Path(f"/proc/{supervisor_pid}/task/{supervisor_pid}/children")
    return {int(p) for p in path.read_text().split()}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not reaped yet) is not a running worker.
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z")


def test_run_hub_forks_its_workers_replaces_a_dead_one_and_stops_them_all(
    broker, influx, publisher, tmp_path
):
    lab = LabFactory(slug="bxl-centre")
    make_machine(lab, slug="plug-1", adapter="tasmota")
    sid = new_sid()
    hub = HubProcess(broker, influx, tmp_path, "hub-fork", "--workers", "2").start()
    try:
        assert hub.proc is not None
        wait_until(lambda: hub.log().count("subscribed to") >= 2, what="both workers to subscribe")
        workers = wait_until(lambda: len(worker_pids(hub.proc.pid)) == 2 and worker_pids(hub.proc.pid))
        log = hub.log()
        assert "as hub-fork-0" in log and "as hub-fork-1" in log
        # Forked from the supervisor (Django set up, the hub imported), not a new manage.py each.
        supervisor_cmdline = Path(f"/proc/{hub.proc.pid}/cmdline").read_bytes()
        assert all(Path(f"/proc/{pid}/cmdline").read_bytes() == supervisor_cmdline for pid in workers)
        for seq in range(20):
            publisher.message(telemetry(seq, sid), "bxl-centre", "plug-1")
        wait_until(lambda: points(influx) == 20, what="20 points from the two workers")

        # A worker that dies is forked again, under the same client id (its session).
        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: "exited with -9; restarting" in hub.log(), what="the supervisor to notice")
        wait_until(
            lambda: len(worker_pids(hub.proc.pid) - {victim}) == 2,
            what="a new worker in the dead one's place",
        )
        wait_until(lambda: hub.log().count("subscribed to") >= 3, what="the new worker to subscribe")
        for seq in range(20, 40):
            publisher.message(telemetry(seq, sid), "bxl-centre", "plug-1")
        wait_until(lambda: points(influx) == 40, what="40 points after the restart")
        workers = worker_pids(hub.proc.pid)
    finally:
        rc = hub.stop()
    assert rc == 0
    assert not any(alive(pid) for pid in workers), "a worker outlived its supervisor"
