"""``manage.py run_demo_makers``: the demo's simulated makers, a pass every few seconds until stopped.

See :mod:`fablab.demo.actors` for what they do. ``make run`` starts it (scripts/run_demo.py) with
the control directory its simulated bridges watch. Emails the demo causes go nowhere.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import close_old_connections
from django.test.utils import override_settings
from django.utils import timezone

from fablab.demo.actors import Makers


class Command(BaseCommand):
    help = "Play the demo's makers: check in, start jobs, now and then a no-show or a walk-in."

    def add_arguments(self, parser):
        parser.add_argument(
            "--control-dir",
            default=str(Path(settings.BASE_DIR) / "var" / "demo" / "control"),
            help="where the simulated machines look for job requests (simulate --demo-control)",
        )
        parser.add_argument("--every", type=float, default=5.0, help="seconds between passes")
        parser.add_argument("--seed", type=int, help="seed of the walk-ins and job lengths (default: random)")
        parser.add_argument("--passes", type=int, help="stop after this many passes (default: never)")

    def handle(self, *args, **options):
        every = max(0.5, options["every"])
        makers = Makers(
            control=Path(options["control_dir"]),
            rng=random.Random(options["seed"]),
            pass_s=every,
        )
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        self.stdout.write(f"demo makers: a pass every {every:g} s; job requests in {makers.control}")
        done = 0
        while not stop.is_set():
            started = time.monotonic()
            close_old_connections()
            try:
                with override_settings(EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend"):
                    for line in makers.run_pass(timezone.now()):
                        self.stdout.write(f"{timezone.localtime():%H:%M:%S} {line}")
            except Exception as exc:  # the demo goes on whatever one pass hit
                self.stderr.write(f"demo makers: pass failed: {exc!r}")
            done += 1
            if options["passes"] is not None and done >= options["passes"]:
                break
            stop.wait(max(0.0, every - (time.monotonic() - started)))
