"""The machine side of "I'm done": the interlock locks at once, a fault line raises an alert for the managers.

Time is the test's (``time_machine``, not ticking); the follow-ups run with the commit callbacks.
"""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.core.cache import cache
from rest_framework.test import APIClient

from devices import fault_reports, interlock
from devices.models import Alert, Command, MachineLink, MachineStatus
from fablab.booking import lifecycle
from fablab.booking.models import Booking
from firmware_bridge import protocol
from tests.devices.conftest import make_machine
from tests.factories import BookingFactory, UserFactory, api_token

pytestmark = pytest.mark.django_db

#: 10:00 in Brussels; the machine's slots are 30 minutes.
T0 = dt.datetime(2030, 1, 7, 9, 0, tzinfo=dt.UTC)


def at(minutes: float = 0) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


@pytest.fixture(autouse=True)
def _clear_throttles():
    cache.clear()


@pytest.fixture
def clock():
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


@pytest.fixture
def machine():
    machine = make_machine(adapter="tasmota")
    MachineLink.objects.filter(machine=machine).update(interlock=True)
    machine.end_action = "stop"
    machine.end_grace_minutes = 5
    machine.save()
    MachineStatus.objects.create(
        machine=machine,
        state="idle",
        online=True,
        enabled=False,
        adapter="tasmota",
        capabilities=list(protocol.machine_capabilities((), interlock=True)),
    )
    return machine


def checked_in(machine, member=None, *, start=0, end=120) -> Booking:
    member = member or UserFactory(first_name="Mia", last_name="Maker")
    return BookingFactory(
        machine=machine,
        member=member,
        start=at(start),
        end=at(end),
        status=Booking.Status.CHECKED_IN,
        checked_in_at=at(start),
    )


def finish(booking, when, fault="") -> Booking:
    return lifecycle.finish(booking=booking, by=booking.member, via="page", fault=fault, now=when)


def open_fault_alerts(machine):
    return list(Alert.objects.filter(machine=machine, kind=Alert.Kind.FAULT_REPORTED, cleared_at=None))


# --- the interlock ---------------------------------------------------------------------------------


def test_finishing_locks_the_machine_at_once(clock, machine, django_capture_on_commit_callbacks):
    booking = checked_in(machine)
    interlock.reconcile([machine], at(1))
    assert interlock.wanted_state(machine, at(20))[:2] == (True, "booking")

    clock.move_to(at(20))
    with django_capture_on_commit_callbacks(execute=True):
        finish(booking, at(20))

    assert interlock.wanted_state(machine, at(20)) == (False, "idle", None)
    assert interlock.wanted_state(machine, at(19))[:2] == (True, "booking")  # it held until then
    assert list(
        Command.objects.filter(machine=machine).order_by("issued_at").values_list("action", flat=True)
    ) == [
        "enable",
        "disable",
    ]


def test_a_booking_completed_at_its_end_still_holds_for_the_grace(machine):
    booking = checked_in(machine, end=60)
    assert lifecycle.complete(booking.pk, at(60))
    assert interlock.wanted_state(machine, at(64))[:2] == (True, "booking")
    assert interlock.wanted_state(machine, at(65))[:2] == (False, "idle")


# --- the alert -------------------------------------------------------------------------------------


def test_a_fault_line_raises_one_alert_naming_the_booking(clock, machine, django_capture_on_commit_callbacks):
    booking = checked_in(machine)
    with django_capture_on_commit_callbacks(execute=True):
        finish(booking, at(20), fault="Nozzle clogged")

    (alert,) = open_fault_alerts(machine)
    assert alert.booking_id == booking.pk
    assert alert.message == f"#{booking.pk} Mia Maker: Nozzle clogged"
    assert alert.get_kind_display() == "Fault reported by a member"


def test_finishing_without_a_fault_raises_nothing(clock, machine, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        finish(checked_in(machine), at(20))
    assert not Alert.objects.filter(kind=Alert.Kind.FAULT_REPORTED).exists()


def test_a_second_report_is_appended_and_a_repeated_one_is_not(machine):
    first = finish(checked_in(machine, start=0, end=60), at(10), fault="Nozzle clogged")
    second = finish(
        checked_in(machine, UserFactory(username="bo"), start=60, end=120), at(70), fault="Bed loose"
    )

    assert fault_reports.raise_for_bookings([first.pk], at(11)) == 1
    assert fault_reports.raise_for_bookings([second.pk, first.pk], at(71)) == 1
    assert fault_reports.raise_for_bookings([first.pk, second.pk], at(72)) == 0

    (alert,) = open_fault_alerts(machine)
    assert alert.booking_id == first.pk  # the first report opened it
    assert alert.message == f"#{first.pk} Mia Maker: Nozzle clogged | #{second.pk} bo: Bed loose"


def test_a_report_after_the_alert_was_cleared_opens_a_new_one(machine):
    first = finish(checked_in(machine, start=0, end=60), at(10), fault="Nozzle clogged")
    fault_reports.raise_for_bookings([first.pk], at(11))
    Alert.objects.filter(kind=Alert.Kind.FAULT_REPORTED).update(cleared_at=at(30))
    second = finish(checked_in(machine, start=60, end=120), at(70), fault="Still clogged")

    assert fault_reports.raise_for_bookings([second.pk], at(71)) == 1
    (alert,) = open_fault_alerts(machine)
    assert alert.booking_id == second.pk


def test_the_message_stays_within_the_column(machine):
    ids = []
    for i in range(4):
        booking = checked_in(machine, UserFactory(username=f"m{i}"), start=60 * i, end=60 * i + 60)
        ids.append(finish(booking, at(60 * i + 10), fault=chr(ord("a") + i) * 290).pk)
    fault_reports.raise_for_bookings(ids, at(300))
    (alert,) = open_fault_alerts(machine)
    assert len(alert.message) == fault_reports.MESSAGE_MAX
    assert alert.message.startswith(f"#{ids[0]} m0: aaa")


def test_the_api_fault_line_reaches_the_managers_alerts(clock, machine, django_capture_on_commit_callbacks):
    booking = checked_in(machine)
    manager = UserFactory(username="manon")
    machine.lab.managers.add(manager)
    member = APIClient()
    member.credentials(HTTP_AUTHORIZATION=f"Token {api_token(booking.member)}")

    clock.move_to(at(20))
    with django_capture_on_commit_callbacks(execute=True):
        response = member.post(
            f"/api/v1/bookings/{booking.pk}/finish/", {"fault": "Smells of burning"}, format="json"
        )
    assert response.status_code == 200, response.json()

    boss = APIClient()
    boss.credentials(HTTP_AUTHORIZATION=f"Token {api_token(manager)}")
    alerts = boss.get(f"/api/v1/alerts/?lab={machine.lab.slug}").json()["results"]
    (alert,) = [a for a in alerts if a["kind"] == "fault_reported"]
    assert alert["kind_label"] == "Fault reported by a member"
    assert alert["booking"] == booking.pk and alert["message"].endswith("Mia Maker: Smells of burning")
