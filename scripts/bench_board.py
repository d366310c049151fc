#!/usr/bin/env python3
"""Live latency of the floor board (issue 4, point 8): MQTT → hub → Redis → WebSocket; prints a markdown table.

``--machines`` machines (default 200, then 20) each publish a status once a second
(QoS 1, retained, as bridges do) on a private Mosquitto. ``manage.py run_hub``
(a subprocess) applies each one and pushes it through a private Redis channel
layer to the site, served by uvicorn (another subprocess), where ``--viewers``
lab managers (default 20) watch the board over a WebSocket each. The latency of a
status is the time from just before its ``publish()`` to its frame reaching a
client (matched by machine and source ``ts``); the first ``--warmup`` seconds
are not counted. Everything runs on this one machine, so the figures include
the competition for its cores.

    .venv/bin/python scripts/bench_board.py [--machines 200,20] [--viewers 20] [--duration 60] [--append docs/benchmarks.md]

Each machine count runs in a process of its own; the second (20) shows the
path's own latency when the hub keeps up.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import platform
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from firmware_bridge import protocol  # noqa: E402
from tests.devices.board_fixtures import RedisServer  # noqa: E402
from tests.support.influxdb import InfluxDB  # noqa: E402
from tests.support.mosquitto import Mosquitto, free_port  # noqa: E402

LAB = "bench-lab"
BRIDGE = "bench-bridge"
MARK_BEGIN = "<!-- bench_board: begin -->"
MARK_END = "<!-- bench_board: end -->"


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench_board: timed out waiting for {what}")
        time.sleep(0.05)


def listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


def set_up_database(machines: int) -> str:
    """Migrate the scratch database, create the lab, its machines and a manager; return a session cookie."""
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client

    from devices.models import Bridge, MachineLink
    from fablab.labs.models import Lab, Machine, MachineType

    call_command("migrate", verbosity=0)
    lab = Lab.objects.create(slug=LAB, name="Bench lab", time_zone="Europe/Brussels")
    kind = MachineType.objects.create(slug="3d-printer", name="3D printer")
    bridge = Bridge.objects.create(slug=BRIDGE, lab=lab)
    for i in range(machines):
        machine = Machine.objects.create(
            lab=lab, slug=f"m-{i:03d}", name=f"Machine {i:03d}", machine_type=kind
        )
        # No telemetry in this benchmark: a long interval keeps the "silent" alerts out of the way.
        MachineLink.objects.create(
            machine=machine, bridge=bridge, adapter="octoprint", telemetry_interval_s=86400
        )
    user = get_user_model().objects.create_user("bench-manager", password=secrets.token_urlsafe(12))
    lab.managers.add(user)
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


def publish_statuses(port: int, machines: int, rate: float, seconds: float, out) -> None:
    """Publish one status per machine per second, evenly spread, for ``seconds``; send back when each went out.

    Runs in a process of its own, as a bridge does: in the viewers' process its MQTT thread
    would wait for the interpreter lock behind twenty sockets, and that wait would be counted
    as the board's latency. ``out`` (a pipe) gets ``[(machine, ts, perf_counter at publish)]``
    at the end; ``time.perf_counter`` is the system's monotonic clock, the same in every process.
    """
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-bridge", protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.on_socket_open = protocol.send_at_once  # as the bridge's transport does
    client.connect("127.0.0.1", port)
    client.loop_start()
    sent: list[tuple[str, int, float]] = []
    last_ts: dict[str, int] = {}
    step = 1.0 / (machines * rate)
    started = time.perf_counter()
    stop_at = started + seconds
    k = 0
    while True:
        due = started + k * step
        now = time.perf_counter()
        if due > now:
            time.sleep(due - now)
        if time.perf_counter() >= stop_at:
            break
        slug = f"m-{k % machines:03d}"
        ts = max(int(time.time() * 1000), last_ts.get(slug, 0) + 1)
        last_ts[slug] = ts
        status = protocol.Status(
            state=protocol.RUNNING,
            enabled=True,
            bridge=BRIDGE,
            adapter="octoprint",
            ts=ts,
            job=protocol.Job(
                id="job-1", name="bench.gcode", started_ts=ts - 1000, progress_pct=float(k % 100)
            ),
        )
        payload = protocol.encode(status)
        sent.append((slug, ts, time.perf_counter()))
        client.publish(protocol.topic_status(LAB, slug), payload, qos=1, retain=True)
        k += 1
    client.disconnect()
    client.loop_stop()
    out.send(sent)
    out.close()


async def watch(
    url: str, origin: str, cookie: str, received: list, stop: asyncio.Event, ready: asyncio.Event
) -> int:
    """One viewer: record each text frame with its arrival time; return the snapshots after the first.

    Frames are decoded after the run, so that the measuring client takes as
    little of the machine's CPU as it can while the server works.
    """
    from websockets.asyncio.client import connect

    raw_frames: list[tuple[str, float]] = []
    async with connect(url, origin=origin, additional_headers=[("Cookie", cookie)], max_size=2**24) as ws:
        first = json.loads(await ws.recv())
        assert first["type"] == "snapshot", first
        ready.set()
        while not stop.is_set():
            try:
                raw = await asyncio.wait_for(ws.recv(), timeout=0.5)
            except TimeoutError:
                continue
            raw_frames.append((raw, time.perf_counter()))
    snapshots = 0
    for raw, arrived in raw_frames:
        frame = json.loads(raw)
        if frame.get("type") == "machine":
            received.append((frame["machine"], frame["ts"], arrived))
        elif frame.get("type") == "snapshot":
            snapshots += 1  # a repair (a lost channel-layer message) or a change of rights
    return snapshots


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(p / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[index]


def run(args: argparse.Namespace) -> dict:
    work = Path(tempfile.mkdtemp(prefix="bench-board-"))
    # Configured as docs/deploy.md's fablab.conf: Nagle's algorithm off on the broker's sockets.
    broker = Mosquitto(work / "mosquitto", extra="set_tcp_nodelay true")
    influx = InfluxDB(work / "influxdb")
    redis = RedisServer(work / "redis")
    procs: list[subprocess.Popen] = []
    logs = []
    try:
        broker.start()
        influx.start()
        redis.start()
        web_port = free_port()
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "fablab.settings",
            "DATABASE_URL": f"sqlite:///{work / 'bench.sqlite3'}",
            "FABLAB_VAR_DIR": str(work / "var"),
            "MQTT_URL": broker.url(),
            "INFLUX_URL": influx.url,
            "INFLUX_DATABASE": influx.database,
            "INFLUX_TOKEN": "",
            "REDIS_URL": redis.url,
            "DEBUG": "false",
            "SECRET_KEY": secrets.token_urlsafe(40),
            "ALLOWED_HOSTS": "127.0.0.1",
            "SITE_URL": "http://127.0.0.1",
            "SECURE_SSL_REDIRECT": "false",
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
        os.environ.update(env)
        cookie = set_up_database(args.machines)

        def start(name: str, *argv: str) -> None:
            log = open(work / f"{name}.log", "wb")  # noqa: SIM115 - closed at the end
            logs.append(log)
            procs.append(subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT))

        start(
            "hub", sys.executable, "manage.py", "run_hub", "--client-id", "bench-hub",
            "--spool", str(work / "hub-spool.sqlite3"), "--stats-interval", "3600",
        )  # fmt: skip
        start(
            "web", sys.executable, "-m", "uvicorn", "fablab.asgi:application", "--host", "127.0.0.1",
            "--port", str(web_port), "--log-level", "warning", "--no-access-log",
        )  # fmt: skip
        wait_for(lambda: listening(web_port), 60, "uvicorn")
        # The hub is ready when its session exists on the broker: a retained status it applies says so.
        time.sleep(2.0)

        received: list[tuple[str, int, float]] = []
        total = args.warmup + args.duration
        origin = f"http://127.0.0.1:{web_port}"
        url = f"ws://127.0.0.1:{web_port}/ws/labs/{LAB}/"

        async def main() -> tuple[dict[tuple[str, int], float], int, float]:
            stop = asyncio.Event()
            readies = [asyncio.Event() for _ in range(args.viewers)]
            tasks = [
                asyncio.create_task(watch(url, origin, f"sessionid={cookie}", received, stop, ready))
                for ready in readies
            ]
            await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 60)
            context = multiprocessing.get_context("spawn")
            theirs, ours = context.Pipe()
            publisher = context.Process(
                target=publish_statuses,
                args=(broker.port, args.machines, args.rate, total, ours),
                daemon=True,
            )
            publisher.start()
            loop = asyncio.get_running_loop()
            # Blocks until the publisher is done (its last message: the times it sent).
            sent = await loop.run_in_executor(None, theirs.recv)
            publisher_cpu = cpu_seconds(publisher.pid)
            await loop.run_in_executor(None, publisher.join, 30)
            await asyncio.sleep(args.tail)
            stop.set()
            return {(m, ts): t for m, ts, t in sent}, sum(await asyncio.gather(*tasks)), publisher_cpu

        hub_pid, web_pid = procs[0].pid, procs[1].pid
        cpu_before = {pid: cpu_seconds(pid) for pid in (hub_pid, web_pid)}
        wall_before = time.monotonic()
        own_before = time.process_time()
        sent, repairs, publisher_cpu = asyncio.run(main())
        wall = time.monotonic() - wall_before
        own_cpu = (time.process_time() - own_before) / wall * 100
        publisher_cpu = publisher_cpu / wall * 100
        cpu = {pid: (cpu_seconds(pid) - cpu_before[pid]) / wall * 100 for pid in (hub_pid, web_pid)}
        first_counted = min(sent.values()) + args.warmup
        counted = {key: t for key, t in sent.items() if t >= first_counted}
        latencies = []
        for machine, ts, arrived in received:
            sent_at = counted.get((machine, ts))
            if sent_at is not None:
                latencies.append((arrived - sent_at) * 1000)
        latencies.sort()
        expected = len(counted) * args.viewers
        hub_log = (work / "hub.log").read_text(errors="replace")
        if not latencies:
            raise SystemExit(f"bench_board: no frame arrived\nhub log:\n{hub_log[-3000:]}")
        # The hub's pace over the whole run (warm-up included): frames out per second of publishing and catching up.
        matched = [arrived for machine, ts, arrived in received if (machine, ts) in sent]
        span = max(matched) - min(sent.values()) if matched else float("nan")
        return {
            "machines": args.machines,
            "offered": len(counted) / args.duration,
            "delivered": len(matched) / args.viewers / span if span else float("nan"),
            "published": len(counted),
            "received": len(latencies),
            "missing": expected - len(latencies),
            "p50": percentile(latencies, 50),
            "p90": percentile(latencies, 90),
            "p99": percentile(latencies, 99),
            "max": latencies[-1],
            "load": os.getloadavg()[0],
            "hub_cpu": cpu[hub_pid],
            "web_cpu": cpu[web_pid],
            "client_cpu": own_cpu,
            "publisher_cpu": publisher_cpu,
            "repairs": repairs,
            "viewers": args.viewers,
        }
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        for log in logs:
            log.close()
        redis.stop()
        influx.stop()
        broker.stop()


def append_section(path: Path, table: str) -> None:
    """Put this benchmark's section in ``path``: replace the previous one, else append it."""
    section = f"{MARK_BEGIN}\n{table}\n{MARK_END}\n"
    text = path.read_text() if path.exists() else "# Benchmarks\n\n"
    if MARK_BEGIN in text and MARK_END in text:
        before, rest = text.split(MARK_BEGIN, 1)
        after = rest.split(MARK_END, 1)[1].lstrip("\n")
        text = before + section + ("\n" + after if after else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def table(rows: list[dict], args: argparse.Namespace) -> str:
    lines = [
        f"### Live board latency: MQTT publish → hub → Redis → WebSocket frame ({time.strftime('%Y-%m-%d')})",
        "",
        f"Each machine publishes a status {args.rate:g}× a second for {args.duration:g} s (after {args.warmup:g} s "
        f"of warm-up, not counted); each of the viewers is a lab manager's WebSocket. Hub: `manage.py run_hub`; "
        f"web: uvicorn; private Mosquitto, Redis and InfluxDB; SQLite; all on this {os.cpu_count()}-core "
        f"{platform.machine()} machine, shared with whatever else runs (load average at the end in the last "
        "column). The broker is configured as docs/deploy.md says (`set_tcp_nodelay true`); the statuses are "
        "published from a process of their own, as a bridge does. Latency is from just before `publish()` to "
        "the frame's arrival in the client. CPU: share of one core used by the hub, the web process and the "
        "viewers' process (every viewer in one) during the run. Snapshots: fresh snapshots the viewers got "
        "after their first, i.e. repairs of a lost channel-layer message.",
        "",
        "| machines | viewers | statuses/s sent | statuses/s delivered | received / sent | p50 | p90 | p99 | max "
        "| hub CPU | web CPU | viewers' CPU | snapshots | load |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['machines']} | {r['viewers']} | {r['offered']:.0f} | {r['delivered']:.0f} | {r['received']:,} / "
            f"{r['published'] * args.viewers:,} | {r['p50']:.0f} ms | {r['p90']:.0f} ms | {r['p99']:.0f} ms | "
            f"{r['max']:.0f} ms | {r['hub_cpu']:.0f} % | {r['web_cpu']:.0f} % | {r['client_cpu']:.0f} % | "
            f"{r['repairs']} | {r['load']:.1f} |"
        )
    lines += [
        "",
        "When the hub applies statuses more slowly than they come, they queue (on the broker, for the hub's "
        "session) and the latency grows with the length of the run: then the delivered rate is the figure "
        "that matters. Command: `.venv/bin/python scripts/bench_board.py --machines "
        f"{','.join(str(r['machines']) for r in rows)} --viewers {args.viewers} --duration {args.duration:g}`.",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--machines", default="200,20", help="machine counts, one run each (default 200,20)")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, default=1.0, help="statuses per machine per second")
    parser.add_argument("--duration", type=float, default=60.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds not counted at the start")
    parser.add_argument("--tail", type=float, default=5.0, help="seconds to wait for the last frames")
    parser.add_argument(
        "--viewers", type=int, default=20, help="lab managers watching the board (default 20)"
    )
    parser.add_argument("--clients", dest="viewers", type=int, help=argparse.SUPPRESS)  # the old name
    parser.add_argument("--append", type=Path, help="also write the table into this markdown file")
    args = parser.parse_args()
    counts = [int(n) for n in str(args.machines).split(",") if n.strip()]
    if args.json:  # one run, in a process of its own (Django is set up once per process)
        args.machines = counts[0]
        print(json.dumps(run(args)))
        return 0
    rows = []
    for count in counts:
        argv = [sys.executable, __file__, "--json", "--machines", str(count), "--rate", str(args.rate)]
        argv += ["--duration", str(args.duration), "--warmup", str(args.warmup), "--tail", str(args.tail)]
        argv += ["--viewers", str(args.viewers)]
        out = subprocess.run(argv, check=True, capture_output=True, text=True, cwd=REPO)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    text = table(rows, args)
    print(text)
    if args.append:
        append_section(args.append, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
