"""The interlock with the real parts: Mosquitto, the hub, the bridge and a simulated Tasmota plug.

Check-in → the server writes ``enable`` → the hub publishes it → the bridge switches the plug's relay and
acks ok → the status says enabled. A bridge restarted mid-booking (a fresh spool: it comes back disabled)
is brought back to enabled by the hub's status applier, without waiting for the scheduler. After the end
plus the grace, a scheduler pass disables it. Every wait is for an outcome; no timing is asserted.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.utils import timezone

from devices.models import Command, Interlock, MachineLink, MachineStatus
from devices.scheduler import Scheduler
from fablab.booking import lifecycle
from fablab.booking.models import Booking
from firmware_bridge.bridge import Bridge
from firmware_bridge.config import load
from firmware_bridge.simulators.plug import PlugSimulator
from tests.devices.conftest import WAIT_S, hub_thread, make_machine, wait_until
from tests.factories import BookingFactory, LabFactory
from tests.firmware_bridge.conftest import write_config

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

LAB, MACHINE, TOPIC, BRIDGE = "live-lab", "epilog", "tasmota_11AA22", "live-bridge"
FAST = {"topic": TOPIC, "on_w": 100, "off_w": 50, "on_s": 0.5, "off_s": 1.0, "confirm_timeout_s": 20}


@pytest.fixture
def plug(broker) -> Iterator[PlugSimulator]:
    sim = PlugSimulator(
        "tasmota", TOPIC, broker.url(), profile="manual", tele_period_s=0.5, energy_res=5, relay_on=True
    )
    sim.start()
    yield sim
    sim.stop()


def start_bridge(folder: Path, broker) -> Bridge:
    """The real bridge serving the plug-driven machine with an interlock; its spool lives in ``folder``."""
    folder.mkdir(parents=True)
    machines = [{"lab": LAB, "machine": MACHINE, "adapter": "tasmota", "interlock": True, "options": FAST}]
    bridge = Bridge(load(write_config(folder / "bridge.toml", broker, machines, bridge_id=BRIDGE)))
    bridge.start()
    assert bridge.transport.wait_connected(WAIT_S)
    return bridge


def live():
    return MachineStatus.objects.filter(machine__slug=MACHINE).first()


def reported(enabled: bool):
    return lambda: (s := live()) is not None and s.online and s.enabled is enabled


def test_check_in_unlocks_a_restarted_bridge_is_brought_back_and_the_end_locks(
    broker, influx, plug, tmp_path
):
    machine = make_machine(LabFactory(slug=LAB), slug=MACHINE, bridge=BRIDGE, adapter="tasmota", interval=1)
    MachineLink.objects.filter(machine=machine).update(interlock=True)
    machine.end_grace_minutes = 1
    machine.save()
    now = timezone.now()
    booking = BookingFactory(
        machine=machine, start=now - dt.timedelta(minutes=1), end=now + dt.timedelta(hours=1)
    )

    with hub_thread(broker, influx, tmp_path):
        bridge = start_bridge(tmp_path / "bridge-1", broker)
        try:
            # An interlocked machine starts disabled: the bridge switched the relay off.
            wait_until(reported(False), what="the machine idle and disabled")
            wait_until(lambda: not plug.relay_on, what="the relay off")

            lifecycle.check_in(booking=booking, by=booking.member, via="page")
            enable = Command.objects.get(machine=machine, action="enable")
            assert enable.booking_id == booking.pk
            wait_until(lambda: Command.objects.get(pk=enable.pk).result == Command.Result.OK, what="the ack")
            wait_until(reported(True), what="status.enabled true")
            wait_until(lambda: plug.relay_on, what="the relay on")
        finally:
            bridge.stop()

        # Mid-booking, long after the check-in: the bridge restarts with its state lost (a new SD card).
        Interlock.objects.filter(pk=machine.pk).update(
            last_command_at=timezone.now() - dt.timedelta(minutes=5)
        )
        bridge = start_bridge(tmp_path / "bridge-2", broker)
        try:
            wait_until(lambda: not plug.relay_on, what="the restarted bridge to switch the relay off")
            wait_until(
                lambda: Command.objects.filter(machine=machine, action="enable").count() == 2,
                what="the hub's status applier to send enable again",
            )
            wait_until(reported(True), what="the machine enabled again")
            wait_until(lambda: plug.relay_on, what="the relay on again")

            # The booking ends; a grace later the scheduler's pass locks the machine.
            end = timezone.now() - dt.timedelta(minutes=1, seconds=1)
            Booking.objects.filter(pk=booking.pk).update(end=end, blocked_until=end)
            before = set(Command.objects.values_list("pk", flat=True))
            Scheduler().run_pass()
            assert Booking.objects.get(pk=booking.pk).status == Booking.Status.COMPLETED
            disable = Command.objects.exclude(pk__in=before).get(machine=machine)
            assert disable.action == "disable"
            wait_until(
                lambda: Command.objects.get(pk=disable.pk).result == Command.Result.OK, what="disable ok"
            )
            wait_until(reported(False), what="status.enabled false")
            wait_until(lambda: not plug.relay_on, what="the relay off at the end")
        finally:
            bridge.stop()
