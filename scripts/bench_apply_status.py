#!/usr/bin/env python3
"""Micro-benchmark of the hub's status path: how many statuses a second ``devices.status`` applies.

A scratch SQLite database with ``--machines`` machines (default 200) gets ``--statuses`` statuses
(default 2,000; every machine in turn, newer ``ts`` each round, an idle round every 10th so
sessions, history and alerts are exercised), applied one by one (``apply_status``) and then in
batches of ``--batch`` (``apply_statuses``, as the hub does). Prints statuses per second for each.

    .venv/bin/python scripts/bench_apply_status.py [--machines 200] [--statuses 2000] [--batch 100]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--machines", type=int, default=200)
    parser.add_argument("--statuses", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="bench-apply-")
    os.environ["DJANGO_SETTINGS_MODULE"] = "fablab.settings"
    os.environ["DATABASE_URL"] = f"sqlite:///{work}/bench.sqlite3"
    os.environ.pop("REDIS_URL", None)
    import django

    django.setup()
    from django.core.management import call_command

    from devices import machines, status
    from devices.models import MachineLink, StateChange
    from fablab.labs.models import Lab, Machine, MachineType
    from firmware_bridge import protocol

    call_command("migrate", verbosity=0)
    lab = Lab.objects.create(slug="bench-lab", name="Bench lab", time_zone="Europe/Brussels")
    kind = MachineType.objects.create(slug="3d-printer", name="3D printer")
    from devices.models import Bridge

    bridge = Bridge.objects.create(slug="bench-bridge", lab=lab)
    for i in range(args.machines):
        m = Machine.objects.create(lab=lab, slug=f"m-{i:03d}", name=f"M {i}", machine_type=kind)
        MachineLink.objects.create(machine=m, bridge=bridge, adapter="octoprint", telemetry_interval_s=86400)
    index = machines.MachineIndex()
    index.reload()
    infos = sorted(index.all(), key=lambda i: i.slug)

    def statuses(t0: int) -> list:
        out = []
        for k in range(args.statuses):
            rnd, info = divmod(k, len(infos))
            state = protocol.IDLE if rnd % 10 == 9 else protocol.RUNNING
            job = protocol.Job(
                id=f"job-{rnd // 10}", name="bench.gcode", started_ts=t0, progress_pct=float(rnd % 100)
            )
            out.append(
                (
                    infos[info],
                    protocol.Status(
                        state=state, enabled=True, bridge="bench-bridge", adapter="octoprint",
                        ts=t0 + rnd * 1000 + info, job=job if state == protocol.RUNNING else None,
                    ),
                )
            )  # fmt: skip
        return out

    t0 = int(time.time() * 1000)
    rows = []
    one = statuses(t0)
    start = time.perf_counter()
    for info, msg in one:
        status.apply_status(info, msg)
    rows.append(("one by one (apply_status)", time.perf_counter() - start))
    if hasattr(status, "apply_statuses"):
        batched = statuses(t0 + 10_000_000)
        start = time.perf_counter()
        for i in range(0, len(batched), args.batch):
            status.apply_statuses(batched[i : i + args.batch])
        rows.append((f"batches of {args.batch} (apply_statuses)", time.perf_counter() - start))
    print(
        f"{args.statuses} statuses, {args.machines} machines, SQLite; state changes: {StateChange.objects.count()}"
    )
    for name, secs in rows:
        print(f"{name}: {args.statuses / secs:,.0f} statuses/s ({secs * 1000 / args.statuses:.2f} ms each)")


if __name__ == "__main__":
    main()
