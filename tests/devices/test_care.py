"""Machine care: run hours and jobs from sessions, laser-on hours from InfluxDB, service intervals and alerts.

Time is the test's: every call gets ``now``/``until``; sessions and readings are written at known times.
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import PermissionDenied
from django.urls import reverse
from django.utils import timezone

from devices import care
from devices.influx import telemetry_line, telemetry_tags
from devices.models import Alert, ServiceInterval, ServiceRecord, UsageSession
from devices.scheduler import Scheduler
from tests.devices.conftest import make_machine, store_for
from tests.factories import LabFactory, UserFactory
from tests.support.mosquitto import free_port

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2030, 3, 4, 8, 0, tzinfo=dt.UTC)


def at(hours: float = 0, seconds: float = 0) -> dt.datetime:
    return T0 + dt.timedelta(hours=hours, seconds=seconds)


def session(machine, start: dt.datetime, end: dt.datetime | None, **kwargs) -> UsageSession:
    outcome = UsageSession.Outcome.RUNNING if end is None else UsageSession.Outcome.FINISHED
    return UsageSession.objects.create(
        machine=machine, started_at=start, ended_at=end, outcome=outcome, **kwargs
    )


@pytest.fixture(autouse=True)
def fresh_laser_cache():
    care.laser_cache.clear()
    yield
    care.laser_cache.clear()


@pytest.fixture
def store_down(settings):
    settings.INFLUX_URL = f"http://127.0.0.1:{free_port()}"
    settings.INFLUX_DATABASE = "fablab"
    settings.INFLUX_TOKEN = ""


@pytest.fixture
def store(influx, settings):
    settings.INFLUX_URL = influx.url
    settings.INFLUX_DATABASE = influx.database
    settings.INFLUX_TOKEN = ""
    s = store_for(influx)
    yield s
    s.close()


@pytest.fixture
def lab_people():
    lab = LabFactory(slug="care-lab")
    manager = UserFactory(username="care-manager")
    lab.managers.add(manager)
    return lab, manager, UserFactory(username="care-maker")


def open_alerts(machine) -> list[Alert]:
    return list(Alert.objects.filter(machine=machine, kind=Alert.Kind.SERVICE_DUE, cleared_at__isnull=True))


# ----------------------------------------------------------------------------------- run hours, jobs


def test_run_hours_clip_the_sessions_to_the_interval_and_count_a_running_one_up_to_until():
    machine = make_machine(slug="cnc-1")
    other = make_machine(machine.lab, slug="cnc-2")
    session(machine, at(-5), at(-4))  # before: not counted
    session(machine, at(-1), at(1))  # crosses `since`: 1 h of it counts
    session(machine, at(2), at(2.5))  # 0.5 h
    session(machine, at(3), None)  # running: up to `until`
    session(other, at(0), at(3))  # another machine's

    assert care.run_hours(machine, at(0), at(4)) == pytest.approx(2.5)
    assert care.run_hours(machine, at(0), at(2.25)) == pytest.approx(1.25)  # clipped at `until` too
    assert care.run_hours(machine, at(-10), at(4)) == pytest.approx(4.5)
    assert care.run_hours(machine, at(5), at(5)) == 0.0
    assert care.job_count(machine, at(0), at(4)) == 2  # started in [since, until): the last two
    assert care.job_count(machine, at(-10), at(4)) == 4
    assert care.job_count(machine, at(0), at(3)) == 1  # the running one starts at `until`: not in


# ----------------------------------------------------------------------------------- intervals, alerts


def test_an_interval_is_due_exactly_when_its_hours_are_reached_and_a_service_restarts_it(lab_people):
    lab, manager, _maker = lab_people
    machine = make_machine(lab, slug="cnc-1")
    session(machine, at(0), None)  # runs from T0 on
    bearings = ServiceInterval.objects.create(
        machine=machine, name="Spindle bearings", every_hours=2, counted_from=at(0)
    )
    belts = ServiceInterval.objects.create(machine=machine, name="Belts", every_hours=3, counted_from=at(0))

    assert care.scheduled_pass(at(2, -1)) == 0
    assert open_alerts(machine) == []
    before = care.status(bearings, at(2, -1))
    assert not before.due and before.left == pytest.approx(1 / 3600)

    assert care.scheduled_pass(at(2)) == 1
    [alert] = open_alerts(machine)
    assert alert.message == "Service due: Spindle bearings." and alert.raised_at == at(2)
    assert care.status(bearings, at(2)).due and care.status(bearings, at(2)).left == 0
    assert care.scheduled_pass(at(2, 30)) == 0  # one alert, not one per pass

    care.scheduled_pass(at(3))  # the second task is due too: the same alert lists both
    [alert] = open_alerts(machine)
    assert alert.message == "Service due: Belts, Spindle bearings."

    record = care.record_service(bearings, manager, " new bearings ", at(3.5))
    assert (record.at, record.by, record.note, record.hours) == (at(3.5), manager, "new bearings", 3.5)
    after = care.status(bearings, at(4))
    assert after.since == at(3.5) and after.used == pytest.approx(0.5) and not after.due
    [alert] = open_alerts(machine)  # belts are still due
    assert alert.message == "Service due: Belts."
    # Pressed twice: one service.
    assert care.record_service(bearings, manager, "", at(3.5, 20)).pk == record.pk

    care.record_service(belts, manager, "", at(4))
    assert open_alerts(machine) == []
    assert Alert.objects.get(machine=machine, kind=Alert.Kind.SERVICE_DUE).cleared_at == at(4)
    assert care.scheduled_pass(at(4, 60)) == 0
    # Counting again from the service: due 2 h of running later.
    assert care.scheduled_pass(at(5.5)) == 1
    assert open_alerts(machine)[0].message == "Service due: Spindle bearings."


def test_the_scheduler_runs_the_care_step():
    machine = make_machine(slug="cnc-1")
    session(machine, at(0), at(1))
    ServiceInterval.objects.create(machine=machine, name="Oil", every_hours=1, counted_from=at(-1))
    done = Scheduler().run_pass(at(2))
    assert done["care"] == 1
    assert open_alerts(machine)[0].message == "Service due: Oil."


def test_a_machine_whose_due_interval_is_removed_loses_its_alert():
    machine = make_machine(slug="cnc-1")
    session(machine, at(0), at(1))
    oil = ServiceInterval.objects.create(machine=machine, name="Oil", every_hours=1, counted_from=at(-1))
    care.scheduled_pass(at(2))
    oil.delete()
    assert care.scheduled_pass(at(3)) == 1
    assert open_alerts(machine) == []


def test_only_a_manager_of_the_lab_may_record_a_service(lab_people):
    lab, _manager, maker = lab_people
    machine = make_machine(lab, slug="cnc-1")
    other_lab_manager = UserFactory()
    LabFactory(slug="elsewhere").managers.add(other_lab_manager)
    interval = ServiceInterval.objects.create(machine=machine, name="Oil", every_hours=1, counted_from=at(0))
    for who in (maker, other_lab_manager):
        with pytest.raises(PermissionDenied):
            care.record_service(interval, who, "", at(1))
    assert not ServiceRecord.objects.exists()


# ----------------------------------------------------------------------------------- laser-on hours


def write_power(store, machine, start: dt.datetime, values: list[float], every_s: float = 1.0) -> None:
    """``laser_power_pct`` readings from ``start``, one every ``every_s`` seconds (as a GRBL bridge polls)."""
    tags = telemetry_tags(lab=machine.lab.slug, machine=machine.slug, machine_type="laser", adapter="grbl")
    lines = [
        telemetry_line(
            tags, {"laser_power_pct": v, "feed_mm_min": 1200.0}, int((start.timestamp() + i * every_s) * 1000)
        )
        for i, v in enumerate(values)
    ]
    store.write_lines(lines)


def test_laser_on_hours_come_from_the_power_readings(store):
    machine = make_machine(slug="laser-1", adapter="grbl", interval=10)
    begin = at(0, 17)  # not on a bucket's edge
    # 600 s on, 300 s off, 300 s on at 1 s; then silence (bridge gone) for 10 min; 120 s on, 60 s off.
    write_power(store, machine, begin, [60.0] * 600 + [0.0] * 300 + [35.5] * 300)
    write_power(store, machine, begin + dt.timedelta(seconds=1800), [80.0] * 120 + [0.0] * 60)

    hours = care.laser_on_hours(machine, at(0), at(1))
    assert hours * 3600 == pytest.approx(1020, abs=3)  # within a reading per switch
    # Clipped to the interval: from 100 s into the first run.
    assert care.laser_on_hours(machine, begin + dt.timedelta(seconds=100), at(1)) * 3600 == pytest.approx(
        920, abs=3
    )
    assert care.laser_on_hours(machine, at(2), at(3)) == 0.0  # nothing reported: not on

    # A laser interval counts laser-on hours, not run hours.
    session(machine, at(0), at(1))
    tube = ServiceInterval.objects.create(
        machine=machine,
        name="Laser tube",
        every_hours=1,
        basis=ServiceInterval.Basis.LASER,
        counted_from=at(0),
    )
    s = care.status(tube, at(1))
    assert s.used * 3600 == pytest.approx(1020, abs=3) and not s.due


def test_a_machine_without_a_link_has_no_laser_figure(store):
    from tests.factories import MachineFactory

    machine = MachineFactory()
    assert care.laser_on_hours(machine, at(0), at(1)) is None


def test_influxdb_down_makes_laser_hours_unknown_and_the_run_hours_still_raise_their_alert(store_down):
    machine = make_machine(slug="laser-1", adapter="grbl")
    session(machine, at(0), at(3))
    tube = ServiceInterval.objects.create(
        machine=machine,
        name="Laser tube",
        every_hours=1,
        basis=ServiceInterval.Basis.LASER,
        counted_from=at(0),
    )
    ServiceInterval.objects.create(machine=machine, name="Mirrors", every_hours=2, counted_from=at(0))

    assert care.laser_on_hours(machine, at(0), at(3)) is None
    s = care.status(tube, at(3))
    assert s.used is None and s.left is None and not s.due and not s.known

    assert care.scheduled_pass(at(3)) == 1
    assert open_alerts(machine)[0].message == "Service due: Mirrors."


def test_unknown_laser_hours_never_clear_an_open_alert(settings, store_down):
    machine = make_machine(slug="laser-1", adapter="grbl")
    ServiceInterval.objects.create(
        machine=machine,
        name="Laser tube",
        every_hours=1,
        basis=ServiceInterval.Basis.LASER,
        counted_from=at(0),
    )
    Alert.objects.create(
        machine=machine, kind=Alert.Kind.SERVICE_DUE, message="Service due: Laser tube.", raised_at=at(1)
    )
    assert care.scheduled_pass(at(2)) == 0
    assert [a.message for a in open_alerts(machine)] == ["Service due: Laser tube."]


# ----------------------------------------------------------------------------------- the page


@pytest.fixture
def page(lab_people, settings):
    settings.INFLUX_DATABASE = ""  # no store: no charts, no laser figures asked
    settings.INFLUX_TOKEN = ""
    lab, manager, maker = lab_people
    machine = make_machine(lab, slug="cnc-1")
    now = timezone.now()
    session(machine, now - dt.timedelta(hours=3), now - dt.timedelta(hours=1))
    interval = ServiceInterval.objects.create(
        machine=machine, name="Spindle bearings", every_hours=10, counted_from=now - dt.timedelta(days=1)
    )
    return {"lab": lab, "manager": manager, "maker": maker, "machine": machine, "interval": interval}


def machine_url(p) -> str:
    return reverse("devices:machine", args=[p["lab"].slug, p["machine"].slug])


def test_the_manager_sees_the_care_section_with_the_hours_left(client, page):
    client.force_login(page["manager"])
    html = client.get(machine_url(page)).content.decode()
    assert 'id="care"' in html
    assert "2.0 run hours, 1 job" in html
    row = html.split(f'data-interval="{page["interval"].pk}"')[1].split("</tr>")[0]
    assert "Spindle bearings" in row and "8.0 h" in row and "10 h" in row
    assert reverse("devices:care-done", args=["care-lab", "cnc-1", page["interval"].pk]) in row


def test_a_maker_sees_no_care_and_may_not_post_to_it(client, page):
    client.force_login(page["maker"])
    response = client.get(machine_url(page))
    assert response.status_code == 200 and 'id="care"' not in response.content.decode()
    done = reverse("devices:care-done", args=["care-lab", "cnc-1", page["interval"].pk])
    assert client.post(done, {"note": "x"}).status_code == 403
    add = reverse("devices:care-add", args=["care-lab", "cnc-1"])
    assert client.post(add, {"name": "Belts", "every_hours": "5", "basis": "run"}).status_code == 403
    remove = reverse("devices:care-remove", args=["care-lab", "cnc-1", page["interval"].pk])
    assert client.post(remove).status_code == 403
    assert not ServiceRecord.objects.exists()
    assert list(ServiceInterval.objects.values_list("name", flat=True)) == ["Spindle bearings"]


def test_a_manager_records_a_service_and_adds_and_removes_intervals(client, page):
    client.force_login(page["manager"])
    done = reverse("devices:care-done", args=["care-lab", "cnc-1", page["interval"].pk])
    response = client.post(done, {"note": "greased"})
    assert response.status_code == 302 and response["Location"].endswith("#care")
    record = ServiceRecord.objects.get()
    assert (record.by, record.note, record.hours) == (page["manager"], "greased", 2.0)

    add = reverse("devices:care-add", args=["care-lab", "cnc-1"])
    assert client.post(add, {"name": "Belts", "every_hours": "50", "basis": "run"}).status_code == 302
    belts = ServiceInterval.objects.get(name="Belts")
    assert belts.every_hours == 50 and belts.basis == "run"

    # Bad input: the page again, with the error and what was typed.
    again = client.post(add, {"name": "belts", "every_hours": "50", "basis": "run"})
    assert again.status_code == 400
    html = again.content.decode()
    assert "already has a task named" in html and 'value="belts"' in html
    laser = client.post(add, {"name": "Tube", "every_hours": "1000", "basis": "laser"})
    assert laser.status_code == 400 and "GRBL controller" in laser.content.decode()
    zero = client.post(add, {"name": "Tube", "every_hours": "0", "basis": "run"})
    assert zero.status_code == 400
    assert ServiceInterval.objects.count() == 2

    remove = reverse("devices:care-remove", args=["care-lab", "cnc-1", belts.pk])
    assert client.post(remove).status_code == 302
    assert not ServiceInterval.objects.filter(pk=belts.pk).exists()


def test_the_page_shows_laser_on_hours_and_an_overdue_task(client, lab_people, store):
    lab, manager, _maker = lab_people
    machine = make_machine(lab, slug="laser-1", adapter="grbl", interval=10)
    now = timezone.now().replace(microsecond=0)
    start = now - dt.timedelta(hours=2)
    write_power(store, machine, start, [50.0] * 1800 + [0.0] * 600)  # 30 min on
    session(machine, start, start + dt.timedelta(minutes=40))
    tube = ServiceInterval.objects.create(
        machine=machine,
        name="Laser tube",
        every_hours=1,
        basis=ServiceInterval.Basis.LASER,
        counted_from=start,
    )
    oil = ServiceInterval.objects.create(
        machine=machine, name="Oil", every_hours=1, counted_from=start - dt.timedelta(hours=1)
    )
    session(machine, start - dt.timedelta(hours=1), start - dt.timedelta(minutes=30))  # 0.5 h before

    client.force_login(manager)
    html = client.get(reverse("devices:machine", args=["care-lab", "laser-1"])).content.decode()
    assert "0.5 laser-on hours" in html
    tube_row = html.split(f'data-interval="{tube.pk}"')[1].split("</tr>")[0]
    assert "0.5 h" in tube_row and "overdue" not in tube_row
    oil_row = (
        html.split(f'data-interval="{oil.pk}"')[0].rsplit("<tr", 1)[1]
        + html.split(f'data-interval="{oil.pk}"')[1].split("</tr>")[0]
    )
    assert 'class="warning due"' in oil_row and "overdue by 0.2 h" in oil_row  # 0.5 + 0.67 h of 1 h


# ----------------------------------------------------------------------------------- the API


def test_the_care_api_answers_the_labs_managers_only(page):
    from rest_framework.test import APIClient

    url = f"/api/v1/machines/{page['machine'].pk}/care/"
    api = APIClient()
    api.force_authenticate(page["maker"])
    assert api.get(url).status_code == 403
    assert api.get("/api/v1/machines/999999/care/").status_code == 404
    api.force_authenticate(page["manager"])
    body = api.get(url).json()
    assert body["machine"] == page["machine"].pk and body["laser"] is None
    assert body["use"]["recent_hours"] == pytest.approx(2.0) and body["use"]["total_jobs"] == 1
    [interval] = body["intervals"]
    assert (interval["name"], interval["every_hours"], interval["due"]) == ("Spindle bearings", 10, False)
    assert interval["used_hours"] == pytest.approx(2.0) and interval["left_hours"] == pytest.approx(8.0)
    assert body["records"] == []
