"""``python manage.py run_hub``: the MQTT hub (see devices/hub.py).

One process is one hub worker with a stable MQTT client id (its persistent
session). ``--workers N`` forks N worker processes that split telemetry and
events through the shared subscription, forks again any that dies, and passes
SIGTERM on (each worker flushes, acknowledges and disconnects without
unsubscribing). Every worker also publishes the Command rows the pages and the
API write (:mod:`devices.command_publisher`, a thread of its own); their claims
keep two workers from sending one row.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
import traceback

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connections

from devices.command_publisher import CLAIM_TIMEOUT_S
from devices.hub import Hub, spool_path_for
from devices.influx import InfluxError, InfluxStore
from devices.influx_retention import configured_durations, ensure_retention
from devices.influx_spool import Spool
from devices.mqtt_client import default_client_id


class Command(BaseCommand):
    help = "Run the MQTT hub: telemetry to InfluxDB, live status, sessions and alerts to the database."
    # No system checks before the hub starts: they import the URL configuration (the API and its
    # schema views, which the hub never serves) and were a third of its start, about half a second.
    # `manage.py check`, `migrate` and the web server still run them.
    requires_system_checks: list[str] = []

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
        self._run_worker(options, options["index"], options["client_id"])

    def _run_worker(self, options: dict, index: int, client_id: str | None) -> None:
        """One hub worker in this process, until SIGTERM/SIGINT."""
        client_id = client_id or default_client_id(index)
        try:
            store = InfluxStore.from_settings()
        except ValueError as exc:
            raise CommandError(f"configuration error: {exc}") from None
        try:
            raw_s, hourly_s = configured_durations()
        except ValueError as exc:
            raise CommandError(f"configuration error: {exc}") from None
        try:
            store.ensure_database()
            ensure_retention(store, raw_s, hourly_s)  # devices/influx_retention.py
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
        """Fork the workers (and fork again any that dies); pass SIGTERM/SIGINT on, then wait.

        Forked, not started afresh: each worker inherits this process's interpreter with
        Django set up and the hub imported, and reaches the broker about a second sooner
        than a new ``manage.py`` would. Nothing here has threads or database connections
        to inherit (they are closed before each fork).
        """
        base = options["client_id"]
        stopping = False

        def on_signal(signum, frame) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

        def fork(i: int) -> int:
            connections.close_all()
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid:
                return pid
            # The worker: its own signal handlers (set by _run_worker); never back into the supervisor.
            code = 0
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                # Each worker its own spool (the default path, per client id), as before.
                worker_options = {**options, "spool": None}
                self._run_worker(worker_options, options["index"] + i, f"{base}-{i}" if base else None)
            except BaseException:
                traceback.print_exc()
                code = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)

        pids = {i: fork(i) for i in range(options["workers"])}
        while not stopping:
            time.sleep(0.5)
            for i, pid in list(pids.items()):
                done, status = os.waitpid(pid, os.WNOHANG)
                if done and not stopping:
                    self.stderr.write(
                        f"hub worker {i} exited with {os.waitstatus_to_exitcode(status)}; restarting"
                    )
                    time.sleep(1.0)
                    pids[i] = fork(i)
        for pid in pids.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 120
        for pid in pids.values():
            while True:
                try:
                    done, _status = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    break
                if done:
                    break
                if time.monotonic() > deadline:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    break
                time.sleep(0.05)
