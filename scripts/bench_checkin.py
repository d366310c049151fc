#!/usr/bin/env python3
"""Bookings meet machines (issue 9, point 11): check-in → unlock latency, and the scheduler's pass; markdown tables.

1. **Check-in → ``enable`` acknowledged.** A private Mosquitto, InfluxDB and Redis; ``manage.py run_hub``
   (a subprocess); ``python -m firmware_bridge simulate`` (another) running the real bridge with
   ``--plugs`` simulated Tasmota plugs, each a laser with an interlock (booted disabled). This process
   plays the web: for each of ``--checkins`` check-ins (round robin over the plugs, one at a time, the
   first ``--warmup`` not counted) it books the machine and calls :func:`fablab.booking.lifecycle.check_in`,
   which writes the ``enable`` row and wakes the hub through Redis. Timed from just before the call:
   the call's return, ``enable`` on the broker and the bridge's ack on the broker (both seen by a
   subscriber of this process), and the ack recorded by the hub (the row's ``answered_at``). The bridge
   acks only once the plug has confirmed its relay. Between two check-ins of a machine its booking is
   cancelled and the interlock reconciled, so it is locked again (not timed).
2. **The scheduler's pass** (:meth:`devices.scheduler.Scheduler.run_pass`): ``--machines`` interlocked
   machines (default 200) with ``--bookings`` bookings in the day (default 5,000: slots of 30 min from
   07:30, back to back), written as the hub and earlier passes would have left them (past bookings
   completed or no-show, history of usage sessions, live statuses, interlock rows). The clock is moved
   with ``time_machine`` to each pass's moment, so the follow-ups (emails, re-attribution, the
   interlock after each booking change) run at that moment too. Timed: passes in the steady state
   (nothing to change), then the boundary where every machine's booking ends and the next starts
   (12:30: completions, overrunning jobs), the end of the grace (12:35: locks), the no-show deadline
   (12:45: releases).

SQLite in a temporary directory, or the PostgreSQL of ``DATABASE_URL`` (a database
``fablab_bench_checkin`` created there and dropped afterwards).

    .venv/bin/python scripts/bench_checkin.py [--plugs 10] [--checkins 100] [--machines 200] [--bookings 5000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from bench.database import drop_database, setup_database  # noqa: E402

from tests.devices.board_fixtures import RedisServer  # noqa: E402
from tests.support.influxdb import InfluxDB  # noqa: E402
from tests.support.mosquitto import Mosquitto  # noqa: E402

BENCH_DB = "fablab_bench_checkin"
LAB = "bench-lab"
BRIDGE = "bench-bridge"
WAIT_S = 60.0


def wait_for(predicate, what: str, timeout: float = WAIT_S, pause: float = 0.002):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise SystemExit(f"bench_checkin: timed out waiting for {what}")
        time.sleep(pause)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


# ------------------------------------------------------------------ part 1: check-in → enable acknowledged


class Watcher:
    """A subscriber of every command and ack: when each command id was first seen on the broker (wall clock)."""

    def __init__(self, broker: Mosquitto) -> None:
        import paho.mqtt.client as mqtt

        from firmware_bridge import protocol

        self.seen: dict[tuple[str, str], float] = {}
        #: The plugs' relay traffic: topic -> arrival times (wall clock).
        self.plug: dict[str, list[float]] = {}
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-watch-{uuid.uuid4().hex[:6]}",
            protocol=mqtt.MQTTv5,
        )  # fmt: skip
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.connect(broker.host, broker.port)
        self.client.subscribe(
            [
                (protocol.filter_all_cmds(), 1),
                (protocol.filter_all_cmd_acks(), 1),
                ("cmnd/+/POWER", 0),
                ("stat/+/POWER", 0),
            ]
        )
        self.client.loop_start()
        wait_for(self._subscribed.is_set, "the watcher's subscription")

    def _on_message(self, client, userdata, message) -> None:
        at = time.time()
        if not message.topic.startswith("fablab/"):
            with self._lock:
                self.plug.setdefault(message.topic, []).append(at)
            return
        kind = "ack" if message.topic.endswith("/ack") else "cmd"
        try:
            command_id = json.loads(message.payload)["id"]
        except (ValueError, KeyError, TypeError):
            return
        with self._lock:
            self.seen.setdefault((kind, str(command_id)), at)

    def when(self, kind: str, command_id) -> float | None:
        with self._lock:
            return self.seen.get((kind, str(command_id)))

    def plug_after(self, topic: str, since: float) -> float | None:
        """When ``topic`` (a plug's) was first seen at or after ``since``."""
        with self._lock:
            return next((t for t in self.plug.get(topic, []) if t >= since), None)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def write_bridge_config(path: Path, work: Path, plugs: int) -> None:
    lines = ["[bridge]", f'id = "{BRIDGE}"', f'spool = "{work / "bridge-spool.sqlite3"}"', "[mqtt]"]
    lines.append('url = "mqtt://127.0.0.1:1883"')  # replaced by --mqtt-url
    for i in range(plugs):
        lines += [
            "[[machines]]", f'lab = "{LAB}"', f'machine = "laser-{i}"', 'adapter = "tasmota"', "interlock = true",
            "[machines.options]", f'topic = "tasmota_bench{i:03d}"',
        ]  # fmt: skip
    path.write_text("\n".join(lines) + "\n")


#: The broker variants the check-in is measured on: Mosquitto's defaults (Nagle's algorithm on, as
#: docs/deploy.md configures it today), and with ``set_tcp_nodelay true``.
BROKERS = {"Mosquitto defaults": "", "set_tcp_nodelay true": "set_tcp_nodelay true"}


def check_in_latency(args: argparse.Namespace, work: Path, env: dict) -> dict[str, list[tuple]]:
    """For each broker variant of :data:`BROKERS`: a fresh broker, hub and bridge; the check-ins' timings."""
    from django.contrib.auth import get_user_model

    from devices.models import Bridge, MachineLink, MachineStatus
    from fablab.labs.models import Lab, Machine, MachineType

    lab = Lab.objects.create(slug=LAB, name="Bench lab", time_zone="Europe/Brussels")
    kind = MachineType.objects.create(slug="laser", name="Laser")
    bridge = Bridge.objects.create(slug=BRIDGE, lab=lab)
    machines = [
        Machine.objects.create(lab=lab, slug=f"laser-{i}", name=f"Laser {i}", machine_type=kind)
        for i in range(args.plugs)
    ]
    for m in machines:
        MachineLink.objects.create(machine=m, bridge=bridge, adapter="tasmota", interlock=True)
    member = get_user_model().objects.create(username="maker", email="maker@example.org")
    results = {}
    for label, extra in BROKERS.items():
        folder = work / f"run-{len(results)}"
        folder.mkdir()
        broker = Mosquitto(folder / "mosquitto", extra=extra)
        broker.start()
        try:
            results[label] = _check_ins(
                args, folder, broker, {**env, "MQTT_URL": broker.url()}, machines, member
            )
        finally:
            broker.stop()
            MachineStatus.objects.filter(machine__lab=lab).update(online=False, state="offline", enabled=None)
    # The scheduler's part must not see these machines.
    MachineLink.objects.filter(machine__lab=lab).update(interlock=False)
    return results


def _check_ins(args, work: Path, broker: Mosquitto, env: dict, machines: list, member) -> list[tuple]:
    from django.utils import timezone

    from devices import interlock
    from devices.models import Command, MachineStatus
    from fablab.booking import lifecycle
    from fablab.booking.models import Booking
    from firmware_bridge import protocol

    procs, logs = [], []

    def start(name: str, *argv: str) -> subprocess.Popen:
        log = open(work / f"{name}.log", "wb")  # noqa: SIM115 - closed at the end
        logs.append(log)
        proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        procs.append(proc)
        return proc

    watcher = Watcher(broker)
    try:
        start(
            "hub", sys.executable, "manage.py", "run_hub", "--client-id", "bench-hub",
            "--spool", str(work / "hub-spool.sqlite3"), "--stats-interval", "3600",
        )  # fmt: skip
        wait_for(
            lambda: "subscribed to" in (work / "hub.log").read_text(errors="replace"), "the hub", pause=0.1
        )
        config = work / "bridge.toml"
        write_bridge_config(config, work, args.plugs)
        (work / "control").mkdir()
        start(
            "bridge", sys.executable, "-m", "firmware_bridge", "simulate", "--config", str(config),
            "--mqtt-url", broker.url(), "--workdir", str(work / "sim"), "--no-octoprint",
            "--demo-control", str(work / "control"), "--start-disabled", "--log-level", "warning",
        )  # fmt: skip
        ids = [m.pk for m in machines]
        wait_for(
            lambda: MachineStatus.objects.filter(pk__in=ids, online=True, enabled=False).count() == len(ids),
            "every plug laser online and disabled",
            pause=0.1,
        )

        samples = []
        for n in range(args.warmup + args.checkins):
            machine = machines[n % len(machines)]
            now = timezone.now()
            booking = Booking.objects.create(
                machine=machine, member=member, start=now - dt.timedelta(minutes=10),
                end=now + dt.timedelta(hours=1), blocked_until=now + dt.timedelta(hours=1),
                status=Booking.Status.CONFIRMED,
            )  # fmt: skip
            t0 = time.time()
            lifecycle.check_in(booking=booking, by=member, via=Booking.CheckInVia.PAGE)
            returned = time.time()
            enable = Command.objects.filter(booking=booking, action=protocol.ENABLE).get()
            published = wait_for(lambda c=enable.pk: watcher.when("cmd", c), "enable on the broker")
            topic = f"tasmota_bench{n % len(machines):03d}"
            switched = wait_for(
                lambda t=topic, p=published: watcher.plug_after(f"cmnd/{t}/POWER", p), "the bridge's POWER ON"
            )
            confirmed = wait_for(
                lambda t=topic, p=switched: watcher.plug_after(f"stat/{t}/POWER", p),
                "the plug's confirmation",
            )
            acked = wait_for(lambda c=enable.pk: watcher.when("ack", c), "the bridge's ack")
            recorded = wait_for(
                lambda c=enable.pk: (
                    Command.objects.filter(pk=c, result=Command.Result.OK)
                    .values_list("answered_at", flat=True)
                    .first()
                ),
                "the hub to record the ack",
            ).timestamp()
            if n >= args.warmup:
                samples.append(
                    (returned - t0, published - t0, switched - t0, confirmed - t0, acked - t0, recorded - t0)
                )
            # Lock it again for its next turn, once it reports unlocked (untimed).
            wait_for(
                lambda m=machine.pk: MachineStatus.objects.filter(pk=m, enabled=True).exists(),
                "the machine to report enabled",
            )
            # Cancelled rather than moved: PostgreSQL's exclusion constraint keeps active bookings apart.
            Booking.objects.filter(pk=booking.pk).update(status=Booking.Status.CANCELLED)
            interlock.reconcile([machine.pk])
            disable = Command.objects.filter(machine=machine, action=protocol.DISABLE).order_by("-issued_at")[
                0
            ]
            wait_for(lambda c=disable.pk: watcher.when("ack", c), "the disable's ack")
            wait_for(
                lambda m=machine.pk: MachineStatus.objects.filter(pk=m, enabled=False).exists(),
                "the machine to report disabled",
            )
        return samples
    finally:
        watcher.close()
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


def print_check_in(engine: str, args: argparse.Namespace, results: dict[str, list[tuple]]) -> None:
    count = len(next(iter(results.values())))
    print(
        f"\n### Check-in → `enable` acknowledged ({engine}, {args.plugs} plug lasers, {count} check-ins"
        f" per broker after {args.warmup} not counted)\n"
    )
    print("p50 / p99 / max, from just before `check_in()` to each step, per broker configuration.\n")
    print("| step | " + " | ".join(results) + " |")
    print("|---|" + "---:|" * len(results))
    labels = (
        "`check_in()` returned (booking checked in, `enable` row written, hub woken)",
        "`enable` on the broker (the hub claimed and published it)",
        "the bridge's `cmnd/…/POWER ON` to the plug on the broker",
        "the plug's `stat/…/POWER ON` on the broker (relay switched)",
        "**the bridge's ack on the broker** (the plug confirmed its relay)",
        "the ack recorded by the hub (`Command.result` ok)",
    )
    for i, label in enumerate(labels):
        cells = []
        for samples in results.values():
            values = [s[i] * 1000 for s in samples]
            figures = (percentile(values, 50), percentile(values, 99), max(values))
            cells.append(" / ".join(f"{v:.0f}" for v in figures) + " ms")
        print(f"| {label} | " + " | ".join(cells) + " |")


# ------------------------------------------------------------------ part 2: the scheduler's pass


def scheduler_passes(args: argparse.Namespace) -> list[tuple[str, float, dict]]:
    import time_machine
    from django.contrib.auth import get_user_model

    from devices.models import (
        Bridge,
        Command,
        Interlock,
        MachineLink,
        MachineStatus,
        StateChange,
        UsageSession,
    )
    from devices.scheduler import Scheduler
    from fablab.booking.models import Booking
    from fablab.labs.models import Lab, Machine, MachineType

    day = dt.datetime(2030, 1, 7, tzinfo=dt.UTC)  # a Monday; times below are UTC

    def at(hour: int, minute: int = 0, second: int = 0) -> dt.datetime:
        return day + dt.timedelta(hours=hour, minutes=minute, seconds=second)

    lab = Lab.objects.create(slug="sched-lab", name="Scheduler lab", time_zone="UTC")
    kind = MachineType.objects.create(slug="printer", name="Printer")
    bridge = Bridge.objects.create(slug="sched-bridge", lab=lab)
    machines = Machine.objects.bulk_create(
        Machine(lab=lab, slug=f"m{i}", name=f"Machine {i}", machine_type=kind) for i in range(args.machines)
    )
    MachineLink.objects.bulk_create(
        MachineLink(machine=m, bridge=bridge, adapter="tasmota", interlock=True, telemetry_interval_s=10)
        for m in machines
    )
    members = get_user_model().objects.bulk_create(
        get_user_model()(username=f"s{i}", email=f"s{i}@example.org") for i in range(args.machines)
    )
    per_machine = max(args.bookings // args.machines, 1)
    first = at(7, 30)
    scene = at(12, 20)  # the moment the scene is written at: earlier passes have run
    current = at(12)  # the slot in progress then; the next starts at 12:30
    bookings, sessions = [], []
    for i, machine in enumerate(machines):
        for k in range(per_machine):
            start = first + dt.timedelta(minutes=30 * k)
            end = start + dt.timedelta(minutes=30)
            b = Booking(
                machine=machine, member=members[(i + k) % len(members)], start=start, end=end,
                blocked_until=end, status=Booking.Status.CONFIRMED,
            )  # fmt: skip
            absent = (i + k) % 10 == 0  # one booking in ten: nobody comes
            if start < current:
                if absent:
                    b.status, b.released_at = Booking.Status.NO_SHOW, start + dt.timedelta(minutes=15)
                else:
                    b.status, b.checked_in_at = Booking.Status.COMPLETED, start - dt.timedelta(minutes=3)
                    b.completed_at, b.used_minutes = end, 20.0
            elif start == current:
                if absent:
                    b.status, b.released_at = Booking.Status.NO_SHOW, start + dt.timedelta(minutes=15)
                else:
                    b.status, b.checked_in_at = Booking.Status.CHECKED_IN, start - dt.timedelta(minutes=3)
            elif start == current + dt.timedelta(minutes=30) and (i + k) % 4 != 0:
                # Three in four of the next slot's makers checked in early (the window opened at 12:15).
                b.status, b.checked_in_at = Booking.Status.CHECKED_IN, scene - dt.timedelta(minutes=2)
            bookings.append(b)
    Booking.objects.bulk_create(bookings, batch_size=1000)
    running = set()
    for b in Booking.objects.filter(machine__lab=lab).exclude(checked_in_at=None).filter(start__lte=current):
        started = b.start + dt.timedelta(minutes=2)
        if b.start < current:
            ended = started + dt.timedelta(minutes=20)
        else:
            ended = None
            running.add(b.machine_id)
        sessions.append(
            UsageSession(
                machine_id=b.machine_id, booking=b, started_at=started, ended_at=ended,
                outcome="finished" if ended else "running", energy_wh=150.0 if ended else None,
            )
        )  # fmt: skip
    UsageSession.objects.bulk_create(sessions, batch_size=1000)
    StateChange.objects.bulk_create(
        StateChange(machine=m, state="idle", previous_state="offline", at=at(6)) for m in machines
    )
    holding = set(
        Booking.objects.filter(machine__lab=lab, start=current, status=Booking.Status.CHECKED_IN).values_list(
            "machine_id", flat=True
        )
    )
    MachineStatus.objects.bulk_create(
        MachineStatus(
            machine=m, state="running" if m.pk in running else "idle", since=at(6), online=True,
            enabled=m.pk in holding, adapter="tasmota", last_reading_at=scene, status_ts=1,
        )
        for m in machines
    )  # fmt: skip
    Interlock.objects.bulk_create(
        Interlock(
            machine=m, wanted=m.pk in holding, wanted_since=current - dt.timedelta(minutes=3),
            reason="booking" if m.pk in holding else "idle",
        )
        for m in machines
    )  # fmt: skip

    scheduler = Scheduler()
    ids = [m.pk for m in machines]
    rows = []

    def obey(moment: dt.datetime) -> None:
        """What the hub and the bridges do between passes (untimed): commands carried out, statuses follow."""
        Command.objects.filter(machine_id__in=ids, result=Command.Result.SENT).update(
            state=Command.State.PUBLISHED, published_at=moment, result=Command.Result.OK, answered_at=moment
        )
        for wanted in (True, False):
            locks = Interlock.objects.filter(pk__in=ids, wanted=wanted).values("pk")
            MachineStatus.objects.filter(pk__in=locks).update(enabled=wanted)

    def timed(label: str, moment: dt.datetime) -> dict:
        # The hub keeps the readings fresh (untimed), so no machine is "silent".
        MachineStatus.objects.filter(pk__in=ids).update(last_reading_at=moment)
        with time_machine.travel(moment, tick=False):
            began = time.perf_counter()
            done = scheduler.run_pass(moment)
            elapsed = time.perf_counter() - began
        rows.append((label, elapsed, done))
        obey(moment)
        return done

    # Warm-up (caches, the machine index), not reported.
    with time_machine.travel(scene, tick=False):
        scheduler.run_pass(scene)
    obey(scene)
    steady = []
    for s in range(1, 6):
        timed(f"steady {s}", scene + dt.timedelta(seconds=10 * s))
        steady.append(rows.pop())
    # Most jobs of the 12:00 slot end before 12:30; one machine in ten still runs at the boundary.
    late = set(sorted(running)[::10])
    finished = sorted(running - late)
    UsageSession.objects.filter(machine_id__in=finished, ended_at=None).update(
        ended_at=at(12, 27), outcome="finished", energy_wh=140.0
    )
    MachineStatus.objects.filter(pk__in=finished).update(state="idle")
    timed("12:30:00 — every booking ends, the next ones start", at(12, 30))
    UsageSession.objects.filter(machine_id__in=late, ended_at=None).update(
        ended_at=at(12, 33), outcome="finished"
    )
    MachineStatus.objects.filter(pk__in=late).update(state="idle")
    timed("12:35:00 — the end grace is over", at(12, 35))
    timed("12:45:00 — the no-show deadline of the 12:30 bookings", at(12, 45))
    timed("12:45:10 — the pass after", at(12, 45, 10))
    median = statistics.median(s[1] for s in steady)
    slowest = max(steady, key=lambda s: s[1])
    return [
        (f"steady state (12:20, nothing to change), median of {len(steady)}", median, steady[0][2]),
        ("steady state, slowest of them", slowest[1], slowest[2]),
        *rows,
    ]


def print_scheduler(engine: str, args: argparse.Namespace, rows: list[tuple[str, float, dict]]) -> None:
    print(
        f"\n### One scheduler pass ({engine}, {args.machines} interlocked machines, "
        f"{args.bookings:,} bookings in the day)\n"
    )
    print(
        "What the pass did, by step: bookings made unavailable, no-shows, completions, interlock commands "
        "written, silent alerts, machines whose usage alerts changed.\n"
    )
    print("| pass | time | unavailable | no-show | completed | commands | silent | usage alerts |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    keys = ("unavailable", "no_show", "completed", "interlock", "silent", "attribution")
    for label, elapsed, done in rows:
        cells = " | ".join(str(done.get(k, "")) for k in keys)
        print(f"| {label} | {elapsed * 1000:,.0f} ms | {cells} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plugs", type=int, default=10)
    parser.add_argument("--checkins", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--machines", type=int, default=200)
    parser.add_argument("--bookings", type=int, default=5000)
    parser.add_argument("--skip-checkin", action="store_true", help="only the scheduler's pass")
    args = parser.parse_args()

    engine, admin_url = setup_database(BENCH_DB)
    work = Path(tempfile.mkdtemp(prefix="bench-checkin-"))
    influx, redis = InfluxDB(work / "influxdb"), RedisServer(work / "redis")
    servers = [] if args.skip_checkin else [influx, redis]
    try:
        for server in servers:
            server.start()
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "fablab.settings",
            "FABLAB_VAR_DIR": str(work / "var"),
            "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
            "LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
        }
        if servers:
            env.update(
                INFLUX_URL=influx.url, INFLUX_DATABASE=influx.database, INFLUX_TOKEN="",
                REDIS_URL=redis.url,
            )  # fmt: skip
        os.environ.update(env)
        import logging

        import django

        django.setup()
        logging.disable(logging.CRITICAL)
        from django.core.management import call_command
        from django.db import connection

        call_command("migrate", verbosity=0)
        print(
            f"\n## Bookings meet machines (`scripts/bench_checkin.py`, {engine}, "
            f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, {platform.machine()}, "
            f"load {os.getloadavg()[0]:.1f})"
        )
        if not args.skip_checkin:
            print_check_in(engine, args, check_in_latency(args, work, env))
        print_scheduler(engine, args, scheduler_passes(args))
        connection.close()
    finally:
        for server in reversed(servers):
            server.stop()
        drop_database(admin_url, BENCH_DB)


if __name__ == "__main__":
    main()
