#!/usr/bin/env python3
"""Programme reports at scale (issue 12, point 9): the one-year network report; a markdown table.

Builds a throw-away database (SQLite in a temporary directory, or the PostgreSQL of ``DATABASE_URL``: a
database ``fablab_bench_reports`` made there and dropped afterwards) with ``--labs`` labs and
``--machines`` machines of four types, ``--members`` members (their pseudonyms), and a whole calendar
year of daily rollups written directly: one ``MachineDay`` per machine and day, and the ``MemberDay``
rows of about ``--bookings`` checked-in bookings plus training and workshop attendance (members keep to
a home lab and a few machines; 60 % declared some statistics). Rollups are what reports read (never
bookings or sessions), so this is the whole of a report's input.

Then times, each ``--runs`` times (median and 95th percentile):

* a snapshot build (what the scheduler does after the rollups change: the whole protected year of the
  scope, cut into slices), then ``service.report(admin, ...)`` for the year's network, a quarter's labs
  and a quarter's machines while that snapshot is current (what a request pays), and the network
  report with no snapshot at all (the cache cleared: the request builds it);
* its two parts separately: ``metrics.year_cells`` (the raw cells of every period and level of the
  year) and ``disclosure.protect`` (suppression of those cells).

    .venv/bin/python scripts/bench_reports.py [--labs 10] [--machines 200] [--members 2000] [--runs 7]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench.database import drop_database, setup_database

BENCH_DB = "fablab_bench_reports"
TYPES = ("3d-printer", "laser-cutter", "cnc", "other")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


def build(args, year: int) -> dict:
    """The scene: labs, machines, members, and the year's rollups, in bulk."""
    from django.contrib.auth import get_user_model

    from fablab.labs.models import Lab, Machine, MachineType
    from fablab.members.models import Programme, Training
    from fablab.reports.definitions import age_band
    from fablab.reports.models import MachineDay, MemberDay, Subject
    from fablab.trainings.models import Initiative

    rng = random.Random(12)
    User = get_user_model()
    labs = Lab.objects.bulk_create(Lab(slug=f"lab-{i}", name=f"Lab {i}") for i in range(args.labs))
    programme = Programme.objects.create(name="Bench programme")
    programme.labs.set(labs)
    initiatives = [
        Initiative.objects.create(programme=programme, slug=slug, name=slug) for slug in ("young", "women")
    ]
    types = {slug: MachineType.objects.create(slug=slug, name=slug) for slug in TYPES}
    trainings = {slug: Training.objects.create(slug=f"t-{slug}", name=slug) for slug in TYPES[:3]}
    machines = Machine.objects.bulk_create(
        Machine(
            lab=labs[i % args.labs],
            slug=f"m-{i}",
            name=f"Machine {i}",
            machine_type=types[TYPES[i % 4]],
            required_training=trainings.get(TYPES[i % 4]),
            bookable_around_the_clock=TYPES[i % 4] == "3d-printer",
        )
        for i in range(args.machines)
    )
    admin = User.objects.create_superuser("bench-admin", "admin@example.org", None)
    users = User.objects.bulk_create(User(username=f"member-{i}") for i in range(args.members))
    subjects = Subject.objects.bulk_create(Subject(member=u) for u in users)
    days = [
        dt.date(year, 1, 1) + dt.timedelta(days=n)
        for n in range((dt.date(year + 1, 1, 1) - dt.date(year, 1, 1)).days)
    ]
    # Machine days: open hours by lab, booked and used with a weekly pattern.
    rows = []
    for machine in machines:
        load = rng.uniform(0.15, 0.6)
        for day in days:
            around = machine.bookable_around_the_clock
            open_h = 24.0 if around else (0.0 if day.weekday() == 6 else 10.0)
            booked = round(open_h * load * rng.uniform(0.5, 1.3) * (1.3 if day.weekday() == 5 else 1), 2)
            booked = min(booked, open_h)
            used = round(booked * rng.uniform(0.5, 0.9), 2)
            by_hour = [0.0] * 24
            for h in range(10, 20):
                by_hour[h] = round(used / 10, 3)
            n = rng.randint(0, 6) if open_h else 0
            rows.append(
                MachineDay(
                    machine=machine, day=day, around_the_clock=around, open_h=open_h,
                    plan_down_h=0.5 if rng.random() < 0.02 else 0.0, unpl_down_h=0.3 if rng.random() < 0.03 else 0.0,
                    booked_h=booked, released_h=round(booked * 0.05, 2), used_h=used, busy_h=round(used * 0.8, 2),
                    realised_h=round(used * 0.9, 2), walk_in_h=round(used * 0.1, 2), overrun_h=0.1 if n > 4 else 0.0,
                    energy_kwh=round(used * 0.3, 2), energy_used_h=used, bookings_made=n, bookings_kept=max(n - 1, 0),
                    no_shows=1 if n > 3 else 0, late_cancels=1 if n > 5 else 0, jobs_with_outcome=n,
                    jobs_finished=max(n - 1, 0), used_by_hour=by_hour,
                )
            )  # fmt: skip
    MachineDay.objects.bulk_create(rows, batch_size=5000)
    # Member days: each member keeps to a home lab and a few of its machines, a few regulars book most.
    by_lab: dict[int, list] = {}
    for machine in machines:
        by_lab.setdefault(machine.lab_id, []).append(machine)
    people = []
    for subject in subjects:
        consent = rng.random() < 0.6
        birth = rng.randint(1950, 2011)
        people.append(
            (
                subject,
                rng.choice(labs),
                rng.lognormvariate(0, 1),
                rng.choice(("woman", "man", "man", "another", "")) if consent else "",
                age_band(birth, year) if consent else "",
                rng.choice(("individual", "student", "company", "association", "school-group", ""))
                if consent
                else "",
                [initiatives[0].pk] if consent and rng.random() < 0.1 else [],
            )
        )
    weights = [p[2] for p in people]
    seen: set = set()
    member_rows = []
    for _ in range(args.bookings):
        subject, lab, _w, gender, band, category, declared = rng.choices(people, weights=weights)[0]
        machine = rng.choice(by_lab[lab.pk])
        day = rng.choice(days)
        key = (subject.pk, machine.pk, day)
        if key in seen:
            continue
        seen.add(key)
        member_rows.append(
            MemberDay(
                subject=subject, lab=lab, machine=machine, day=day, kind=MemberDay.Kind.USE,
                initiative=initiatives[1] if rng.random() < 0.05 else None, used_h=round(rng.uniform(0.5, 4), 2),
                gender=gender, age_band=band, user_category=category, declared_initiatives=declared,
            )
        )  # fmt: skip
    for n in range(args.members):  # a training each, and some workshops
        subject, lab, _w, gender, band, category, declared = people[n]
        slug = rng.choice(TYPES[:3])
        member_rows.append(
            MemberDay(
                subject=subject, lab=lab, day=rng.choice(days), kind=MemberDay.Kind.TRAINING,
                training=trainings[slug], certified=rng.random() < 0.9, used_h=0.5,
                gender=gender, age_band=band, user_category=category, declared_initiatives=declared,
            )
        )  # fmt: skip
        if rng.random() < 0.3:
            member_rows.append(
                MemberDay(
                    subject=subject, lab=lab, day=rng.choice(days), kind=MemberDay.Kind.WORKSHOP,
                    initiative=initiatives[0], used_h=0.7,
                    gender=gender, age_band=band, user_category=category, declared_initiatives=declared,
                )
            )  # fmt: skip
    MemberDay.objects.bulk_create(member_rows, batch_size=5000)
    return {"admin": admin, "labs": labs, "machine_days": len(rows), "member_days": len(member_rows)}


def timed(runs: int, fn, before=None) -> list[float]:
    times = []
    for _ in range(runs):
        if before is not None:
            before()
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labs", type=int, default=10)
    parser.add_argument("--machines", type=int, default=200)
    parser.add_argument("--members", type=int, default=2000)
    parser.add_argument("--bookings", type=int, default=100_000, help="checked-in bookings in the year")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    engine, admin_url = setup_database(BENCH_DB)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fablab.settings")
    os.environ.pop("REDIS_URL", None)  # the process's own cache: cold and warm mean this process's
    import logging

    import django

    django.setup()
    logging.disable(logging.CRITICAL)
    try:
        from django.core.cache import cache
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        from fablab.reports import disclosure, metrics, service, snapshots

        year = dt.date.today().year - 1
        began = time.perf_counter()
        scene = build(args, year)
        built = time.perf_counter() - began
        today = dt.date(year + 1, 1, 15)
        admin, labs = scene["admin"], scene["labs"]
        report = service.report(admin, str(year), "network", today=today)  # warms the imports
        quarter = f"{year}-Q3"
        results = {
            "snapshot build (the scheduler's, after a rollup change; a request pays it only without one)": timed(
                args.runs, lambda: snapshots.build(year, labs, today=today, by="scheduler")
            ),
            f'`report(admin, "{year}", "network")`, snapshot current': timed(
                args.runs, lambda: service.report(admin, str(year), "network", today=today)
            ),
            f'`report(admin, "{quarter}", "lab")`, snapshot current': timed(
                args.runs, lambda: service.report(admin, quarter, "lab", today=today)
            ),
            f'`report(admin, "{quarter}", "machine")`, snapshot current': timed(
                args.runs, lambda: service.report(admin, quarter, "machine", today=today)
            ),
            f'`report(admin, "{year}", "network")`, no snapshot (cache cleared)': timed(
                args.runs, lambda: service.report(admin, str(year), "network", today=today), cache.clear
            ),
        }
        cells = metrics.year_cells(year, labs, today=today)
        results["`metrics.year_cells` (whole year, every level)"] = timed(
            args.runs, lambda: metrics.year_cells(year, labs, today=today)
        )
        results["`disclosure.protect` of those cells"] = timed(args.runs, lambda: disclosure.protect(cells))
        print(
            f"\n### Programme reports, {engine} (`scripts/bench_reports.py`)\n\n"
            f"{args.labs} labs, {args.machines} machines, {args.members} members; {year}: "
            f"{scene['machine_days']:,} machine days, {scene['member_days']:,} member days "
            f"(built in {built:.0f} s); {len(cells):,} raw cells, {len(report.cells):,} in the network year "
            f"report; {args.runs} runs each.\n"
        )
        print("| operation | median | p95 |\n|---|---:|---:|")
        for name, times in results.items():
            print(
                f"| {name} | {statistics.median(times) * 1000:,.0f} ms | {percentile(times, 95) * 1000:,.0f} ms |"
            )
    finally:
        from django.db import connections

        connections.close_all()
        drop_database(admin_url, BENCH_DB)


if __name__ == "__main__":
    main()
