"""Hub ingest benchmark: a QoS 1 telemetry backlog drained into InfluxDB, side by side with Node-RED.

The run a new user would try: N QoS 1 telemetry messages queue on the broker while the
consumer is down, then the consumer starts and is timed from its process start until
InfluxDB holds all N points. For each consumer — the hub with 1 worker, the hub with 2
workers (``manage.py run_hub --workers W``), then the peer, Node-RED (pinned below, with
node-red-contrib-influxdb; flow and settings in ``scripts/bench/node-red/``) — one after
the other, each on its own fresh private Mosquitto and InfluxDB:

1. the consumer starts once, subscribes (MQTT 5, persistent session: clean start off,
   a fixed client id, Session Expiry one day) and stops with SIGTERM without
   unsubscribing, so the broker keeps its session; Node-RED's session is proven by a
   probe message reaching InfluxDB (then deleted);
2. N QoS 1 telemetry messages (100 machines, ``power_w`` and ``energy_wh``) are
   published with ``mosquitto_pub -l`` while the consumer is stopped;
3. the consumer process starts (``Popen``: the clock starts here) and InfluxDB is polled
   with ``SELECT count("power_w")`` (every 20 ms until the first point, then every
   50 ms): *first point* is the first poll that sees one, *all* the first that sees N;
4. InfluxDB must then hold exactly N points, one per (machine, ts): the run fails otherwise.

Columns: overall = N / all; once running = the points after the first poll that saw one,
divided by the time from that poll to the end. The hub acknowledges each message only
after its point is written; Node-RED's MQTT node (MQTT.js) acknowledges QoS 1 on receipt,
before its write — a weaker guarantee, but the comparison the project asked for.

Prints a markdown table. Usage:
``python scripts/bench_hub.py [--messages 50000] [--workers 1,2] [--peer node-red|none]
[--node-red-flows flows-batch.json]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

MACHINES = 100
LAB = "bench-lab"
# A day ago in whole seconds: inside the hub's accepted window (MAX_AGE_MS) on any date.
T0 = (int(time.time()) - 86_400) * 1000

#: The peer, pinned (verified with ``npm view``): Node-RED 4.1 (not the latest major) and the
#: InfluxDB nodes from npm. Installed under var/ (git-ignored) on the first run.
NODE_RED = "4.1.15"
NODE_RED_INFLUXDB = "0.7.0"
#: The peer's flows: the influxdb out node (one request per message), then joined batches.
NODE_RED_FLOWS = ("flows.json", "flows-batch.json")
#: A drain that adds no point for this long has failed (or lost messages).
STALL_S = 30.0
NODE_RED_PREFIX = REPO / "var" / "bench" / "node-red"
NODE_RED_FILES = REPO / "scripts" / "bench" / "node-red"


def setup_django(workdir: Path) -> str:
    url = f"sqlite:///{workdir / 'bench.sqlite3'}"
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fablab.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from devices.models import Bridge, MachineLink
    from fablab.labs.models import Lab, Machine, MachineType

    lab = Lab.objects.create(slug=LAB, name="Bench lab")
    mtype, _ = MachineType.objects.get_or_create(slug="power-plug", defaults={"name": "Power plug"})
    bridge = Bridge.objects.create(slug="bench-bridge", lab=lab)
    for i in range(MACHINES):
        m = Machine.objects.create(lab=lab, slug=f"m-{i}", name=f"Machine {i}", machine_type=mtype)
        MachineLink.objects.create(machine=m, bridge=bridge, adapter="tasmota", telemetry_interval_s=600)
    return url


def publish_backlog(broker, n: int) -> float:
    """Queue n QoS 1 messages, spread over the machines, with the C client (fast). Returns seconds."""
    from firmware_bridge import protocol

    per_machine = n // MACHINES
    sid = str(uuid.uuid4())
    start = time.monotonic()
    procs = []
    for i in range(MACHINES):
        lines = "\n".join(
            json.dumps(
                {
                    "v": 1,
                    "ts": T0 + seq,
                    "sid": sid,
                    "seq": seq,
                    "values": {"power_w": seq % 500, "energy_wh": seq / 100},
                },
                separators=(",", ":"),
            )
            for seq in range(per_machine)
        )
        proc = subprocess.Popen(
            ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port), "-V", "mqttv5", "-q", "1", "-l",
             "-i", f"bench-pub-{i}", "-t", protocol.topic_telemetry(LAB, f"m-{i}")],
            stdin=subprocess.PIPE,
        )  # fmt: skip
        procs.append((proc, lines))
        if len(procs) >= 8:
            for p, text in procs:
                p.communicate(text.encode() + b"\n")
            procs = []
    for p, text in procs:
        p.communicate(text.encode() + b"\n")
    return time.monotonic() - start


def count_points(influx) -> int:
    return influx.count('SELECT count("power_w") FROM "telemetry"')


class Consumer:
    """A consumer process (the hub's supervisor, or Node-RED) with its log file."""

    name = ""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir = workdir
        self.log_path = workdir / f"{self.slug}.log"
        self.env = env
        self.proc: subprocess.Popen | None = None

    @property
    def slug(self) -> str:
        return self.name.replace(" ", "-")

    def command(self) -> list[str]:
        raise NotImplementedError

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S") + f",{int(time.time() * 1000) % 1000:03d}"
            log.write(f"{stamp} bench: starting {self.name}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.command(), cwd=self.workdir, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )

    def wait_for(self, marker: str, count: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while self.log().count(marker) < count:
            if time.monotonic() > deadline or (self.proc is not None and self.proc.poll() is not None):
                raise SystemExit(f"{self.name} did not log {marker!r}:\n{self.log()[-3000:]}")
            time.sleep(0.02)

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(120)

    def make_session(self, broker, influx) -> None:
        """Start, subscribe on a persistent session, stop without unsubscribing."""
        raise NotImplementedError


class Hub(Consumer):
    def __init__(self, workdir: Path, broker, influx, db_url: str, workers: int, batch: int) -> None:
        self.workers = workers
        self.name = f"hub {workers} worker{'s' if workers > 1 else ''}"
        self.batch = batch
        super().__init__(
            workdir,
            {
                **os.environ,
                "DATABASE_URL": db_url,
                "MQTT_URL": broker.url(),
                "INFLUX_URL": influx.url,
                "INFLUX_DATABASE": influx.database,
                "INFLUX_TOKEN": "",
                "REDIS_URL": "",
                "FABLAB_VAR_DIR": str(workdir / "var"),
                "LOG_LEVEL": "INFO",
            },
        )

    def command(self) -> list[str]:
        return [
            sys.executable, str(REPO / "manage.py"), "run_hub", "--workers", str(self.workers),
            "--client-id", f"bench-w{self.workers}", "--batch-size", str(self.batch),
            "--stats-interval", "5", "--no-stats-to-influx",
        ]  # fmt: skip

    def make_session(self, broker, influx) -> None:
        before = self.log().count("subscribed to")
        self.start()
        self.wait_for("subscribed to", before + self.workers)
        self.stop()


class NodeRed(Consumer):
    def __init__(self, workdir: Path, broker, influx, flow: str = "flows.json") -> None:
        from tests.support.mosquitto import free_port

        self.name = "Node-RED, batches of 1,000" if "batch" in flow else "Node-RED"
        self.user_dir = workdir / "node-red-user"
        self.user_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy(NODE_RED_FILES / flow, self.user_dir / "flows.json")
        super().__init__(
            workdir,
            {
                **os.environ,
                "BENCH_MQTT_PORT": str(broker.port),
                "BENCH_INFLUX_PORT": str(influx.port),
                "BENCH_INFLUX_DB": influx.database,
                "BENCH_NODE_RED_PORT": str(free_port()),
                "NODE_ENV": "production",
            },
        )

    def command(self) -> list[str]:
        red = NODE_RED_PREFIX / "node_modules" / "node-red" / "red.js"
        return [
            "node", str(red), "--settings", str(NODE_RED_FILES / "settings.js"),
            "--userDir", str(self.user_dir), str(self.user_dir / "flows.json"),
        ]  # fmt: skip

    def make_session(self, broker, influx) -> None:
        from firmware_bridge import protocol

        self.start()
        self.wait_for("Connected to broker", 1)
        # The subscription is in place once a probe message reaches InfluxDB.
        probe = json.dumps({"v": 1, "ts": T0, "values": {"power_w": 1}})
        subprocess.run(
            ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port), "-V", "mqttv5", "-q", "1",
             "-t", protocol.topic_telemetry(LAB, "probe"), "-m", probe],
            check=True,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while count_points(influx) < 1:
            if time.monotonic() > deadline:
                raise SystemExit(f"Node-RED did not write the probe:\n{self.log()[-3000:]}")
            time.sleep(0.05)
        self.stop()
        influx.query('DROP MEASUREMENT "telemetry"')


def ensure_node_red() -> None:
    """Install the pinned Node-RED and InfluxDB nodes under var/bench/node-red (once)."""
    modules = NODE_RED_PREFIX / "node_modules"
    wanted = {"node-red": NODE_RED, "node-red-contrib-influxdb": NODE_RED_INFLUXDB}
    installed = {}
    for name in wanted:
        pkg = modules / name / "package.json"
        if pkg.exists():
            installed[name] = json.loads(pkg.read_text())["version"]
    if installed == wanted:
        return
    NODE_RED_PREFIX.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["npm", "install", "--prefix", str(NODE_RED_PREFIX), "--no-audit", "--no-fund", "--save-exact",
         *(f"{name}@{version}" for name, version in wanted.items())],
        check=True,
        stdout=sys.stderr,
    )  # fmt: skip


def drain(consumer: Consumer, influx, n: int) -> dict:
    """Start the consumer and poll InfluxDB until it holds n points; the clock starts at Popen."""
    start = time.monotonic()
    consumer.start()
    first_s = first_count = None
    last, last_change = 0, start
    while True:
        got = count_points(influx)
        now = time.monotonic()
        if got and first_s is None:
            first_s, first_count = now - start, got
        if got >= n:
            break
        if got != last:
            last, last_change = got, now
        # A consumer that acknowledged messages it then failed to write never gets there.
        if now - last_change > STALL_S or (consumer.proc is not None and consumer.proc.poll() is not None):
            consumer.stop()
            errors = sum(1 for line in consumer.log().splitlines() if "error" in line.lower())
            print(
                f"{consumer.name}: InfluxDB holds {got:,} of {n:,} points, none added for "
                f"{now - last_change:.0f} s; {errors:,} error lines in its log, the last:\n"
                + "\n".join(consumer.log().splitlines()[-5:]),
                file=sys.stderr,
            )
            return {
                "name": consumer.name,
                "first_s": first_s,
                "all_s": None,
                "overall": None,
                "running": None,
                "points": got,
                "ok": False,
            }
        time.sleep(0.05 if first_s is not None else 0.02)
    all_s = time.monotonic() - start
    consumer.stop()
    got = count_points(influx)
    distinct = sum(
        int(s["values"][0][1])
        for s in influx.query('SELECT count("power_w") FROM "telemetry" GROUP BY "machine"')
    )
    assert first_s is not None and first_count is not None
    consumer_ok = got == n == distinct
    running_s = all_s - first_s
    return {
        "name": consumer.name,
        "first_s": first_s,
        "all_s": all_s,
        "overall": n / all_s,
        "running": (n - first_count) / running_s if running_s > 0 else float("nan"),
        "points": got,
        "ok": consumer_ok,
    }


def run_config(workdir: Path, make, n: int) -> dict:
    """A fresh broker and InfluxDB; the consumer's session; the backlog; the timed drain."""
    from tests.support.influxdb import InfluxDB
    from tests.support.mosquitto import Mosquitto

    workdir.mkdir(parents=True, exist_ok=True)
    broker = Mosquitto(workdir / "mosquitto")
    broker.start()
    influx = InfluxDB(workdir / "influxdb")
    influx.start()
    try:
        consumer = make(workdir, broker, influx)
        consumer.make_session(broker, influx)
        publish_backlog(broker, n)
        time.sleep(1.0)  # let the publishers' load settle before the clock starts
        return drain(consumer, influx, n)
    finally:
        broker.stop()
        influx.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--peer", choices=["node-red", "none"], default="node-red")
    parser.add_argument(
        "--node-red-flows",
        default=",".join(NODE_RED_FLOWS),
        help=f"the peer's flows to run, comma-separated (default: {','.join(NODE_RED_FLOWS)})",
    )
    parser.add_argument("--keep", help="work in this (new) directory and keep it: logs, databases")
    args = parser.parse_args()
    n = args.messages - args.messages % MACHINES
    if args.peer == "node-red":
        ensure_node_red()
    rows = []
    with contextlib.ExitStack() as stack:
        if args.keep:
            workdir = Path(args.keep)
            workdir.mkdir(parents=True)
        else:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-hub-")))
        db_url = setup_django(workdir)
        for w in (int(x) for x in args.workers.split(",") if x):

            def make_hub(d, broker, influx, w=w):
                return Hub(d, broker, influx, db_url, w, args.batch_size)

            rows.append(run_config(workdir / f"hub-w{w}", make_hub, n))
        if args.peer == "node-red":
            for flow in (f for f in args.node_red_flows.split(",") if f):
                if flow not in NODE_RED_FLOWS:
                    parser.error(f"--node-red-flows: {flow!r} is not one of {', '.join(NODE_RED_FLOWS)}")

                def make_peer(d, broker, influx, flow=flow):
                    return NodeRed(d, broker, influx, flow)

                rows.append(run_config(workdir / flow.removesuffix(".json"), make_peer, n))
    # The reference: the fastest Node-RED flow that wrote every message.
    peers = [r for r in rows if r["name"].startswith("Node-RED") and r["ok"]]
    peer = max(peers, key=lambda r: r["overall"]) if peers else None
    load = os.getloadavg()[0]
    print()
    print(
        f"## Hub ingest vs Node-RED — {n:,} QoS 1 telemetry messages queued while the consumer was down, "
        f"{MACHINES} machines, {os.cpu_count()} cores ({platform.machine()}), load {load:.1f} at the end"
    )
    print()
    print(
        "| consumer | first point after start | all in InfluxDB after start | overall msg/s | "
        "once running msg/s | overall vs Node-RED | points | exactly N |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|:---:|")
    for r in rows:
        if not r["ok"]:
            first = f"{r['first_s']:.2f} s" if r["first_s"] is not None else "–"
            print(f"| {r['name']} | {first} | never: stalled | – | – | – | {r['points']:,} | NO |")
            continue
        ratio = f"{r['overall'] / peer['overall']:.2f}×" if peer else "–"
        print(
            f"| {r['name']} | {r['first_s']:.2f} s | {r['all_s']:.2f} s | {r['overall']:,.0f} | "
            f"{r['running']:,.0f} | {ratio} | {r['points']:,} | yes |"
        )
    if not all(r["ok"] for r in rows if r["name"].startswith("hub")):
        raise SystemExit("InfluxDB does not hold exactly one point per message the hub received")


if __name__ == "__main__":
    main()
