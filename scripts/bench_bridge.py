#!/usr/bin/env python3
"""Benchmark of the firmware bridge (issue 3, point 10); prints markdown tables.

1. Steady state: the bridge (``python -m firmware_bridge run``, a subprocess)
   with ten simulated machines (the ``counter`` test adapter) at 1 Hz for
   ``--duration`` seconds against a private Mosquitto: resident memory (RSS)
   and CPU, read from /proc.
2. Replay: a spool holding ``--replay`` messages (as after an outage) and the
   broker down; the broker comes back and the bridge empties the spool. Reports
   messages per second from the broker's start to an empty spool, checked by a
   QoS 1 subscriber (``mosquitto_sub``) that must receive every message.

    .venv/bin/python scripts/bench_bridge.py [--duration 60] [--replay 100000]
"""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from firmware_bridge import protocol  # noqa: E402
from firmware_bridge.spool import Spool  # noqa: E402
from tests.support.mosquitto import Mosquitto  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def rss_mib(pid: int) -> float:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE / 2**20


def write_config(
    path: Path, broker: Mosquitto, spool: Path, machines: int, interval_s: float, limit: int
) -> None:
    lines = [
        "[bridge]",
        'id = "bench-bridge"',
        f'spool = "{spool}"',
        "spool_max_messages = 1000000",
        'log_level = "warning"',
        "[mqtt]",
        f'url = "{broker.url()}"',
        "reconnect_min_s = 1",
        "reconnect_max_s = 1",
    ]
    for i in range(machines):
        lines += [
            "[[machines]]",
            'lab = "bench"',
            f'machine = "m-{i}"',
            'adapter = "counter"',
            "[machines.options]",
            f"interval_s = {interval_s}",
            f"limit = {limit}",
            "job_s = 120",
        ]
    path.write_text("\n".join(lines) + "\n")


def start_bridge(config: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "firmware_bridge", "run", "--config", str(config)],
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        stdout=subprocess.DEVNULL,
        stderr=open(log, "ab"),
    )


def pending(spool: Path) -> int:
    db = sqlite3.connect(f"file:{spool}?mode=ro", uri=True, timeout=30)
    try:
        return db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
    finally:
        db.close()


def steady(work: Path, duration: float) -> dict[str, str]:
    broker = Mosquitto(work / "mq-steady")
    broker.start()
    sub = subprocess.Popen(
        [
            "mosquitto_sub",
            "-h",
            broker.host,
            "-p",
            str(broker.port),
            "-q",
            "1",
            "-t",
            protocol.filter_everything(),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    config = work / "steady.toml"
    spool = work / "steady.sqlite3"
    write_config(config, broker, spool, machines=10, interval_s=1.0, limit=0)
    proc = start_bridge(config, work / "steady.log")
    try:
        time.sleep(5.0)  # imports and first connection are not the steady state
        c0, t0 = cpu_seconds(proc.pid), time.monotonic()
        peak = 0.0
        while time.monotonic() - t0 < duration:
            peak = max(peak, rss_mib(proc.pid))
            time.sleep(1.0)
        c1, t1 = cpu_seconds(proc.pid), time.monotonic()
        rss_end = rss_mib(proc.pid)
        sent = pending(spool)
    finally:
        proc.terminate()
        proc.wait(60)
        sub.terminate()
        broker.stop()
    cpu_pct = 100.0 * (c1 - c0) / (t1 - t0)
    return {
        "machines": "10 (counter adapter, 1 Hz telemetry + status)",
        "measured for": f"{t1 - t0:.0f} s",
        "RSS (end / peak)": f"{rss_end:.1f} MiB / {peak:.1f} MiB",
        "CPU (one core = 100 %)": f"{cpu_pct:.1f} %",
        "spooled, not yet acknowledged, at the end": str(sent),
    }


def replay(work: Path, total: int) -> dict[str, str]:
    machines = 10
    spool_path = work / "replay.sqlite3"
    spool = Spool(spool_path, max_messages=max(total, 100) * 2)
    t_fill = time.monotonic()
    ts = protocol.now_ms()

    def build(i: int):
        def make(sid: str, seq: int) -> bytes:
            values = {"temp_nozzle_c": 210.0 + (i % 7) / 10, "power_w": 120.0, "progress_pct": i % 100}
            return protocol.encode(protocol.Telemetry(ts=ts + i, sid=sid, seq=seq, values=values))

        return make

    spool.append_many(
        (f"bench/m-{i % machines}", protocol.topic_telemetry("bench", f"m-{i % machines}"), build(i))
        for i in range(total)
    )
    fill_s = time.monotonic() - t_fill
    spool.close()

    broker = Mosquitto(work / "mq-replay")  # not started: the outage
    config = work / "replay.toml"
    # limit = 1: each counter adds one reading, so the spool holds total + about 10 (plus job events).
    write_config(config, broker, spool_path, machines=machines, interval_s=3600.0, limit=1)
    proc = start_bridge(config, work / "replay.log")
    try:
        time.sleep(3.0)
        backlog = pending(spool_path)
        broker.start()
        t0 = time.monotonic()
        sub = subprocess.Popen(
            [
                "mosquitto_sub",
                "-h",
                broker.host,
                "-p",
                str(broker.port),
                "-q",
                "1",
                "-C",
                str(backlog),
                "-t",
                protocol.filter_all_telemetry(),
                "-t",
                protocol.filter_all_events(),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        peak = 0.0
        c0 = cpu_seconds(proc.pid)
        while pending(spool_path) > 0:
            peak = max(peak, rss_mib(proc.pid))
            time.sleep(0.2)
            if time.monotonic() - t0 > 1800:
                raise SystemExit("replay did not finish in 30 minutes")
        t1 = time.monotonic()
        c1 = cpu_seconds(proc.pid)
        out, _ = sub.communicate(timeout=600)
        received = len(out.splitlines())
    finally:
        proc.terminate()
        proc.wait(60)
        broker.stop()
    return {
        "backlog": f"{backlog:,} messages (10 machines; filled in {fill_s:.1f} s)",
        "broker back → spool empty": f"{t1 - t0:.1f} s",
        "rate": f"{backlog / (t1 - t0):,.0f} messages/s",
        "bridge CPU during replay": f"{100.0 * (c1 - c0) / (t1 - t0):.0f} % of one core",
        "bridge peak RSS during replay": f"{peak:.1f} MiB",
        "received by a QoS 1 subscriber": f"{received:,}",
    }


def table(title: str, rows: dict[str, str]) -> str:
    lines = [f"### {title}", "", "| measure | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows.items()]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60.0, help="steady-state seconds (default 60)")
    parser.add_argument(
        "--replay", type=int, default=100_000, help="spool backlog to replay (default 100000)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-bridge-") as tmp:
        work = Path(tmp)
        print(
            f"## Firmware bridge — {time.strftime('%Y-%m-%d', time.gmtime())}, {os.cpu_count()} cores, "
            f"{platform.machine()}, Python {platform.python_version()}\n"
        )
        print(table("Ten simulated machines at 1 Hz", steady(work, args.duration)))
        print(
            table(
                f"Replay of a {args.replay:,}-message spool when the broker comes back",
                replay(work, args.replay),
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
