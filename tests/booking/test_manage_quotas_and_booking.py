"""Manager pages for two tasks once done in the Django admin: a lab's quota policies, and
booking a machine on a member's behalf (through the one booking service)."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from fablab.booking import services
from fablab.booking.errors import BookingError
from fablab.booking.models import Booking, QuotaPolicy
from tests.factories import (
    BookingFactory,
    CertificationFactory,
    LabFactory,
    MachineFactory,
    MachineTypeFactory,
    QuotaPolicyFactory,
    TrainingFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

BRUSSELS = zoneinfo.ZoneInfo("Europe/Brussels")


def day_after_tomorrow() -> dt.date:
    return timezone.localdate(timezone=BRUSSELS) + dt.timedelta(days=2)


def at(hour: int, minute: int = 0, day: dt.date | None = None) -> dt.datetime:
    return dt.datetime.combine(day or day_after_tomorrow(), dt.time(hour, minute), tzinfo=BRUSSELS)


def local(moment: dt.datetime) -> str:
    return moment.astimezone(BRUSSELS).strftime("%Y-%m-%dT%H:%M")


@pytest.fixture
def lab():
    return LabFactory(slug="centre", name="Centre")


@pytest.fixture
def lab_b():
    return LabFactory(slug="lab-b", name="Lab B")


@pytest.fixture
def printer_type():
    return MachineTypeFactory(slug="3d-printer", name="3D printer")


@pytest.fixture
def laser_type():
    return MachineTypeFactory(slug="laser", name="Laser cutter")


@pytest.fixture
def manager(lab):
    user = UserFactory(username="manon")
    lab.managers.add(user)
    return user


@pytest.fixture
def member():
    return UserFactory(username="joe", email="Joe.Maker@example.org")


@pytest.fixture
def machine(lab, printer_type):
    return MachineFactory(lab=lab, name="Prusa", machine_type=printer_type)


def settings_url(lab) -> str:
    return reverse("booking:lab_settings", args=[lab.slug])


def book_url(machine) -> str:
    return reverse("booking:book_for_member", args=[machine.pk])


def booking_form(member: str, start: dt.datetime, end: dt.datetime, purpose: str = "") -> dict:
    return {"member": member, "start": local(start), "end": local(end), "purpose": purpose}


# Quota policies


def test_a_manager_adds_a_quota_policy_for_their_lab(client, lab, lab_b, manager, printer_type):
    client.force_login(manager)
    response = client.post(
        settings_url(lab),
        {
            "form": "quota",
            "quota-machine_type": printer_type.pk,
            "quota-max_hours_per_week": "6",
            "quota-max_future_bookings": "2",
            # Not a field of the form: the lab comes from the address, never from the input.
            "quota-lab": lab_b.pk,
            "lab": lab_b.pk,
        },
    )
    assert response.status_code == 302
    policy = QuotaPolicy.objects.get()
    assert (policy.lab, policy.machine_type) == (lab, printer_type)
    assert (policy.max_hours_per_week, policy.max_future_bookings) == (Decimal("6"), 2)
    html = client.get(settings_url(lab)).content.decode()
    assert "3D printer" in html and reverse("booking:edit_quota", args=[lab.slug, policy.pk]) in html


def test_a_manager_edits_and_deletes_a_quota_policy_of_their_lab(
    client, lab, manager, printer_type, laser_type
):
    policy = QuotaPolicyFactory(lab=lab, machine_type=printer_type, max_hours_per_week=Decimal("4"))
    client.force_login(manager)
    url = reverse("booking:edit_quota", args=[lab.slug, policy.pk])
    assert client.get(url).status_code == 200
    response = client.post(
        url, {"machine_type": laser_type.pk, "max_hours_per_week": "", "max_future_bookings": "3"}
    )
    assert response.status_code == 302
    policy.refresh_from_db()
    assert (policy.lab, policy.machine_type, policy.max_hours_per_week, policy.max_future_bookings) == (
        lab,
        laser_type,
        None,
        3,
    )
    response = client.post(reverse("booking:delete_quota", args=[lab.slug, policy.pk]))
    assert response.status_code == 302
    assert not QuotaPolicy.objects.exists()


@pytest.mark.parametrize(
    "data",
    [
        {"quota-max_hours_per_week": "-1"},
        {"quota-max_future_bookings": "-2"},
        {"quota-max_hours_per_week": "lots"},
        {"quota-machine_type": "999999"},
        {"quota-machine_type": ""},
    ],
)
def test_a_bad_quota_policy_is_a_form_error_and_saves_nothing(client, lab, manager, printer_type, data):
    client.force_login(manager)
    form = {"form": "quota", "quota-machine_type": printer_type.pk, **data}
    response = client.post(settings_url(lab), form)
    assert response.status_code == 200
    assert 'class="error"' in response.content.decode()
    assert not QuotaPolicy.objects.exists()


def test_a_second_quota_policy_for_the_same_type_in_a_lab_is_a_form_error(client, lab, manager, printer_type):
    QuotaPolicyFactory(lab=lab, machine_type=printer_type, max_future_bookings=1)
    # The network-wide policy for the type does not stand in the way of the lab's own.
    QuotaPolicyFactory(lab=None, machine_type=printer_type, max_future_bookings=5)
    client.force_login(manager)
    response = client.post(
        settings_url(lab),
        {"form": "quota", "quota-machine_type": printer_type.pk, "quota-max_future_bookings": "3"},
    )
    assert response.status_code == 200
    assert "already has a quota policy" in response.content.decode()
    assert QuotaPolicy.objects.filter(lab=lab).get().max_future_bookings == 1


def test_network_wide_quotas_are_shown_read_only(client, lab, manager, printer_type, laser_type):
    general = QuotaPolicyFactory(lab=None, machine_type=laser_type, max_hours_per_week=Decimal("3"))
    client.force_login(manager)
    html = client.get(settings_url(lab)).content.decode()
    assert "Laser cutter" in html and "All labs (set by the network administrators)" in html
    assert "read-only" in html
    # No address of the manager pages reaches it: not edited, not deleted, not replaced through the form.
    assert reverse("booking:edit_quota", args=[lab.slug, general.pk]) not in html
    edit = reverse("booking:edit_quota", args=[lab.slug, general.pk])
    assert client.get(edit).status_code == 404
    assert client.post(edit, {"machine_type": laser_type.pk, "max_hours_per_week": "99"}).status_code == 404
    assert client.post(reverse("booking:delete_quota", args=[lab.slug, general.pk])).status_code == 404
    client.post(
        settings_url(lab),
        {"form": "quota", "quota-machine_type": laser_type.pk, "quota-max_hours_per_week": "8"},
    )
    general.refresh_from_db()
    assert general.lab is None and general.max_hours_per_week == Decimal("3")
    # The lab's own policy was added beside it, and the page says it replaces the general one here.
    assert QuotaPolicy.objects.get(lab=lab).max_hours_per_week == Decimal("8")
    assert "replaced here by this lab" in client.get(settings_url(lab)).content.decode()


def test_a_lab_a_manager_cannot_change_lab_b_quotas(client, lab, lab_b, manager, printer_type):
    theirs = QuotaPolicyFactory(lab=lab_b, machine_type=printer_type, max_future_bookings=1)
    client.force_login(manager)
    assert client.get(settings_url(lab_b)).status_code == 403
    add = {"form": "quota", "quota-machine_type": printer_type.pk, "quota-max_future_bookings": "9"}
    assert client.post(settings_url(lab_b), add).status_code == 403
    edit = reverse("booking:edit_quota", args=[lab_b.slug, theirs.pk])
    assert client.get(edit).status_code == 403
    assert client.post(edit, {"machine_type": printer_type.pk, "max_future_bookings": "9"}).status_code == 403
    assert client.post(reverse("booking:delete_quota", args=[lab_b.slug, theirs.pk])).status_code == 403
    # Through their own lab's address neither, and their own lab's page does not show it.
    own_edit = reverse("booking:edit_quota", args=[lab.slug, theirs.pk])
    assert client.get(own_edit).status_code == 404
    assert (
        client.post(own_edit, {"machine_type": printer_type.pk, "max_future_bookings": "9"}).status_code
        == 404
    )
    assert client.post(reverse("booking:delete_quota", args=[lab.slug, theirs.pk])).status_code == 404
    assert (
        reverse("booking:edit_quota", args=[lab_b.slug, theirs.pk])
        not in client.get(settings_url(lab)).content.decode()
    )
    assert list(QuotaPolicy.objects.all()) == [theirs]
    theirs.refresh_from_db()
    assert (theirs.lab, theirs.max_future_bookings) == (lab_b, 1)


def test_makers_cannot_see_or_change_quotas(client, lab, printer_type):
    policy = QuotaPolicyFactory(lab=lab, machine_type=printer_type, max_future_bookings=1)
    client.force_login(UserFactory())
    assert client.get(settings_url(lab)).status_code == 403
    assert client.get(reverse("booking:edit_quota", args=[lab.slug, policy.pk])).status_code == 403
    assert client.post(reverse("booking:delete_quota", args=[lab.slug, policy.pk])).status_code == 403
    assert QuotaPolicy.objects.filter(pk=policy.pk).exists()


def test_a_quota_policy_set_by_a_manager_is_applied_by_the_booking_rules(
    client, lab, manager, machine, member
):
    client.force_login(manager)
    client.post(
        settings_url(lab),
        {"form": "quota", "quota-machine_type": machine.machine_type_id, "quota-max_future_bookings": "1"},
    )
    services.booking_create(machine=machine, member=member, start=at(10), end=at(11))
    with pytest.raises(BookingError) as refused:
        services.booking_create(machine=machine, member=member, start=at(12), end=at(13))
    assert refused.value.code == "too_many_bookings"


# Booking on a member's behalf


def test_a_manager_books_for_a_member_through_the_booking_rules(
    client, lab, manager, machine, member, mailoutbox, django_capture_on_commit_callbacks, monkeypatch
):
    calls = []
    real = services.booking_create

    def spy(**kwargs):
        calls.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(services, "booking_create", spy)
    client.force_login(manager)
    assert client.get(book_url(machine)).status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(book_url(machine), booking_form("JOE", at(10), at(11, 30), "Prototype"))
    assert response.status_code == 302
    assert (
        response["Location"]
        == f"{reverse('booking:day', args=[lab.slug])}?date={day_after_tomorrow().isoformat()}"
    )
    booking = Booking.objects.get()
    assert (booking.machine, booking.member, booking.status, booking.purpose) == (
        machine,
        member,
        Booking.Status.CONFIRMED,
        "Prototype",
    )
    # Read in the lab's time zone.
    assert (booking.start, booking.end) == (at(10), at(11, 30))
    assert [c["member"] for c in calls] == [member]
    assert [(m.to, m.subject) for m in mailoutbox] == [([member.email], f"Booking confirmed: {machine.name}")]
    # The member is named by exact email address too (case aside).
    with django_capture_on_commit_callbacks(execute=True):
        client.post(book_url(machine), booking_form("joe.maker@EXAMPLE.org", at(14), at(15)))
    assert Booking.objects.filter(member=member).count() == 2


def test_a_manager_booking_for_an_uncertified_member_is_refused_with_the_rule_code(
    client, lab, manager, member, mailoutbox
):
    training = TrainingFactory(name="Laser safety")
    laser = MachineFactory(lab=lab, name="Laser", required_training=training)
    client.force_login(manager)
    response = client.post(book_url(laser), booking_form("joe", at(10), at(11)))
    assert response.status_code == 200
    html = response.content.decode()
    assert "(not_certified)" in html
    assert not Booking.objects.exists() and not mailoutbox
    # Once certified, the same request passes.
    CertificationFactory(member=member, training=training)
    assert client.post(book_url(laser), booking_form("joe", at(10), at(11))).status_code == 302
    assert Booking.objects.get().member == member


@pytest.mark.parametrize(
    "scene, start, end, code",
    [
        ("none", (7, 0), (9, 0), "outside_opening_hours"),
        ("none", (10, 10), (11, 0), "bad_granularity"),
        ("taken", (10, 30), (11, 30), "slot_taken"),
        ("quota", (14, 0), (15, 0), "too_many_bookings"),
        ("hours", (14, 0), (16, 0), "quota_exceeded"),
    ],
)
def test_a_manager_booking_breaking_a_rule_is_refused_with_its_code(
    client, lab, manager, machine, member, scene, start, end, code
):
    if scene == "taken":
        BookingFactory(machine=machine, start=at(10), end=at(11))
    elif scene == "quota":
        QuotaPolicyFactory(lab=lab, machine_type=machine.machine_type, max_future_bookings=1)
        BookingFactory(machine=machine, member=member, start=at(10), end=at(11))
    elif scene == "hours":
        QuotaPolicyFactory(lab=None, machine_type=machine.machine_type, max_hours_per_week=Decimal("2"))
        BookingFactory(machine=machine, member=member, start=at(10), end=at(11))
    before = Booking.objects.count()
    client.force_login(manager)
    response = client.post(book_url(machine), booking_form("joe", at(*start), at(*end)))
    assert response.status_code == 200
    assert f"({code})" in response.content.decode()
    assert Booking.objects.count() == before


def test_a_manager_booking_on_a_machine_needing_approval_is_pending_and_the_member_is_told(
    client, lab, manager, member, mailoutbox, django_capture_on_commit_callbacks
):
    machine = MachineFactory(lab=lab, name="CNC", approval_required=True)
    client.force_login(manager)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(book_url(machine), booking_form("joe", at(10), at(11)))
    assert response.status_code == 302
    assert Booking.objects.get().status == Booking.Status.PENDING
    assert [m.subject for m in mailoutbox] == ["Booking awaiting approval: CNC"]


@pytest.mark.parametrize("who", ["jo", "Joe.Maker", "example.org", "joe@", "nobody", "", "*"])
def test_the_member_is_named_exactly_never_found_by_part(client, manager, machine, member, who):
    client.force_login(manager)
    response = client.post(book_url(machine), booking_form(who, at(10), at(11)))
    assert response.status_code == 200
    assert 'class="error"' in response.content.decode()
    assert not Booking.objects.exists()


def test_an_inactive_member_cannot_be_booked_for(client, manager, machine, member):
    member.is_active = False
    member.save()
    client.force_login(manager)
    response = client.post(book_url(machine), booking_form("joe", at(10), at(11)))
    assert response.status_code == 200
    assert not Booking.objects.exists()


@pytest.mark.parametrize(
    "start, end",
    [("9999-12-31T10:00", "9999-12-31T11:00"), ("0001-01-01T10:00", "0001-01-01T11:00"), ("soon", "later")],
)
def test_bad_times_are_form_errors_not_server_errors(client, manager, machine, member, start, end):
    client.force_login(manager)
    response = client.post(book_url(machine), {"member": "joe", "start": start, "end": end})
    assert response.status_code == 200
    assert 'class="error"' in response.content.decode()
    assert not Booking.objects.exists()


def test_a_lab_a_manager_cannot_book_lab_b_machines_for_anyone(client, lab_b, manager, member, mailoutbox):
    theirs = MachineFactory(lab=lab_b, name="B printer")
    client.force_login(manager)
    assert client.get(book_url(theirs)).status_code == 403
    for who in ("joe", "manon"):
        assert client.post(book_url(theirs), booking_form(who, at(10), at(11))).status_code == 403
    assert not Booking.objects.exists() and not mailoutbox
    # Their day view and overview offer only their own lab's machines.
    assert book_url(theirs) not in client.get(reverse("booking:manage")).content.decode()


def test_makers_and_visitors_cannot_book_for_others(client, machine, member):
    client.force_login(UserFactory(username="maker"))
    assert client.get(book_url(machine)).status_code == 403
    assert client.post(book_url(machine), booking_form("joe", at(10), at(11))).status_code == 403
    client.logout()
    response = client.post(book_url(machine), booking_form("joe", at(10), at(11)))
    assert response.status_code == 302 and "login" in response["Location"]
    assert not Booking.objects.exists()


def test_the_manager_pages_link_to_quotas_and_booking_for_a_member(client, lab, manager, machine):
    client.force_login(manager)
    overview = client.get(reverse("booking:manage")).content.decode()
    assert f"{settings_url(lab)}#quotas-title" in overview and book_url(machine) in overview
    day = client.get(reverse("booking:day", args=[lab.slug]), {"date": day_after_tomorrow().isoformat()})
    assert f"{book_url(machine)}?date={day_after_tomorrow().isoformat()}" in day.content.decode()
    assert book_url(machine) in client.get(settings_url(lab)).content.decode()
    page = client.get(book_url(machine), {"date": day_after_tomorrow().isoformat()}).content.decode()
    # Pre-filled with the lab's first opening time that day (08:00 in the factory's lab).
    assert f'value="{local(at(8))}"' in page
