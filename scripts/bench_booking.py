"""Booking benchmarks: how fast the service layer books and answers availability.

Run through `make bench`; prints a markdown table. Uses a throw-away database:
SQLite in a temporary file, or the PostgreSQL in DATABASE_URL (a database
`fablab_bench` is created there and dropped afterwards).
"""

from __future__ import annotations

import datetime as dt
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench.database import drop_database, setup_database


def main() -> None:
    engine, admin_url = setup_database("fablab_bench")
    try:
        _run(engine)
    finally:
        drop_database(admin_url, "fablab_bench")


def _run(engine: str) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fablab.settings")
    import logging

    import django

    django.setup()
    logging.disable(logging.CRITICAL)
    from django.core.management import call_command
    from django.test.utils import override_settings

    call_command("migrate", verbosity=0)
    from django.contrib.auth import get_user_model

    from fablab.booking.selectors import availability_for_machine, machine_week
    from fablab.booking.services import booking_create
    from fablab.labs.models import Lab, Machine, MachineType, OpeningHours

    lab = Lab.objects.create(slug="bench", name="Bench", time_zone="Europe/Brussels")
    for weekday in range(7):
        OpeningHours.objects.create(lab=lab, weekday=weekday, opens=dt.time(8), closes=dt.time(20))
    mtype = MachineType.objects.create(slug="3d-printer", name="3D printer")
    machines = [
        Machine.objects.create(lab=lab, slug=f"m{i}", name=f"M{i}", machine_type=mtype, max_days_ahead=365)
        for i in range(10)
    ]
    members = [get_user_model().objects.create(username=f"u{i}") for i in range(50)]
    tz = lab.tz
    first_day = (dt.datetime.now(tz) + dt.timedelta(days=1)).date()

    rows = []
    with override_settings(EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend"):
        durations = []
        n = 0
        for day in range(20):
            for machine in machines:
                for hour in range(8, 20, 2):
                    start = dt.datetime.combine(first_day + dt.timedelta(days=day), dt.time(hour), tzinfo=tz)
                    t0 = time.perf_counter()
                    booking_create(
                        machine=machine,
                        member=members[n % len(members)],
                        start=start,
                        end=start + dt.timedelta(hours=1, minutes=30),
                    )
                    durations.append(time.perf_counter() - t0)
                    n += 1
        rows.append(("booking_create, all rules, one at a time", len(durations), durations))
    machine = machines[0]
    avail = []
    for _ in range(200):
        t0 = time.perf_counter()
        availability_for_machine(
            machine=machine,
            start=dt.datetime.combine(first_day, dt.time(0), tzinfo=tz),
            end=dt.datetime.combine(first_day + dt.timedelta(days=7), dt.time(0), tzinfo=tz),
        )
        avail.append(time.perf_counter() - t0)
    rows.append(("availability, 7 days, 42 bookings", len(avail), avail))
    week = []
    monday = first_day - dt.timedelta(days=first_day.weekday())
    for _ in range(100):
        t0 = time.perf_counter()
        machine_week(machine=machine, monday=monday, member=members[0])
        week.append(time.perf_counter() - t0)
    rows.append(("week view data (machine_week)", len(week), week))

    print(f"\n### Booking service on {engine}\n")
    print("| operation | runs | per second | p50 ms | p99 ms |")
    print("|---|---:|---:|---:|---:|")
    for name, count, samples in rows:
        samples.sort()
        p50 = statistics.median(samples) * 1000
        p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))] * 1000
        print(f"| {name} | {count} | {count / sum(samples):,.0f} | {p50:.2f} | {p99:.2f} |")


if __name__ == "__main__":
    main()
