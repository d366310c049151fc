"""``manage.py run_hub`` that kills itself with SIGKILL at one point of publishing a command: for tests only.

``python tests/devices/crashing_hub.py claim run_hub …``: dies right after its first claim that took
a row (before publishing it). ``… publish run_hub …``: dies once the broker acknowledged a command,
before the row is marked ``published``. The two crashes the at-least-once delivery must survive; the
hub's own code is not touched, only the two functions of :mod:`devices.command_publisher` wrapped.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fablab.settings")

import django

django.setup()

from django.core.management import execute_from_command_line  # noqa: E402

from devices import command_publisher  # noqa: E402


def die(why: str) -> None:
    print(f"crashing hub: {why}; SIGKILL", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    when, argv = sys.argv[1], sys.argv[2:]
    if when == "claim":
        original = command_publisher.claim

        def claim(*args, **kwargs):
            rows = original(*args, **kwargs)
            if rows:
                die(f"claimed {len(rows)} command(s)")
            return rows

        command_publisher.claim = claim
    elif when == "publish":

        def mark_published(command, *args, **kwargs):
            die(f"the broker acknowledged command {command.pk}")

        command_publisher.mark_published = mark_published
    else:
        raise SystemExit(f"unknown crash point {when!r}")
    execute_from_command_line(["manage.py", *argv])


if __name__ == "__main__":
    main()
