"""The interlock follows the bookings: wanted-state rules, claims, chasing a disagreeing machine, overrides.

Time is the test's (``time_machine``, not ticking); the bridge is played by writing the machine's live
status, and what the server would send is read from the Command rows (the hub is not needed here:
``test_interlock_live.py`` runs the real parts).
"""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.urls import reverse

from devices import interlock
from devices.machines import MachineInfo, dt_to_ms
from devices.models import Alert, Command, Interlock, InterlockOverride, MachineLink, MachineStatus
from devices.status import apply_status
from fablab.booking import lifecycle
from fablab.booking.models import Booking
from firmware_bridge import protocol
from tests.devices.conftest import make_machine
from tests.factories import BookingFactory, UserFactory

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2030, 1, 7, 9, 0, tzinfo=dt.UTC)


def at(minutes: float = 0, seconds: float = 0) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes, seconds=seconds)


@pytest.fixture
def clock():
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


def interlocked(end_action: str = "stop", *, enabled: bool = False, state: str = "idle"):
    """A plug-driven machine with an interlock (5 min of grace) whose bridge reports ``enabled``."""
    machine = make_machine(adapter="tasmota")
    MachineLink.objects.filter(machine=machine).update(interlock=True)
    machine.end_action = end_action
    machine.end_grace_minutes = 5
    machine.save()
    MachineStatus.objects.create(
        machine=machine,
        state=state,
        online=True,
        enabled=enabled,
        adapter="tasmota",
        capabilities=list(protocol.machine_capabilities((), interlock=True)),
    )
    return machine


def report(machine, *, enabled: bool | None = None, state: str | None = None, online: bool = True) -> None:
    """The bridge's next status, as far as the interlock cares."""
    fields = {"online": online}
    if enabled is not None:
        fields["enabled"] = enabled
    if state is not None:
        fields["state"] = state
    MachineStatus.objects.filter(machine=machine).update(**fields)


def sent(machine) -> list[str]:
    return list(
        Command.objects.filter(machine=machine).order_by("issued_at", "pk").values_list("action", flat=True)
    )


def member_booking(
    machine, start: dt.datetime | None = None, end: dt.datetime | None = None, **kwargs
) -> Booking:
    return BookingFactory(machine=machine, start=start or at(0), end=end or at(60), **kwargs)


def check_in(booking: Booking, when: dt.datetime) -> None:
    Booking.objects.filter(pk=booking.pk).update(status=Booking.Status.CHECKED_IN, checked_in_at=when)


# ------------------------------------------------------------------------------------ the rules


def test_a_member_booking_unlocks_from_its_check_in_until_the_end_plus_the_grace():
    machine = interlocked()
    booking = member_booking(machine)
    assert interlock.wanted_state(machine, at(1)) == (False, "idle", None)  # booked, not checked in
    check_in(booking, at(2))
    assert interlock.wanted_state(machine, at(1))[:2] == (False, "idle")
    assert interlock.wanted_state(machine, at(2)) == (True, "booking", booking)
    Booking.objects.filter(pk=booking.pk).update(status=Booking.Status.COMPLETED)
    assert interlock.wanted_state(machine, at(64, 59))[:2] == (True, "booking")
    assert interlock.wanted_state(machine, at(65))[:2] == (False, "idle")


def test_a_training_unlocks_for_its_whole_time_without_check_in():
    machine = interlocked()
    training = member_booking(machine, kind=Booking.Kind.TRAINING, member=None, title="Intro")
    assert interlock.wanted_state(machine, at(-1))[0] is False
    assert interlock.wanted_state(machine, at(0)) == (True, "booking", training)
    assert interlock.wanted_state(machine, at(64, 59))[0] is True
    assert interlock.wanted_state(machine, at(65))[0] is False


def test_a_cancelled_or_no_show_booking_does_not_unlock():
    machine = interlocked()
    member_booking(machine, status=Booking.Status.NO_SHOW)
    member_booking(machine, start=at(60), end=at(90), kind=Booking.Kind.WORKSHOP, member=None,
                   status=Booking.Status.CANCELLED)  # fmt: skip
    assert interlock.wanted_state(machine, at(10))[0] is False
    assert interlock.wanted_state(machine, at(70))[0] is False


def test_maintenance_locks_out_and_a_managers_override_wins_over_everything():
    machine = interlocked()
    block = member_booking(machine, kind=Booking.Kind.MAINTENANCE, member=None)
    assert interlock.wanted_state(machine, at(10)) == (False, "maintenance", block)
    manager = UserFactory()
    InterlockOverride.objects.create(
        machine=machine, enabled=True, reason="calibration", starts_at=at(5), until=at(20), created_by=manager
    )
    assert interlock.wanted_state(machine, at(10))[:2] == (True, "override")
    assert interlock.wanted_state(machine, at(20))[:2] == (False, "maintenance")  # expired


@pytest.mark.parametrize("end_action", ["finish", "stop"])
def test_the_end_action_decides_what_a_running_job_gets_at_the_end(clock, end_action):
    """``finish`` keeps a running job enabled past the end and the next member's unchecked booking; ``stop``
    disables at the end plus the grace. Either way the next member checks in and gets the machine."""
    machine = interlocked(end_action)
    first = member_booking(machine)
    check_in(first, at(0))
    clock.move_to(at(30))
    interlock.reconcile([machine], at(30))
    report(machine, enabled=True, state="running")
    following = member_booking(machine, start=at(60), end=at(120), member=UserFactory())

    clock.move_to(at(65))
    interlock.reconcile([machine], at(65))
    row = Interlock.objects.get(pk=machine.pk)
    if end_action == "finish":
        assert (row.wanted, row.reason, row.booking_id) == (True, "finishing", first.pk)
        assert sent(machine) == ["enable"]
    else:
        assert (row.wanted, row.reason) == (False, "idle")
        assert sent(machine) == ["enable", "disable"]

    # The next member's check-in is never blocked, and unlocks the machine for their booking.
    lifecycle.check_in(booking=following, by=following.member, via="page", now=at(66))
    interlock.reconcile([machine], at(66))
    row = Interlock.objects.get(pk=machine.pk)
    assert (row.wanted, row.reason, row.booking_id) == (True, "booking", following.pk)


def test_with_finish_the_machine_locks_when_the_job_ends(clock):
    machine = interlocked("finish")
    booking = member_booking(machine)
    check_in(booking, at(0))
    interlock.reconcile([machine], at(10))
    report(machine, enabled=True, state="running")
    clock.move_to(at(70))
    interlock.reconcile([machine], at(70))
    assert Interlock.objects.get(pk=machine.pk).reason == "finishing"
    report(machine, state="idle")
    clock.move_to(at(71))
    interlock.reconcile([machine], at(71))
    assert Interlock.objects.get(pk=machine.pk).wanted is False
    assert sent(machine) == ["enable", "disable"]


def test_a_machine_without_interlock_is_left_alone(clock):
    machine = interlocked()
    MachineLink.objects.filter(machine=machine).update(interlock=False)
    check_in(member_booking(machine), at(0))
    assert interlock.reconcile([machine], at(1))["changed"] == 0
    assert sent(machine) == [] and not Interlock.objects.exists()


# ---------------------------------------------------------------------------- claims and chasing


def test_a_change_is_claimed_once_however_many_reconcile_it_at_the_same_time(clock):
    """Two callers that read the same row before either wrote: one claims the change and sends it."""
    machine = interlocked()
    interlock.reconcile([machine], at(0))  # the first decision: disabled, as reported: nothing sent
    assert sent(machine) == []
    check_in(member_booking(machine), at(1))
    stale_a, stale_b = Interlock.objects.get(pk=machine.pk), Interlock.objects.get(pk=machine.pk)
    status = MachineStatus.objects.get(pk=machine.pk)
    wanted = interlock.Wanted(True, "booking")
    counts = dict.fromkeys(("changed", "sent", "resent", "alerts", "cleared"), 0)
    for row in (stale_a, stale_b):
        interlock._reconcile_one(machine, row, status, wanted, at(1), False, counts)
    assert counts["changed"] == 1 and counts["sent"] == 1
    assert sent(machine) == ["enable"]
    interlock.reconcile([machine], at(1))  # and a third, later, finds nothing to do
    assert sent(machine) == ["enable"]


def test_a_disagreeing_machine_is_sent_its_state_again_then_alerted_then_cleared(clock):
    machine = interlocked()
    booking = member_booking(machine)
    check_in(booking, at(0))
    interlock.reconcile([machine], at(0))
    assert sent(machine) == ["enable"]
    assert Interlock.objects.get(pk=machine.pk).mismatch_since == at(0)

    # Still disabled 11 s later, but the enable awaits its answer: not sent again.
    clock.move_to(at(0, 11))
    interlock.reconcile([machine], at(0, 11))
    assert sent(machine) == ["enable"]
    # The bridge said ok, yet reports disabled (a lost relay switch): sent again, once per 10 s.
    Command.objects.filter(machine=machine).update(result=Command.Result.OK, state=Command.State.PUBLISHED)
    interlock.reconcile([machine], at(0, 12))
    interlock.reconcile([machine], at(0, 13))
    assert sent(machine) == ["enable", "enable"]
    assert not Alert.objects.filter(kind=Alert.Kind.INTERLOCK).exists()

    clock.move_to(at(0, 30))
    interlock.reconcile([machine], at(0, 30))
    alert = Alert.objects.get(machine=machine, kind=Alert.Kind.INTERLOCK, cleared_at__isnull=True)
    assert alert.booking_id == booking.pk and machine.name in alert.message

    report(machine, enabled=True)
    clock.move_to(at(0, 31))
    interlock.reconcile([machine], at(0, 31))
    assert Alert.objects.get(pk=alert.pk).cleared_at == at(0, 31)
    assert Interlock.objects.get(pk=machine.pk).mismatch_since is None


def test_an_offline_machine_is_not_chased_and_is_sent_its_state_once_back(clock):
    machine = interlocked()
    report(machine, online=False, state="offline")
    check_in(member_booking(machine), at(0))
    interlock.reconcile([machine], at(0))
    assert sent(machine) == ["enable"]  # the change itself is sent once
    Command.objects.update(result=Command.Result.NO_ANSWER)
    for second in (20, 40, 60, 80):
        clock.move_to(at(0, second))
        interlock.reconcile([machine], at(0, second))
    assert sent(machine) == ["enable"]
    assert not Alert.objects.filter(kind=Alert.Kind.INTERLOCK).exists()
    report(machine, online=True, state="idle", enabled=False)
    interlock.reconcile([machine], at(0, 81))
    assert sent(machine) == ["enable", "enable"]


def test_an_override_holds_until_it_expires_then_the_bookings_rule_again(clock):
    machine = interlocked()
    manager = UserFactory()
    InterlockOverride.objects.create(
        machine=machine, enabled=True, reason="test cut", starts_at=at(0), until=at(10), created_by=manager
    )
    interlock.reconcile([machine], at(0))
    assert Interlock.objects.get(pk=machine.pk).reason == "override"
    report(machine, enabled=True)
    clock.move_to(at(10))
    interlock.reconcile([machine], at(10))
    row = Interlock.objects.get(pk=machine.pk)
    assert (row.wanted, row.reason) == (False, "idle")
    assert sent(machine) == ["enable", "disable"]


def test_a_status_that_changes_enabled_has_the_interlock_reconciled_at_once(clock):
    """A bridge restarted mid-booking comes back disabled: the hub's status applier sends enable at once."""
    machine = interlocked(enabled=True)
    check_in(member_booking(machine), at(0))
    interlock.reconcile([machine], at(0))
    assert sent(machine) == []  # already enabled, as wanted
    clock.move_to(at(20))
    info = MachineInfo(machine.pk, machine.lab.slug, machine.slug, "3d-printer", "tasmota", 10, "bridge-1")
    msg = protocol.Status(
        state="idle", enabled=False, bridge="bridge-1", adapter="tasmota", ts=dt_to_ms(at(20)),
        capabilities=list(protocol.machine_capabilities((), interlock=True)),
    )  # fmt: skip
    assert apply_status(info, msg) is not None
    assert sent(machine) == ["enable"]


def test_a_check_in_unlocks_at_once_through_the_booking_signal(clock, django_capture_on_commit_callbacks):
    machine = interlocked()
    booking = member_booking(machine)
    clock.move_to(at(1))
    with django_capture_on_commit_callbacks(execute=True):
        lifecycle.check_in(booking=booking, by=booking.member, via="page", now=at(1))
    command = Command.objects.get(machine=machine)
    assert (command.action, command.booking_id, command.source) == ("enable", booking.pk, "system")


def test_an_early_check_in_unlocks_at_once_before_the_start(clock, django_capture_on_commit_callbacks):
    machine = interlocked()
    booking = member_booking(machine, start=at(10), end=at(70))  # the window opens at its start - 15 min
    with django_capture_on_commit_callbacks(execute=True):
        lifecycle.check_in(booking=booking, by=booking.member, via="page", now=at(0))
    assert interlock.wanted_state(machine, at(0)) == (True, "booking", booking)
    assert sent(machine) == ["enable"]


# -------------------------------------------------------------------------------- the manager's page


def test_only_a_manager_of_the_lab_may_see_or_override_the_interlock(client):
    machine = interlocked()
    url = reverse("devices:interlock", args=[machine.lab.slug, machine.slug])
    client.force_login(UserFactory())
    assert client.get(url).status_code == 403
    assert client.post(url, {"enabled": "1", "minutes": "30", "reason": "x"}).status_code == 403
    assert not InterlockOverride.objects.exists()


def test_a_manager_overrides_with_a_reason_for_a_time_and_ends_it_early(client, clock):
    machine = interlocked()
    manager = UserFactory()
    machine.lab.managers.add(manager)
    client.force_login(manager)
    url = reverse("devices:interlock", args=[machine.lab.slug, machine.slug])
    live = client.get(reverse("devices:machine", args=[machine.lab.slug, machine.slug]))
    assert url in live.content.decode()

    refused = client.post(url, {"enabled": "1", "minutes": "30", "reason": "  "})
    assert refused.status_code == 200 and not InterlockOverride.objects.exists()

    assert client.post(url, {"enabled": "1", "minutes": "30", "reason": "laser alignment"}).status_code == 302
    override = InterlockOverride.objects.get()
    assert (override.enabled, override.reason, override.created_by, override.until) == (
        True, "laser alignment", manager, at(30),
    )  # fmt: skip
    assert sent(machine) == ["enable"]  # reconciled at once
    page = client.get(url).content.decode()
    assert "laser alignment" in page and 'data-wanted="1"' in page and 'data-reported="0"' in page

    clock.move_to(at(5))
    end = reverse("devices:interlock-end", args=[machine.lab.slug, machine.slug, override.pk])
    assert client.post(end).status_code == 302
    override.refresh_from_db()
    assert (override.ended_at, override.ended_by) == (at(5), manager)
    assert sent(machine) == ["enable", "disable"]
    assert InterlockOverride.objects.count() == 1  # the audit keeps it
    page = client.get(url).content.decode()
    assert f"by {manager.get_username()}" in page and "End now" not in page
