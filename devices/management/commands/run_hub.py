"""``python manage.py run_hub``: the MQTT hub (see devices/hub.py).

One process is one hub worker with a stable MQTT client id (its persistent
session). ``--workers N`` starts N worker processes that split telemetry and
events through the shared subscription, restarts any that dies, and passes
SIGTERM on (each worker flushes, acknowledges and disconnects without
unsubscribing). Every worker also publishes the Command rows the pages and the
API write (:mod:`devices.command_publisher`, a thread of its own); their claims
keep two workers from sending one row.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from devices.command_publisher import CLAIM_TIMEOUT_S
from devices.hub import Hub, spool_path_for
from devices.influx import InfluxError, InfluxStore
from devices.influx_spool import Spool
from devices.mqtt_client import default_client_id


class Command(BaseCommand):
    help = "Run the MQTT hub: telemetry to InfluxDB, live status, sessions and alerts to the database."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--client-id", help="MQTT client id (default: hub-<hostname>-<index>)")
        parser.add_argument("--index", type=int, default=0, help="worker index, for the default client id")
        parser.add_argument(
            "--workers", type=int, default=1, help="worker processes on the shared subscription"
        )
        parser.add_argument(
            "--group",
            default="hub",
            help="shared subscription group for telemetry and events; 'none' for plain subscriptions (one hub only)",
        )
        parser.add_argument("--batch-size", type=int, default=5000, help="lines per InfluxDB write")
        parser.add_argument(
            "--batch-interval", type=float, default=1.0, help="seconds before a partial batch is written"
        )
        parser.add_argument(
            "--receive-maximum", type=int, default=None, help="MQTT 5 Receive Maximum (unacked window)"
        )
        parser.add_argument(
            "--session-expiry", type=int, default=24 * 3600, help="MQTT session expiry, seconds"
        )
        parser.add_argument(
            "--stats-interval", type=float, default=60.0, help="seconds between stats log lines"
        )
        parser.add_argument("--spool", help="spool file (default: var/hub-spool/<client id>.sqlite3)")
        parser.add_argument(
            "--no-stats-to-influx", action="store_true", help="do not write the hub measurement"
        )
        parser.add_argument(
            "--command-claim-timeout",
            type=float,
            default=CLAIM_TIMEOUT_S,
            help="seconds after which a command claimed but not published (its hub died) is sent again",
        )

    def handle(self, *args, **options) -> None:
        if not settings.MQTT_URL:
            # With DEBUG off there is no development broker to fall back on (fablab/settings.py).
            raise CommandError("MQTT_URL must be set for the hub (mqtt://user:password@host:port)")
        if options["command_claim_timeout"] <= 0:
            raise CommandError("--command-claim-timeout must be positive")
        if options["workers"] > 1:
            if options["group"].lower() == "none":
                raise CommandError("--workers needs a shared subscription group (not --group none)")
            self._supervise(options)
            return
        client_id = options["client_id"] or default_client_id(options["index"])
        try:
            store = InfluxStore.from_settings()
        except ValueError as exc:
            raise CommandError(f"configuration error: {exc}") from None
        try:
            store.ensure_database()
        except InfluxError as exc:
            self.stderr.write(f"InfluxDB not reachable yet ({exc}); spooling until it is")
        spool = Spool(options["spool"] or spool_path_for(client_id))
        hub = Hub(
            mqtt_url=settings.MQTT_URL,
            store=store,
            spool=spool,
            client_id=client_id,
            group=None if options["group"].lower() == "none" else options["group"],
            batch_size=options["batch_size"],
            batch_interval=options["batch_interval"],
            receive_maximum=options["receive_maximum"],
            session_expiry_s=options["session_expiry"],
            stats_interval=options["stats_interval"],
            write_stats=not options["no_stats_to_influx"],
            command_claim_timeout_s=options["command_claim_timeout"],
        )

        def on_signal(signum, frame) -> None:
            hub.stop()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        hub.run()

    def _supervise(self, options: dict) -> None:
        base = options["client_id"]
        argv_common = [
            "--group", options["group"],
            "--batch-size", str(options["batch_size"]),
            "--batch-interval", str(options["batch_interval"]),
            "--session-expiry", str(options["session_expiry"]),
            "--stats-interval", str(options["stats_interval"]),
            "--command-claim-timeout", str(options["command_claim_timeout"]),
        ]  # fmt: skip
        if options["receive_maximum"]:
            argv_common += ["--receive-maximum", str(options["receive_maximum"])]
        if options["no_stats_to_influx"]:
            argv_common.append("--no-stats-to-influx")
        manage = str(Path(settings.BASE_DIR) / "manage.py")

        def argv(i: int) -> list[str]:
            cmd = [sys.executable, manage, "run_hub", "--index", str(options["index"] + i), *argv_common]
            if base:
                cmd += ["--client-id", f"{base}-{i}"]
            return cmd

        stopping = False

        def on_signal(signum, frame) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        procs = {i: subprocess.Popen(argv(i)) for i in range(options["workers"])}  # noqa: S603 - our own argv
        while not stopping:
            time.sleep(0.5)
            for i, proc in list(procs.items()):
                if proc.poll() is not None and not stopping:
                    self.stderr.write(f"hub worker {i} exited with {proc.returncode}; restarting")
                    time.sleep(1.0)
                    procs[i] = subprocess.Popen(argv(i))  # noqa: S603 - our own argv
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
