"""``python manage.py run_scheduler``: the time-based transitions (see devices/scheduler.py).

Runs a pass every ``--interval`` seconds (default 5) until SIGTERM or SIGINT, or one pass with
``--once``. Any number may run side by side: every transition is claimed by a conditional UPDATE.
A pass that fails (the database is down) is logged and the next one tries again.
"""

from __future__ import annotations

import logging
import signal
import threading

from django.core.management.base import BaseCommand, CommandError

from devices.scheduler import Scheduler

log = logging.getLogger("devices.scheduler")


class Command(BaseCommand):
    help = "Run the scheduler: no-shows, completions, interlocks, silent machines, at every boundary."
    requires_system_checks: list[str] = []

    def add_arguments(self, parser) -> None:
        parser.add_argument("--once", action="store_true", help="run a single pass and exit")
        parser.add_argument("--interval", type=float, default=5.0, help="seconds between passes (default 5)")

    def handle(self, *args, **options) -> None:
        interval = options["interval"]
        if interval <= 0:
            raise CommandError("--interval must be positive")
        scheduler = Scheduler()
        if options["once"]:
            done = scheduler.run_pass()
            self.stdout.write(" ".join(f"{name}={count}" for name, count in done.items()))
            if any(count < 0 for count in done.values()):
                raise CommandError("a step of the pass failed (see the log)")
            return
        stopping = threading.Event()

        def stop(signum, frame) -> None:
            log.info("scheduler stopping (signal %s)", signum)
            stopping.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        log.info("scheduler started: a pass every %.1f s", interval)
        scheduler.run_forever(interval, stopping.is_set)
        log.info("scheduler stopped")
