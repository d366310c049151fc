"""Attribution benchmark: what attributing usage sessions to bookings costs per session.

Builds a throw-away SQLite database (or the PostgreSQL in DATABASE_URL, database
``fablab_bench_attribution``, dropped afterwards) with ``--machines`` machines, ``--bookings``
checked-in bookings spread over them and ``--sessions`` usage sessions (three in four inside a
booking, one in four a walk-in between bookings), then times, per session, what the hub does
(each in its own transaction, as the hub runs it):

* open: :func:`devices.attribution.booking_for_new_session`, the insert, the booking's recomputation;
* close: ``ended_at`` written, :func:`devices.attribution.session_closed`;
* re-attribute: :func:`devices.attribution.attribute_sessions` over each machine's whole history
  (a booking change or a replay; nothing moves, so this is the pure read-and-decide cost);
* recompute: :func:`devices.attribution.recompute_booking` of every booking, 500 at a time;

and one :func:`devices.attribution.scheduled_pass` with a session open on every machine.
Prints a markdown table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench.database import drop_database, setup_database


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--machines", type=int, default=200)
    parser.add_argument("--bookings", type=int, default=5000)
    parser.add_argument("--sessions", type=int, default=20000)
    args = parser.parse_args()
    engine, admin_url = setup_database("fablab_bench_attribution")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fablab.settings")
    import logging

    import django

    django.setup()
    logging.disable(logging.CRITICAL)
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction

    from devices import attribution
    from devices.models import Bridge, MachineLink, UsageSession
    from fablab.booking.models import Booking
    from fablab.labs.models import Lab, Machine, MachineType

    # The scene: bookings of 2 h every 4 h on each machine, all checked in at their start.
    lab = Lab.objects.create(slug="bench", name="Bench")
    kind = MachineType.objects.create(slug="printer", name="Printer")
    bridge = Bridge.objects.create(slug="bench-bridge", lab=lab)
    machines = Machine.objects.bulk_create(
        Machine(lab=lab, slug=f"m{i}", name=f"Machine {i}", machine_type=kind) for i in range(args.machines)
    )
    MachineLink.objects.bulk_create(
        MachineLink(machine=m, bridge=bridge, adapter="octoprint") for m in machines
    )
    members = get_user_model().objects.bulk_create(
        get_user_model()(username=f"maker{i}") for i in range(max(args.machines, 1))
    )
    t0 = dt.datetime(2026, 1, 5, 8, tzinfo=dt.UTC)
    per_machine = max(args.bookings // args.machines, 1)
    bookings = []
    for i, machine in enumerate(machines):
        for k in range(per_machine):
            start = t0 + dt.timedelta(hours=4 * k)
            bookings.append(
                Booking(
                    machine=machine,
                    member=members[(i + k) % len(members)],
                    start=start,
                    end=start + dt.timedelta(hours=2),
                    blocked_until=start + dt.timedelta(hours=2),
                    status=Booking.Status.CHECKED_IN,
                    checked_in_at=start,
                )
            )
    Booking.objects.bulk_create(bookings, batch_size=1000)
    # Sessions: per booking slot of 4 h, three of 30 min inside the booking and one walk-in after it.
    offsets = [(10, 40), (45, 75), (80, 110), (150, 180)]
    plan = []
    per_machine_sessions = max(args.sessions // args.machines, 1)
    for machine in machines:
        for n in range(per_machine_sessions):
            slot, (a, b) = divmod(n, len(offsets))[0], offsets[n % len(offsets)]
            base = t0 + dt.timedelta(hours=4 * slot)
            plan.append((machine.pk, base + dt.timedelta(minutes=a), base + dt.timedelta(minutes=b)))
    now = t0 + dt.timedelta(hours=4 * (per_machine_sessions // len(offsets) + 1))
    rows = []

    def timed(label: str, count: int, unit: str, work) -> None:
        started = time.perf_counter()
        work()
        elapsed = time.perf_counter() - started
        rows.append((label, count, elapsed, elapsed / count * 1e6, unit))

    def open_and_close(attributed: bool) -> dict[str, float]:
        """Each session opened then closed, as a machine runs one job after another; each phase timed.

        In transactions of 100 sessions, as the hub batches its messages; ``attributed`` False is the
        baseline (the same inserts and updates without attribution).
        """
        spent = {"open": 0.0, "close": 0.0}
        for first in range(0, len(plan), 100):
            with transaction.atomic():
                for machine_id, start, end in plan[first : first + 100]:
                    began = time.perf_counter()
                    booking_id = None
                    if attributed:
                        booking_id = attribution.booking_for_new_session(machine_id, start, now=now)
                    session = UsageSession.objects.create(
                        machine_id=machine_id,
                        started_at=start,
                        booking_id=booking_id,
                        walk_in=booking_id is None,
                    )
                    if attributed:
                        attribution.recompute_booking([booking_id], now=now)
                    middle = time.perf_counter()
                    session.ended_at = end
                    UsageSession.objects.filter(pk=session.pk, ended_at__isnull=True).update(ended_at=end)
                    if attributed:
                        attribution.session_closed(session)
                    spent["open"] += middle - began
                    spent["close"] += time.perf_counter() - middle
        return spent

    def sessions_phase() -> None:
        baseline = open_and_close(attributed=False)
        UsageSession.objects.all().delete()
        spent = open_and_close(attributed=True)
        for label, phase in (
            ("open: attribute + recompute the booking", "open"),
            ("close: attribute again + recompute the booking", "close"),
        ):
            extra = spent[phase] - baseline[phase]
            rows.append((label, len(plan), extra, extra / len(plan) * 1e6, "session"))

    def reattribute() -> None:
        for machine in machines:
            with transaction.atomic():
                attribution.attribute_sessions(machine.pk, t0 - dt.timedelta(days=1), now, now=now)

    booking_ids = list(Booking.objects.values_list("pk", flat=True))

    def recompute() -> None:
        for i in range(0, len(booking_ids), 500):
            with transaction.atomic():
                attribution.recompute_booking(booking_ids[i : i + 500], now=now)

    sessions_phase()
    timed("re-attribute each machine's history", len(plan), "session", reattribute)
    timed("recompute every booking, 500 per call", len(booking_ids), "booking", recompute)
    walk_ins = UsageSession.objects.filter(walk_in=True).count()
    # One session open on every machine, in a booking's overrun: the scheduler's pass.
    late = now + dt.timedelta(days=1)
    for machine in machines:
        UsageSession.objects.create(machine=machine, started_at=late - dt.timedelta(minutes=5))
    timed(
        "scheduled_pass, a session open on each machine", 1, "pass", lambda: attribution.scheduled_pass(late)
    )

    print(
        f"\n## Attribution ({engine}, {args.machines} machines, {len(booking_ids)} bookings, {len(plan)} sessions)\n"
    )
    print(
        f"{walk_ins} of the sessions are walk-ins. Open and close: the time attribution adds to the hub's "
        "own insert and update (measured without it), in transactions of 100 sessions.\n"
    )
    print("| operation | count | total (s) | µs per item |")
    print("|---|---:|---:|---:|")
    for label, count, elapsed, per_item, unit in rows:
        print(f"| {label} | {count} | {elapsed:.2f} | {per_item:,.0f} per {unit} |")
    connection.close()
    drop_database(admin_url, "fablab_bench_attribution")


if __name__ == "__main__":
    main()
