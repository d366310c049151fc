"""Bookings meet machines, with the real parts: Mosquitto, the hub, the bridge, a simulated Tasmota plug, the scheduler.

The laser behind the plug is "running" while it draws power (the plug adapter's busy detector), so a
test runs a job by setting the simulator's load. Bookings are placed relative to the real clock (the
bridge, the plug and the hub stamp their messages with it); the scheduler's pass is given its ``now``.

* the whole chain: check-in → the hub publishes ``enable`` → the bridge switches the relay and acks →
  a job runs → the hub opens a session attributed to the booking → the job ends: the booking's
  minutes, energy and outcome are the session's → after the end plus the grace the scheduler's pass
  completes the booking and sends ``disable`` → the bridge acks and the relay is off;
* no check-in: the relay stays off (a job draws nothing, no session), and the pass at start + grace,
  not a second before, makes the booking a no-show that no longer holds the machine;
* a walk-in: a job on a machine without a booking whose ``walk_ins_allowed`` is false is a walk-in
  session, and the scheduler's pass raises the ``unbooked`` alert; it is cleared once the job ends.

Every wait is for an outcome (generous timeouts); no timing is asserted. Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.utils import timezone

from devices.models import Alert, Command, MachineLink, MachineStatus, UsageSession
from devices.scheduler import Scheduler
from fablab.booking import lifecycle
from fablab.booking.models import Booking
from fablab.labs.models import Lab, Machine
from firmware_bridge import protocol
from firmware_bridge.bridge import Bridge
from firmware_bridge.config import load
from firmware_bridge.simulators.plug import PlugSimulator
from tests.devices.conftest import WAIT_S, hub_thread, make_machine, wait_until
from tests.factories import BookingFactory, LabFactory
from tests.firmware_bridge.conftest import write_config

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

LAB, BRIDGE = "chain-lab", "chain-bridge"
#: Busy above 100 W for half a second, idle below 50 W for a second: jobs of a few seconds.
THRESHOLDS = {"on_w": 100, "off_w": 50, "on_s": 0.5, "off_s": 1.0, "confirm_timeout_s": 20}
CUTTING_W = 900.0


@contextlib.contextmanager
def plug(broker, topic: str) -> Iterator[PlugSimulator]:
    """A Tasmota plug whose load the test sets; 0.5 s telemetry, energy to the hundredth of a Wh."""
    sim = PlugSimulator(
        "tasmota", topic, broker.url(), profile="manual", tele_period_s=0.5, energy_res=5, relay_on=True
    )
    sim.start()
    try:
        yield sim
    finally:
        sim.stop()


@contextlib.contextmanager
def bridge(folder: Path, broker, machines: dict[str, tuple[str, bool]]) -> Iterator[Bridge]:
    """The real bridge serving ``{machine slug: (plug topic, interlock)}``; its spool lives in ``folder``."""
    folder.mkdir(parents=True)
    config = [
        {
            "lab": LAB,
            "machine": slug,
            "adapter": "tasmota",
            "interlock": interlock,
            "options": {"topic": topic, **THRESHOLDS},
        }
        for slug, (topic, interlock) in machines.items()
    ]
    running = Bridge(load(write_config(folder / "bridge.toml", broker, config, bridge_id=BRIDGE)))
    running.start()
    try:
        assert running.transport.wait_connected(WAIT_S)
        yield running
    finally:
        running.stop()


def laser(slug: str, *, interlock: bool, **fields) -> Machine:
    """A laser of the lab behind a Tasmota plug, linked to the bridge, with ``fields`` set."""
    lab = Lab.objects.filter(slug=LAB).first() or LabFactory(slug=LAB)
    machine = make_machine(lab, slug=slug, bridge=BRIDGE, adapter="tasmota", interval=1)
    MachineLink.objects.filter(machine=machine).update(interlock=interlock)
    for name, value in fields.items():
        setattr(machine, name, value)
    machine.save()
    return machine


def reported(machine: Machine, *, state: str | None = None, enabled: bool | None = None):
    """A condition: the machine's live status is online with this state and/or ``enabled``."""

    def check() -> bool:
        s = MachineStatus.objects.filter(pk=machine.pk).first()
        return (
            s is not None
            and s.online
            and (state is None or s.state == state)
            and (enabled is None or s.enabled is enabled)
        )

    return check


def acked(command: Command):
    return lambda: Command.objects.get(pk=command.pk).result == Command.Result.OK


def session_of(machine: Machine, *, ended: bool) -> UsageSession | None:
    return (
        UsageSession.objects.filter(machine=machine, ended_at__isnull=not ended)
        .order_by("-started_at")
        .first()
    )


def open_unbooked(machine: Machine) -> bool:
    return Alert.objects.filter(
        machine=machine, kind=Alert.Kind.UNBOOKED_USE, cleared_at__isnull=True
    ).exists()


def test_check_in_unlocks_the_job_is_attributed_and_the_end_locks(broker, influx, tmp_path):
    machine = laser("epilog", interlock=True, end_grace_minutes=1, walk_ins_allowed=False)
    now = timezone.now()
    booking = BookingFactory(
        machine=machine, start=now - dt.timedelta(minutes=1), end=now + dt.timedelta(hours=1)
    )

    with (
        hub_thread(broker, influx, tmp_path),
        plug(broker, "tasmota_C4A1") as sim,
        bridge(tmp_path / "bridge", broker, {"epilog": ("tasmota_C4A1", True)}),
    ):
        # An interlocked machine boots disabled: the relay is off, a job draws nothing.
        wait_until(reported(machine, state=protocol.IDLE, enabled=False), what="the laser idle and disabled")
        wait_until(lambda: not sim.relay_on, what="the relay off")

        # Check-in: the server writes enable, the hub publishes it, the bridge switches and acks.
        lifecycle.check_in(booking=booking, by=booking.member, via=Booking.CheckInVia.PAGE)
        enable = Command.objects.get(machine=machine, action=protocol.ENABLE)
        assert enable.booking_id == booking.pk
        wait_until(acked(enable), what="the bridge's ok for enable")
        wait_until(lambda: sim.relay_on, what="the relay on")
        wait_until(reported(machine, enabled=True), what="status.enabled true")

        # A job: the laser draws power, the bridge reports it running, the hub opens a session.
        sim.set_load(CUTTING_W)
        wait_until(reported(machine, state=protocol.RUNNING), what="the laser running")
        session = wait_until(lambda: session_of(machine, ended=False), what="the hub to open a session")
        assert (session.booking_id, session.walk_in) == (booking.pk, False)
        wait_until(
            lambda: Booking.objects.get(pk=booking.pk).job_outcome == UsageSession.Outcome.RUNNING,
            what="the booking to show its job running",
        )
        wait_until(
            lambda: (UsageSession.objects.get(pk=session.pk).energy_wh or 0) > 0.1,
            what="the session's energy from the plug's counter",
        )
        # An attributed job on a machine that forbids walk-ins is not unbooked use.
        Scheduler().run_pass()
        assert not open_unbooked(machine)

        # The job ends: the session closes and the booking's usage is the session's.
        sim.set_load(0)
        closed = wait_until(lambda: session_of(machine, ended=True), what="the hub to close the session")
        assert closed.pk == session.pk and closed.booking_id == booking.pk
        wait_until(
            lambda: UsageSession.objects.get(pk=session.pk).outcome == UsageSession.Outcome.FINISHED,
            what="job_finished to reach the session",
        )
        wait_until(
            lambda: Booking.objects.get(pk=booking.pk).job_outcome == UsageSession.Outcome.FINISHED,
            what="the booking's outcome",
        )
        closed = UsageSession.objects.get(pk=session.pk)
        done = Booking.objects.get(pk=booking.pk)
        minutes = (closed.ended_at - closed.started_at).total_seconds() / 60
        assert done.used_minutes == pytest.approx(minutes, abs=0.01) and done.used_minutes > 0
        assert done.overrun_minutes == 0
        assert closed.energy_wh and done.energy_wh == pytest.approx(closed.energy_wh, abs=1e-3)
        assert not UsageSession.objects.filter(machine=machine, walk_in=True).exists()

        # The booking ends (moved to a grace and a second ago): the pass completes it and locks the laser.
        end = timezone.now() - dt.timedelta(minutes=1, seconds=1)
        Booking.objects.filter(pk=booking.pk).update(end=end, blocked_until=end)
        before = set(Command.objects.values_list("pk", flat=True))
        Scheduler().run_pass()
        assert Booking.objects.get(pk=booking.pk).status == Booking.Status.COMPLETED
        disable = Command.objects.exclude(pk__in=before).get(machine=machine)
        assert disable.action == protocol.DISABLE
        wait_until(acked(disable), what="the bridge's ok for disable")
        wait_until(lambda: not sim.relay_on, what="the relay off at the end")
        wait_until(reported(machine, enabled=False), what="status.enabled false")
        # A second pass changes nothing: no second disable.
        Scheduler().run_pass()
        assert Command.objects.exclude(pk__in=before).filter(machine=machine).count() == 1


def test_without_check_in_the_laser_stays_locked_and_the_booking_is_a_no_show_at_the_deadline(
    broker, influx, tmp_path
):
    machine = laser("trotec", interlock=True, no_show_grace_minutes=15)

    with (
        hub_thread(broker, influx, tmp_path),
        plug(broker, "tasmota_D5B2") as sim,
        bridge(tmp_path / "bridge", broker, {"trotec": ("tasmota_D5B2", True)}),
    ):
        wait_until(reported(machine, state=protocol.IDLE, enabled=False), what="the laser idle and disabled")
        wait_until(lambda: not sim.relay_on, what="the relay off")
        # Booked from now, with the laser reporting idle (a machine silent at the start would make the
        # booking unavailable, never a no-show); the passes are given their ``now`` up to the deadline.
        start = timezone.now()
        booking = BookingFactory(machine=machine, start=start, end=start + dt.timedelta(hours=1))
        # The member tries to cut without checking in: the relay cuts the load, nothing runs.
        sim.set_load(CUTTING_W)
        assert sim.power_w == 0

        deadline = lifecycle.no_show_deadline(booking)
        assert deadline == start + dt.timedelta(minutes=15)
        Scheduler().run_pass(deadline - dt.timedelta(seconds=1))
        assert Booking.objects.get(pk=booking.pk).status == Booking.Status.CONFIRMED
        Scheduler().run_pass(deadline)
        released = Booking.objects.get(pk=booking.pk)
        assert released.status == Booking.Status.NO_SHOW and released.released_at == deadline
        assert released.status not in Booking.ACTIVE  # the slot holds the machine no more
        assert (released.start, released.end) == (start, start + dt.timedelta(hours=1))

        # The laser was never unlocked, and a pass after the deadline keeps it so.
        Scheduler().run_pass(deadline + dt.timedelta(minutes=1))
        assert not Command.objects.filter(machine=machine, action=protocol.ENABLE).exists()
        assert reported(machine, state=protocol.IDLE, enabled=False)()
        assert not sim.relay_on and not UsageSession.objects.filter(machine=machine).exists()


def test_a_walk_in_on_a_machine_that_forbids_them_raises_unbooked_use_until_the_job_ends(
    broker, influx, tmp_path
):
    machine = laser("speedy", interlock=False, walk_ins_allowed=False)
    allowed = laser("fusion", interlock=False, walk_ins_allowed=True)

    with (
        hub_thread(broker, influx, tmp_path),
        plug(broker, "tasmota_E6C3") as sim,
        plug(broker, "tasmota_F7D4") as other,
        bridge(
            tmp_path / "bridge",
            broker,
            {"speedy": ("tasmota_E6C3", False), "fusion": ("tasmota_F7D4", False)},
        ),
    ):
        for m in (machine, allowed):
            wait_until(reported(m, state=protocol.IDLE), what=f"{m.slug} idle")
        Scheduler().run_pass()
        assert not Alert.objects.filter(kind=Alert.Kind.UNBOOKED_USE).exists()

        sim.set_load(CUTTING_W)
        other.set_load(CUTTING_W)
        for m in (machine, allowed):
            session = wait_until(lambda m=m: session_of(m, ended=False), what=f"a session on {m.slug}")
            assert (session.booking_id, session.walk_in) == (None, True)

        Scheduler().run_pass()
        alert = Alert.objects.get(machine=machine, kind=Alert.Kind.UNBOOKED_USE, cleared_at__isnull=True)
        assert alert.booking_id is None
        assert not Alert.objects.filter(machine=allowed, kind=Alert.Kind.UNBOOKED_USE).exists()
        # Raised once, whatever the number of passes.
        Scheduler().run_pass()
        assert Alert.objects.filter(machine=machine, kind=Alert.Kind.UNBOOKED_USE).count() == 1

        sim.set_load(0)
        wait_until(lambda: session_of(machine, ended=True), what="the walk-in's session to close")
        Scheduler().run_pass()
        assert not open_unbooked(machine)
        assert Alert.objects.get(pk=alert.pk).cleared_at is not None
