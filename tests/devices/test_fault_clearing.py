"""A member's fault report is closed by people: a lab manager resolves it, records a service, or puts
the machine back in service.

Each test raises the ``fault_reported`` alert the way members do, by finishing a booking with a fault
line (the follow-ups run with the commit callbacks). Time is the test's (``time_machine``, not ticking).
"""

from __future__ import annotations

import datetime as dt
import logging

import pytest
import time_machine
from django.core.exceptions import PermissionDenied
from django.urls import reverse
from rest_framework.test import APIClient

from devices import care, fault_reports
from devices.models import Alert, ServiceInterval
from fablab.booking import lifecycle
from fablab.booking.models import Booking
from tests.devices.conftest import make_machine
from tests.factories import BookingFactory, LabFactory, MaintenanceWindowFactory, UserFactory

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2030, 1, 7, 9, 0, tzinfo=dt.UTC)


def at(minutes: float = 0) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


@pytest.fixture
def clock():
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


@pytest.fixture
def people(settings):
    settings.INFLUX_DATABASE = ""  # the machine's page draws no charts: no store is asked
    lab = LabFactory(slug="fault-lab")
    manager = UserFactory(username="manon")
    lab.managers.add(manager)
    machine = make_machine(lab, slug="printer-1")
    return {"lab": lab, "machine": machine, "manager": manager, "maker": UserFactory(username="mia")}


def report_fault(machine, member, start: float, fault: str, django_capture_on_commit_callbacks) -> Alert:
    """A checked-in booking of ``member`` from ``start`` (minutes) finished 20 minutes in with ``fault``."""
    booking = BookingFactory(
        machine=machine,
        member=member,
        start=at(start),
        end=at(start + 60),
        status=Booking.Status.CHECKED_IN,
        checked_in_at=at(start),
    )
    with django_capture_on_commit_callbacks(execute=True):
        lifecycle.finish(booking=booking, by=member, via="page", fault=fault, now=at(start + 20))
    return Alert.objects.get(machine=machine, kind=Alert.Kind.FAULT_REPORTED, cleared_at=None)


def resolve_url(alert: Alert) -> str:
    return reverse("devices:care-fault-resolve", args=["fault-lab", "printer-1", alert.pk])


def test_a_manager_resolves_the_fault_on_the_machine_page(
    client, clock, people, django_capture_on_commit_callbacks, caplog
):
    clock.move_to(at(20))
    alert = report_fault(
        people["machine"], people["maker"], 0, "Nozzle clogged", django_capture_on_commit_callbacks
    )
    page = reverse("devices:machine", args=["fault-lab", "printer-1"])
    client.force_login(people["manager"])
    section = client.get(page).content.decode().split('id="care-fault"')[1].split("</section>")[0]
    assert f"#{alert.booking_id} mia: Nozzle clogged" in section and resolve_url(alert) in section

    clock.move_to(at(45))
    with caplog.at_level(logging.INFO, logger="devices.fault_reports"):
        response = client.post(resolve_url(alert))

    assert response.status_code == 302 and response.url.endswith("#care")
    alert.refresh_from_db()
    assert alert.cleared_at == at(45)
    assert f"closed (resolved) by user id {people['manager'].pk}" in caplog.text
    assert 'id="care-fault"' not in client.get(page).content.decode()
    # A second click (another tab) changes nothing.
    clock.move_to(at(50))
    assert client.post(resolve_url(alert)).status_code == 302
    alert.refresh_from_db()
    assert alert.cleared_at == at(45)


def test_nobody_but_the_labs_managers_may_resolve_it(
    client, clock, people, django_capture_on_commit_callbacks
):
    clock.move_to(at(20))
    alert = report_fault(
        people["machine"], people["maker"], 0, "Nozzle clogged", django_capture_on_commit_callbacks
    )
    elsewhere = UserFactory(username="other-manager")
    LabFactory(slug="elsewhere").managers.add(elsewhere)

    for who in (people["maker"], elsewhere):
        client.force_login(who)
        assert client.post(resolve_url(alert)).status_code == 403
        api = APIClient()
        api.force_authenticate(who)
        assert api.post(f"/api/v1/alerts/{alert.pk}/resolve/").status_code == 403
        with pytest.raises(PermissionDenied):
            fault_reports.resolve(alert, who, at(30))

    alert.refresh_from_db()
    assert alert.cleared_at is None


def test_a_manager_reads_and_resolves_it_through_the_api(clock, people, django_capture_on_commit_callbacks):
    clock.move_to(at(20))
    first = report_fault(
        people["machine"], people["maker"], 0, "Nozzle clogged", django_capture_on_commit_callbacks
    )
    clock.move_to(at(80))
    second = report_fault(
        people["machine"], UserFactory(username="bo"), 60, "Bed loose", django_capture_on_commit_callbacks
    )
    assert second.pk == first.pk  # appended to the open one
    api = APIClient()
    api.force_authenticate(people["manager"])

    fault = api.get(f"/api/v1/machines/{people['machine'].pk}/care/").json()["fault"]
    assert fault["id"] == first.pk and fault["booking"] == first.booking_id
    assert [line.split(": ", 1)[1] for line in fault["lines"]] == ["Nozzle clogged", "Bed loose"]

    clock.move_to(at(90))
    response = api.post(f"/api/v1/alerts/{first.pk}/resolve/")
    assert response.status_code == 200, response.json()
    assert response.json()["kind"] == "fault_reported"
    assert dt.datetime.fromisoformat(response.json()["cleared_at"]) == at(90)
    assert api.get(f"/api/v1/machines/{people['machine'].pk}/care/").json()["fault"] is None
    # Answered as it is when closed already.
    clock.move_to(at(95))
    assert (
        api.post(f"/api/v1/alerts/{first.pk}/resolve/").json()["cleared_at"] == response.json()["cleared_at"]
    )

    # The other alerts follow the machine's state: not closed by hand.
    offline = Alert.objects.create(machine=people["machine"], kind=Alert.Kind.OFFLINE, raised_at=at(91))
    assert api.post(f"/api/v1/alerts/{offline.pk}/resolve/").status_code == 404
    assert api.post("/api/v1/alerts/999999/resolve/").status_code == 404
    offline.refresh_from_db()
    assert offline.cleared_at is None


def test_a_service_recorded_closes_the_fault_reported_before_it(
    clock, people, django_capture_on_commit_callbacks
):
    clock.move_to(at(20))
    alert = report_fault(
        people["machine"], people["maker"], 0, "Nozzle clogged", django_capture_on_commit_callbacks
    )
    interval = ServiceInterval.objects.create(
        machine=people["machine"], name="Nozzle", every_hours=100, counted_from=at(-600)
    )

    record = care.record_service(interval, people["manager"], "new nozzle", at(30))

    alert.refresh_from_db()
    assert alert.cleared_at == record.at == at(30)
    # A fault reported after it stays open, even through a second click on the same service.
    clock.move_to(at(80))
    later = report_fault(
        people["machine"], people["maker"], 60, "Clogged again", django_capture_on_commit_callbacks
    )
    assert later.raised_at > record.at
    assert care.record_service(interval, people["manager"], "", at(30.5)).pk == record.pk
    later.refresh_from_db()
    assert later.cleared_at is None


def test_putting_the_machine_back_in_service_closes_the_fault_reported_before_it(
    client, clock, people, django_capture_on_commit_callbacks, caplog
):
    machine, manager = people["machine"], people["manager"]
    clock.move_to(at(20))
    alert = report_fault(machine, people["maker"], 0, "Nozzle clogged", django_capture_on_commit_callbacks)
    window = MaintenanceWindowFactory(machine=machine, start=at(25), end=at(600), kind="breakdown")
    back = reverse("booking:back_in_service", args=[window.pk])

    clock.move_to(at(40))
    client.force_login(people["maker"])
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(back).status_code == 403
    alert.refresh_from_db()
    assert alert.cleared_at is None

    client.force_login(manager)
    with (
        caplog.at_level(logging.INFO, logger="devices.fault_reports"),
        django_capture_on_commit_callbacks(execute=True),
    ):
        assert client.post(back).status_code == 302
    alert.refresh_from_db()
    assert alert.cleared_at == at(40)
    assert f"closed (back in service) by user id {manager.pk}" in caplog.text

    # The API's "back in service" likewise, for the fault reported since.
    clock.move_to(at(80))
    later = report_fault(machine, people["maker"], 60, "Bed loose", django_capture_on_commit_callbacks)
    MaintenanceWindowFactory(machine=machine, start=at(85), end=at(600), kind="planned")
    api = APIClient()
    api.force_authenticate(manager)
    clock.move_to(at(90))
    with django_capture_on_commit_callbacks(execute=True):
        assert api.post(f"/api/v1/machines/{machine.pk}/back-in-service/").status_code == 200
    later.refresh_from_db()
    assert later.cleared_at == at(90)
