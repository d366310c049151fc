"""Hub ingest benchmark: a QoS 1 telemetry backlog drained into InfluxDB, acknowledged after the write.

For each configuration (1, 2, 3 hub worker processes on the shared subscription):

1. a fresh private Mosquitto and the hub workers' persistent sessions (each
   worker starts, subscribes, and stops with SIGTERM — it never unsubscribes),
   plus a plain paho subscriber's persistent session on the same telemetry;
2. N QoS 1 telemetry messages published (``mosquitto_pub -l``, one per machine)
   while every consumer is stopped: the broker queues them for each session;
3. the plain paho subscriber drains its copy (receives and auto-acks only,
   no parsing, no writing): the ceiling of one paho client here;
4. the hub workers (``manage.py run_hub --workers W``) drain theirs — decode,
   validate, batch, write to InfluxDB, then acknowledge — until InfluxDB holds
   N points; the count is checked exactly (distinct machine and ts).

Prints a markdown table. Usage: ``python scripts/bench_hub.py [--messages N] [--workers 1,2,3]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

MACHINES = 100
LAB = "bench-lab"
# A day ago in whole seconds: inside the hub's accepted window (MAX_AGE_MS) on any date.
T0 = (int(time.time()) - 86_400) * 1000


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


def plain_client_session(broker, client_id: str):
    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from firmware_bridge import protocol

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    props.ReceiveMaximum = 65535
    return client, props, protocol.filter_all_telemetry()


def plain_subscribe(broker) -> None:
    client, props, topic = plain_client_session(broker, "bench-plain")
    done = threading.Event()
    client.on_subscribe = lambda *a: done.set()
    client.connect("127.0.0.1", broker.port, clean_start=False, properties=props)
    client.loop_start()
    client.on_connect = None
    client.subscribe(topic, qos=1)
    done.wait(30)
    client.disconnect()
    client.loop_stop()


def plain_drain(broker, n: int) -> float:
    client, props, _topic = plain_client_session(broker, "bench-plain")
    count = [0]
    done = threading.Event()

    def on_message(c, u, m) -> None:
        count[0] += 1
        if count[0] >= n:
            done.set()

    client.on_message = on_message
    start = time.monotonic()
    client.connect("127.0.0.1", broker.port, clean_start=False, properties=props)
    client.loop_start()
    if not done.wait(600):
        raise SystemExit(f"plain subscriber received {count[0]} of {n}")
    elapsed = time.monotonic() - start
    client.disconnect()
    client.loop_stop()
    return elapsed


class Hubs:
    def __init__(self, workdir: Path, broker, influx, db_url: str, workers: int, batch: int) -> None:
        self.log_path = workdir / f"hub-w{workers}.log"
        self.workers = workers
        self.cmd = [
            sys.executable, str(REPO / "manage.py"), "run_hub", "--workers", str(workers),
            "--client-id", f"bench-w{workers}", "--batch-size", str(batch), "--stats-interval", "5",
            "--no-stats-to-influx",
        ]  # fmt: skip
        self.env = {
            **os.environ,
            "DATABASE_URL": db_url,
            "MQTT_URL": broker.url(),
            "INFLUX_URL": influx.url,
            "INFLUX_DATABASE": influx.database,
            "INFLUX_TOKEN": "",
            "REDIS_URL": "",
            "FABLAB_VAR_DIR": str(workdir / "var"),
            "LOG_LEVEL": "INFO",
        }
        self.proc: subprocess.Popen | None = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self, marker: str) -> None:
        before = self.log().count(marker)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.cmd, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 60
        while self.log().count(marker) < before + self.workers:
            if time.monotonic() > deadline:
                raise SystemExit(f"hub workers did not log {marker!r}:\n{self.log()[-3000:]}")
            time.sleep(0.01)

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(120)


def count_points(influx) -> int:
    return influx.count('SELECT count("power_w") FROM "telemetry"')


def run_config(workdir: Path, db_url: str, n: int, workers: int, batch: int) -> dict:
    from tests.support.influxdb import InfluxDB
    from tests.support.mosquitto import Mosquitto

    cfg_dir = workdir / f"w{workers}"
    broker = Mosquitto(cfg_dir / "mosquitto")
    broker.start()
    influx = InfluxDB(cfg_dir / "influxdb")
    influx.start()
    try:
        hubs = Hubs(cfg_dir, broker, influx, db_url, workers, batch)
        hubs.start("subscribed to")  # creates the persistent sessions
        hubs.stop()
        plain_subscribe(broker)
        publish_s = publish_backlog(broker, n)
        plain_s = plain_drain(broker, n)
        hubs.start("connected to")
        start = time.monotonic()
        deadline = start + 600
        while True:
            got = count_points(influx)
            if got >= n:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"InfluxDB holds {got} of {n} points:\n{hubs.log()[-3000:]}")
            time.sleep(0.1)
        hub_s = time.monotonic() - start
        hubs.stop()
        got = count_points(influx)
        distinct = sum(
            int(s["values"][0][1])
            for s in influx.query('SELECT count("power_w") FROM "telemetry" GROUP BY "machine"')
        )
        return {
            "workers": workers,
            "n": n,
            "publish_s": publish_s,
            "plain_rate": n / plain_s,
            "hub_rate": n / hub_s,
            "points": got,
            "distinct": distinct,
            "ok": got == n == distinct,
        }
    finally:
        broker.stop()
        influx.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--workers", default="1,2,3")
    parser.add_argument("--batch-size", type=int, default=5000)
    args = parser.parse_args()
    n = args.messages - args.messages % MACHINES
    with tempfile.TemporaryDirectory(prefix="bench-hub-") as tmp:
        workdir = Path(tmp)
        db_url = setup_django(workdir)
        rows = [run_config(workdir, db_url, n, int(w), args.batch_size) for w in args.workers.split(",")]
    print()
    print(
        f"## Hub ingest — {n:,} QoS 1 telemetry messages, {MACHINES} machines, {os.cpu_count()} cores ({platform.machine()})"
    )
    print()
    print(
        "| hub workers | plain paho subscriber (receive only), msg/s | hub → InfluxDB, ack after write, msg/s | points in InfluxDB | exactly N |"
    )
    print("|---:|---:|---:|---:|:---:|")
    for r in rows:
        print(
            f"| {r['workers']} | {r['plain_rate']:,.0f} | {r['hub_rate']:,.0f} | {r['points']:,} | "
            f"{'yes' if r['ok'] else 'NO'} |"
        )
    if not all(r["ok"] for r in rows):
        raise SystemExit("InfluxDB does not hold exactly one point per message")


if __name__ == "__main__":
    main()
