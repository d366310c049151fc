"""The public pages: labs, a lab's machines, a machine's week."""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo

import pytest
from django.urls import reverse
from django.utils import timezone

from tests.factories import (
    BookingFactory,
    CertificationFactory,
    LabFactory,
    MachineFactory,
    MaintenanceWindowFactory,
    TrainingFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

BRUSSELS = zoneinfo.ZoneInfo("Europe/Brussels")


def next_monday() -> dt.date:
    today = timezone.localdate(timezone=BRUSSELS)
    return today + dt.timedelta(days=7 - today.weekday())


def at(day: dt.date, hour: int, minute: int = 0, tz=BRUSSELS) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=tz)


def week_url(machine, monday: dt.date) -> str:
    return reverse("labs:machine", args=[machine.lab.slug, machine.slug]) + f"?week={monday.isoformat()}"


def test_anyone_sees_the_labs(client):
    LabFactory(name="FabLab Centre")
    response = client.get(reverse("labs:list"))
    assert response.status_code == 200
    assert "FabLab Centre" in response.content.decode()


def test_lab_page_lists_machines_with_type_training_certification_and_next_free(client):
    lab = LabFactory()
    laser = TrainingFactory(name="Laser safety")
    cnc = TrainingFactory(name="CNC safety")
    MachineFactory(lab=lab, name="Laser one", required_training=laser)
    MachineFactory(lab=lab, name="Router", required_training=cnc)
    MachineFactory(lab=lab, name="Printer")
    maker = UserFactory()
    CertificationFactory(member=maker, training=laser)
    client.force_login(maker)

    html = client.get(reverse("labs:detail", args=[lab.slug])).content.decode()

    assert "Laser one" in html and "Router" in html and "Printer" in html
    assert "3D printer" in html
    assert html.count("You are certified") == 1
    assert html.count("You are not certified") == 1
    assert "No training needed" in html
    # Every bookable machine of a lab open every day has a next free time, in lab time.
    assert len(re.findall(r'<time datetime="[^"]+\+0[12]:00"', html)) == 3


def test_lab_page_for_an_unknown_lab_is_404(client):
    assert client.get(reverse("labs:detail", args=["nowhere"])).status_code == 404


def test_anonymous_week_view_shows_free_and_booked_but_never_names(client):
    machine = MachineFactory()
    monday = next_monday()
    other = UserFactory(username="alice-secret", first_name="Alice", last_name="Secret")
    BookingFactory(
        machine=machine, member=other, start=at(monday, 10), end=at(monday, 11), purpose="my secret"
    )

    response = client.get(week_url(machine, monday))

    html = response.content.decode()
    assert response.status_code == 200
    assert "alice" not in html.lower() and "Secret" not in html and "my secret" not in html
    assert html.count('class="slot booked"') == 2  # 10:00 and 10:30
    assert 'class="slot free"' in html
    assert "Log in" in html


def test_week_view_marks_my_bookings_mine_and_others_booked(client):
    machine = MachineFactory()
    monday = next_monday()
    me, other = UserFactory(), UserFactory(username="bob-hidden")
    BookingFactory(machine=machine, member=me, start=at(monday, 9), end=at(monday, 10))
    BookingFactory(machine=machine, member=other, start=at(monday, 14), end=at(monday, 14, 30))
    client.force_login(me)

    html = client.get(week_url(machine, monday)).content.decode()

    assert html.count('class="slot mine"') == 2
    assert html.count('class="slot booked"') == 1
    assert "bob-hidden" not in html


def test_week_view_shows_maintenance(client):
    machine = MachineFactory()
    monday = next_monday()
    MaintenanceWindowFactory(machine=machine, start=at(monday, 12), end=at(monday, 13))
    html = client.get(week_url(machine, monday)).content.decode()
    assert html.count('class="slot maintenance"') == 2


def test_free_slots_link_to_the_booking_form_with_their_start(client):
    machine = MachineFactory()
    monday = next_monday()
    html = client.get(week_url(machine, monday)).content.decode()
    book = reverse("booking:book", args=[machine.pk])
    first = f"{book}?start={monday.isoformat()}T08%3A00%3A00%2B01%3A00"
    if timezone.localtime(at(monday, 8), BRUSSELS).utcoffset() == dt.timedelta(hours=2):
        first = first.replace("%2B01", "%2B02")
    assert f'href="{first}"' in html
    # 08:00-20:00 in 30-minute slots, seven days.
    assert html.count('class="slot free"') == 7 * 24


def test_week_view_links_to_previous_and_next_week_with_and_without_htmx(client):
    machine = MachineFactory()
    monday = next_monday()
    html = client.get(week_url(machine, monday)).content.decode()
    following = (monday + dt.timedelta(days=7)).isoformat()
    assert f'href="?week={following}"' in html
    assert f'hx-get="?week={following}"' in html
    assert f'href="?week={(monday - dt.timedelta(days=7)).isoformat()}"' in html


def test_htmx_gets_only_the_week(client):
    machine = MachineFactory()
    response = client.get(week_url(machine, next_monday()), headers={"HX-Request": "true"})
    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith('<section id="week"')
    assert "<html" not in html
    assert "HX-Request" in response["Vary"]


def test_htmx_history_restore_gets_the_whole_page(client):
    machine = MachineFactory()
    response = client.get(
        week_url(machine, next_monday()), headers={"HX-Request": "true", "HX-History-Restore-Request": "true"}
    )
    assert "<html" in response.content.decode()


@pytest.mark.parametrize("week", ["garbage", "0001-01-01", "9999-12-31", "2026-02-30", "", "%00"])
def test_a_bad_week_parameter_shows_the_current_week(client, week):
    machine = MachineFactory()
    response = client.get(reverse("labs:machine", args=[machine.lab.slug, machine.slug]), {"week": week})
    assert response.status_code == 200
    this_monday = timezone.localdate(timezone=BRUSSELS)
    this_monday -= dt.timedelta(days=this_monday.weekday())
    assert f'?week={(this_monday + dt.timedelta(days=7)).isoformat()}"' in response.content.decode()


def test_any_day_of_a_week_shows_that_week(client):
    machine = MachineFactory()
    monday = next_monday()
    html = client.get(week_url(machine, monday + dt.timedelta(days=3))).content.decode()
    assert f'href="?week={(monday + dt.timedelta(days=7)).isoformat()}"' in html


def test_week_view_is_in_the_labs_time_zone(client):
    lab = LabFactory(time_zone="America/New_York")
    machine = MachineFactory(lab=lab)
    new_york = zoneinfo.ZoneInfo("America/New_York")
    today = timezone.localdate(timezone=new_york)
    monday = today + dt.timedelta(days=7 - today.weekday())
    html = client.get(week_url(machine, monday)).content.decode()
    offset = at(monday, 8, tz=new_york).strftime("%z")
    assert f'datetime="{monday.isoformat()}T08:00:00{offset[:3]}:{offset[3:]}"' in html


def test_an_unknown_machine_is_404(client):
    machine = MachineFactory()
    assert client.get(reverse("labs:machine", args=[machine.lab.slug, "nope"])).status_code == 404
    other_lab = LabFactory()
    assert client.get(reverse("labs:machine", args=[other_lab.slug, machine.slug])).status_code == 404
