"""Unbooked-use and overrun alerts, raised and cleared by ``devices.attribution.scheduled_pass``."""

from __future__ import annotations

import pytest
import time_machine
from django.core import mail
from django.utils import translation

from devices import attribution, usage_alerts
from devices.models import Alert, MachineLink
from fablab.booking import lifecycle
from fablab.booking.models import Booking
from firmware_bridge import protocol
from tests.devices.conftest import make_machine
from tests.devices.test_attribution import apply, at, booking, run, status
from tests.factories import LabFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def machine():
    machine = make_machine(LabFactory(slug="bxl"), slug="laser")
    MachineLink.objects.filter(machine=machine).update(interlock=True)  # jobs never check in by themselves
    return machine


def open_alerts(machine) -> list[tuple[str, int | None]]:
    return list(
        Alert.objects.filter(machine=machine, cleared_at__isnull=True)
        .order_by("kind")
        .values_list("kind", "booking")
    )


def test_use_without_a_booking_raises_unbooked_until_a_check_in_claims_it(
    machine, django_capture_on_commit_callbacks
):
    mine = booking(machine, at(10), at(11))
    with time_machine.travel(at(9, 55), tick=False):
        run(machine, at(9, 50))
        assert attribution.scheduled_pass() == {machine.pk}
        assert open_alerts(machine) == [("unbooked", None)]
        assert attribution.scheduled_pass() == set()  # raised once
        assert Alert.objects.filter(machine=machine).count() == 1
        with django_capture_on_commit_callbacks(execute=True):
            lifecycle.check_in(booking=mine, by=mine.member, via=Booking.CheckInVia.PAGE)
        assert attribution.scheduled_pass() == {machine.pk}
    assert open_alerts(machine) == []


def test_unbooked_is_cleared_when_the_session_ends(machine):
    with time_machine.travel(at(10, 5), tick=False):
        run(machine, at(10))
        attribution.scheduled_pass()
        assert open_alerts(machine) == [("unbooked", None)]
        apply(machine, status(protocol.IDLE, at(10, 4)))
        assert attribution.scheduled_pass() == {machine.pk}
    assert open_alerts(machine) == []
    assert Alert.objects.get(machine=machine).cleared_at == at(10, 5)


def test_walk_ins_allowed_raise_no_alert(machine):
    machine.walk_ins_allowed = True
    machine.save(update_fields=["walk_ins_allowed"])
    with time_machine.travel(at(10, 5), tick=False):
        run(machine, at(10))
        assert attribution.scheduled_pass() == set()
    assert open_alerts(machine) == []


@pytest.fixture
def overrun_scene(machine):
    """Alice (nl) overruns her 10–11 booking into Bob's (fr) 11–12; Carol (en) manages the lab."""
    alice = UserFactory(username="alice", language="nl")
    bob = UserFactory(username="bob", language="fr")
    carol = UserFactory(username="carol", language="en")
    machine.lab.managers.add(carol)
    first = booking(machine, at(10), at(11), checked_in_at=at(10), member=alice)
    second = booking(machine, at(11), at(12), member=bob)
    with time_machine.travel(at(10, 30), tick=False):
        run(machine, at(10, 30))
    return first, second


def test_an_overrun_into_the_next_booking_alerts_once_and_emails_three_people_in_their_languages(
    machine, overrun_scene, monkeypatch, django_capture_on_commit_callbacks
):
    first, second = overrun_scene
    with time_machine.travel(at(11, 3), tick=False):  # after the end, within the grace: next one started
        sent = []
        real_send_mail = usage_alerts.send_mail

        def recording(subject, body, sender, to):
            sent.append((to[0], translation.get_language(), body.splitlines()[0]))
            return real_send_mail(subject, body, sender, to)

        monkeypatch.setattr(usage_alerts, "send_mail", recording)
        with django_capture_on_commit_callbacks(execute=True):
            assert attribution.scheduled_pass() == {machine.pk}
        with django_capture_on_commit_callbacks(execute=True):
            assert attribution.scheduled_pass() == set()
    assert open_alerts(machine) == [("overrun", second.pk)]
    assert sorted(sent) == [
        ("alice@example.org", "nl", "Hallo alice,"),
        ("bob@example.org", "fr", "Bonjour bob,"),
        ("carol@example.org", "en", "Hello carol,"),
    ]
    assert len(mail.outbox) == 3
    assert all(machine.name in m.subject for m in mail.outbox)
    by_address = {m.to[0]: m.body for m in mail.outbox}
    assert (
        f"#{first.pk}" in by_address["carol@example.org"]
        and f"#{second.pk}" in by_address["carol@example.org"]
    )


def test_the_overrun_alert_clears_when_the_session_ends(machine, overrun_scene):
    with time_machine.travel(at(11, 10), tick=False):
        attribution.scheduled_pass()
        assert [k for k, _b in open_alerts(machine)] == ["overrun"]
        apply(machine, status(protocol.IDLE, at(11, 8)))
        assert attribution.scheduled_pass() == {machine.pk}
    assert open_alerts(machine) == []


def test_no_overrun_into_the_same_members_next_booking(machine):
    alice = UserFactory(username="alice")
    booking(machine, at(10), at(11), checked_in_at=at(10), member=alice)
    booking(machine, at(11), at(12), member=alice)
    with time_machine.travel(at(11, 10), tick=False):
        run(machine, at(10, 30))
        assert attribution.scheduled_pass() == set()
    assert open_alerts(machine) == []
    assert mail.outbox == []
