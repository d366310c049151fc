"""The report pages: who sees what, what a hidden figure looks like, languages, the printable report.

The figures come from the real chain (rollup rows → metrics → disclosure control → service); the
rollup rows are written by hand, with known answers. The clock stands on 15 January 2026, so that the
default period is the last complete quarter, 2025-Q4.
"""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.core.cache import cache
from django.urls import reverse

from fablab.reports.models import ExportLog, MachineDay, MemberDay, Subject
from tests.factories import (
    LabFactory,
    MachineFactory,
    MachineTypeFactory,
    ProgrammeFactory,
    TrainingFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

TODAY = dt.datetime(2026, 1, 15, 12, tzinfo=dt.UTC)
Q4 = [dt.date(2025, 10, 1) + dt.timedelta(days=n) for n in range(92)]


def machine_days(machine, days, *, open_h=12, booked_h=6, used_h=4):
    by_hour = [0.0] * 24
    for hour in range(14, 14 + int(used_h)):
        by_hour[hour] = 1.0
    MachineDay.objects.bulk_create(
        MachineDay(
            machine=machine,
            day=day,
            open_h=open_h,
            booked_h=booked_h,
            used_h=used_h,
            busy_h=used_h / 2,
            realised_h=used_h,
            bookings_made=2,
            bookings_kept=2,
            used_by_hour=by_hour,
        )
        for day in days
    )


@pytest.fixture
def scene():
    """Lab Alpha (programme A) with twelve makers, three of them women; Lab Beta (programme B)."""
    cache.clear()
    alpha = LabFactory(name="Lab Alpha", slug="alpha")
    beta = LabFactory(name="Lab Beta", slug="beta")
    officer_a, officer_b = UserFactory(username="officer-a"), UserFactory(username="officer-b")
    ProgrammeFactory(name="Programme A", labs=[alpha], officers=[officer_a])
    ProgrammeFactory(name="Programme B", labs=[beta], officers=[officer_b])
    laser = MachineFactory(
        lab=alpha,
        slug="laser",
        name="Laser One",
        machine_type=MachineTypeFactory(slug="laser-cutter", name="Laser cutter"),
    )
    printer = MachineFactory(lab=beta, slug="printer", name="Printer Two")
    machine_days(laser, Q4)
    machine_days(printer, Q4, booked_h=3, used_h=2)
    training = TrainingFactory(slug="laser-safety", name="Laser safety")
    for n in range(12):
        subject = Subject.objects.create()
        MemberDay.objects.create(
            subject=subject,
            lab=alpha,
            machine=laser,
            day=Q4[n],
            kind=MemberDay.Kind.USE,
            used_h=2.0,
            gender="woman" if n < 3 else "man",
            age_band="26-35",
            user_category="individual",
        )
        if n < 2:  # two trainees: too few to show
            MemberDay.objects.create(
                subject=subject,
                lab=alpha,
                day=Q4[n],
                kind=MemberDay.Kind.TRAINING,
                training=training,
                certified=True,
            )
    yield {"alpha": alpha, "beta": beta, "officer_a": officer_a, "officer_b": officer_b}
    cache.clear()


@pytest.fixture(autouse=True)
def clock():
    with time_machine.travel(TODAY, tick=False):
        yield


def html(response) -> str:
    return response.content.decode()


def test_anonymous_visitors_are_sent_to_log_in(client):
    for url in (
        reverse("report_pages:index"),
        reverse("report_pages:lab", args=["alpha"]),
        reverse("report_pages:print") + "?period=2025-Q4",
    ):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("members:login")), url


def test_a_member_without_a_role_is_refused(client, scene):
    client.force_login(UserFactory())
    assert client.get(reverse("report_pages:index")).status_code == 403
    assert client.get(reverse("report_pages:lab", args=["alpha"])).status_code == 403
    assert client.get(reverse("report_pages:print") + "?period=2025-Q4").status_code == 403
    assert not ExportLog.objects.exists()


def test_an_officer_sees_their_programmes_labs_only(client, scene):
    client.force_login(scene["officer_a"])
    page = html(client.get(reverse("report_pages:index")))
    # The default period is the last complete quarter.
    assert "Quarter 4 2025" in page
    assert "Lab Alpha" in page and "Lab Beta" not in page
    assert 'data-lab="alpha"' in page and 'data-lab="beta"' not in page
    assert reverse("report_pages:lab", args=["alpha"]) + "?period=2025-Q4" in page
    # Booked 6 of 12 open hours a day over 92 days: the count beside the percentage.
    assert "50\xa0%" in page and "(552 of 1,104\xa0h)" in page
    # Every column's plain-language definition is on the page, not only in a tooltip.
    assert "Booked hours as a share of the net available hours." in page


def test_another_programmes_lab_is_not_found(client, scene):
    client.force_login(scene["officer_a"])
    for slug in ("beta", "no-such-lab"):
        assert client.get(reverse("report_pages:lab", args=[slug])).status_code == 404
        response = client.get(reverse("report_pages:print") + f"?period=2025-Q4&lab={slug}")
        assert response.status_code == 404
    assert not ExportLog.objects.exists()


def test_a_manager_sees_their_lab_only(client, scene):
    manager = UserFactory()
    scene["beta"].managers.add(manager)
    client.force_login(manager)
    page = html(client.get(reverse("report_pages:index")))
    assert "Lab Beta" in page and "Lab Alpha" not in page
    assert client.get(reverse("report_pages:lab", args=["beta"])).status_code == 200
    assert client.get(reverse("report_pages:lab", args=["alpha"])).status_code == 404


def test_only_a_figure_resting_on_few_people_reads_fewer_than_ten(client, scene):
    alpha = scene["alpha"]
    laser = alpha.machines.get()
    for n in range(3):  # twelve men: enough to show, were the three women not worked out from them
        MemberDay.objects.create(
            subject=Subject.objects.create(),
            lab=alpha,
            machine=laser,
            day=Q4[20 + n],
            kind=MemberDay.Kind.USE,
            gender="man",
        )
    client.force_login(scene["officer_a"])
    page = html(client.get(reverse("report_pages:lab", args=["alpha"]) + "?period=2025-Q4"))
    gender = page[page.index("<h3>Gender</h3>") : page.index("<h3>Age band</h3>")]

    def row(category: str) -> str:
        found = gender[gender.index(f'<tr data-category="{category}">') :]
        return found[: found.index("</tr>")]

    women, men = row("woman"), row("man")
    assert ">&lt;10</abbr>" in women and 'href="#note-c"' in women
    # The men are hidden with the women (secondary suppression): not "fewer than 10" at all.
    assert ">•</abbr>" in men and 'href="#note-c-withheld"' in men and "&lt;10" not in men
    assert 'id="note-c"' in page and 'id="note-c-withheld"' in page


def test_fewer_than_ten_only_in_a_column_that_counts_people(client, scene):
    alpha = scene["alpha"]
    laser = alpha.machines.get()
    for n in range(3):  # three students: their makers and their used hours rest on too few people
        MemberDay.objects.create(
            subject=Subject.objects.create(),
            lab=alpha,
            machine=laser,
            day=Q4[30 + n],
            kind=MemberDay.Kind.USE,
            used_h=2.0,
            user_category="student",
        )
    client.force_login(scene["officer_a"])
    page = html(client.get(reverse("report_pages:lab", args=["alpha"]) + "?period=2025-Q4"))
    table = page[page.index("<h3>User categories</h3>") : page.index("<h3>Gender</h3>")]
    row = table[table.index('<tr data-category="student">') :]
    makers, hours = row[: row.index("</tr>")].split("</td><td>")
    assert ">&lt;10</abbr>" in makers and 'href="#note-c"' in makers
    # Three people's hours may be many hours: "<10" would read as "less than 10 hours".
    assert ">•</abbr>" in hours and 'href="#note-c-withheld"' in hours and "&lt;10" not in hours


def test_a_lab_page_shows_hidden_figures_as_fewer_than_ten(client, scene):
    client.force_login(scene["officer_a"])
    response = client.get(reverse("report_pages:lab", args=["alpha"]) + "?period=2025-Q4")
    assert response.status_code == 200
    page = html(response)
    # Three women and nine men: both gender cells rest on fewer than 10 people; two trainees too.
    gender = page[page.index("<h3>Gender</h3>") : page.index("<h3>Age band</h3>")]
    assert "&lt;10" in gender and 'href="#note-c"' in gender
    trainings = page[page.index('id="trainings-title"') : page.index('id="initiatives-title"')]
    assert "Laser safety" in trainings and "&lt;10" in trainings
    assert 'id="note-c"' in page
    # Twelve active makers are shown.
    assert '<li class="figure-card" data-metric="active_makers">' in page
    active = page[page.index('data-metric="active_makers"') :]
    assert ">12<" in active[: active.index("</li>")]
    # The charts' data, the heatmap and the machine table.
    assert 'id="report-charts"' in page and 'class="heatmap"' in page
    assert "Laser One" in page and "Laser cutter" in page


def test_demographics_only_on_a_quarter(client, scene):
    client.force_login(scene["officer_a"])
    page = html(client.get(reverse("report_pages:lab", args=["alpha"]) + "?period=2025"))
    assert "Gender and age are shown per quarter only" in page
    assert 'data-category="woman"' not in page


@pytest.mark.parametrize("language", ["nl", "fr"])
def test_the_pages_render_in_dutch_and_french(client, scene, language):
    officer = UserFactory(language=language)
    scene["alpha"].programmes.first().officers.add(officer)
    client.force_login(officer)
    for url in (
        reverse("report_pages:index"),
        reverse("report_pages:lab", args=["alpha"]) + "?period=2025-11",
        reverse("report_pages:print") + "?period=2025&lab=alpha",
    ):
        response = client.get(url)
        assert response.status_code == 200, url
        assert f'<html lang="{language}">' in html(response)


def test_the_printable_report_is_logged_as_an_export(client, scene):
    officer = scene["officer_a"]
    client.force_login(officer)
    response = client.get(reverse("report_pages:print") + "?period=2025-Q4&lab=alpha")
    assert response.status_code == 200
    page = html(response)
    assert "Print / save as PDF" in page and "print.css" in page
    log = ExportLog.objects.get()
    assert (log.user, log.fmt, log.period, log.level, log.lab, log.via) == (
        officer,
        "print",
        "2025-Q4",
        "lab",
        "alpha",
        "web",
    )
    assert log.rows > 0
    assert client.get(reverse("report_pages:print") + "?period=2025").status_code == 200
    network = ExportLog.objects.order_by("-pk").first()
    assert (network.level, network.lab, network.period) == ("network", "", "2025")


@pytest.mark.parametrize("period", ["2025-10", "2025-10-01..2025-12-31", "last-90-days", "2031"])
def test_the_printable_report_takes_a_quarter_or_a_year_only(client, scene, period):
    client.force_login(scene["officer_a"])
    response = client.get(reverse("report_pages:print") + f"?period={period}&lab=alpha")
    assert response.status_code == 400
    assert not ExportLog.objects.exists()


@pytest.mark.parametrize("period", ["2025-10-01..2025-12-31", "2025-Q5", "2031"])
def test_a_free_or_unknown_period_is_a_bad_request(client, scene, period):
    client.force_login(scene["officer_a"])
    assert client.get(reverse("report_pages:index") + f"?period={period}").status_code == 400
    response = client.get(reverse("report_pages:lab", args=["alpha"]) + f"?period={period}")
    assert response.status_code == 400


def test_the_picker_leads_to_a_period_of_the_grid(client, scene):
    client.force_login(scene["officer_a"])
    response = client.get(reverse("report_pages:index") + "?year=2025&part=Q3")
    assert response.status_code == 302
    assert response["Location"] == reverse("report_pages:index") + "?period=2025-Q3"
    response = client.get(reverse("report_pages:lab", args=["alpha"]) + "?year=2025&part=")
    assert response["Location"] == reverse("report_pages:lab", args=["alpha"]) + "?period=2025"


def test_the_download_links_point_at_the_logged_exports(client, scene):
    client.force_login(scene["officer_a"])
    page = html(client.get(reverse("report_pages:lab", args=["alpha"]) + "?period=2025-Q4"))
    export = reverse("reports:export", args=["csv"])
    assert f'href="{export}?period=2025-Q4&amp;level=lab&amp;lab=alpha"' in page
    assert reverse("reports:export", args=["xlsx"]) in page
    assert reverse("reports:export", args=["csv-metadata"]) in page


def test_officers_land_on_their_reports_and_others_on_the_labs(client, scene):
    login = reverse("members:login")
    response = client.post(login, {"username": "officer-a", "password": "pw-test-1234"})
    assert response["Location"] == reverse("report_pages:index")
    assert ">Reports<" in html(client.get(reverse("labs:list")))
    client.logout()
    UserFactory(username="maker")
    response = client.post(login, {"username": "maker", "password": "pw-test-1234"})
    assert response["Location"] == reverse("labs:list")
    assert ">Reports<" not in html(client.get(reverse("labs:list")))
    client.logout()
    # A next asked for wins.
    response = client.post(login + "?next=/labs/", {"username": "officer-a", "password": "pw-test-1234"})
    assert response["Location"] == "/labs/"


def test_a_machine_with_two_users_shows_its_utilisation_as_a_band(client, scene):
    cutter = MachineFactory(lab=scene["alpha"], slug="cutter", name="Vinyl Cutter")
    machine_days(cutter, Q4, booked_h=4, used_h=1)  # 33 % booked, 8 % used
    for n in range(2):
        MemberDay.objects.create(
            subject=Subject.objects.create(),
            lab=scene["alpha"],
            machine=cutter,
            day=Q4[n],
            kind=MemberDay.Kind.USE,
            used_h=1.0,
        )
    client.force_login(scene["officer_a"])
    page = html(client.get(reverse("report_pages:lab", args=["alpha"]) + "?period=2025-Q4"))
    machines = page[page.index('id="machines-title"') : page.index('id="bookings-title"')]
    row = machines[machines.index("Vinyl Cutter") :]
    row = row[: row.index("</tr>")]
    assert "25–50\xa0%" in row and "0–25\xa0%" in row and 'href="#note-band"' in row
    # The hours behind a band are not printed beside it.
    assert " of " not in row


def test_a_hidden_month_is_a_gap_in_the_charts(client, scene):
    import json

    client.force_login(scene["officer_a"])
    page = html(client.get(reverse("report_pages:lab", args=["alpha"]) + "?period=2025"))
    data = page[page.index('id="report-charts"') :]
    charts = json.loads(data[data.index(">") + 1 : data.index("</script>")])
    assert charts["utilisation"]["months"] == list(range(1, 13))
    booked = charts["utilisation"]["series"][0]["values"]
    # No open hours before October: nothing to divide by; then 50 % booked each month.
    assert booked[:9] == [None] * 9 and booked[9:] == [50.0, 50.0, 50.0]
    hours = {s["label"]: s["values"] for s in charts["hours"]["series"]}
    assert hours["Used hours"][9:] == [124.0, 120.0, 124.0]


def test_the_declared_label_carries_its_colon_for_the_translators(client, scene, monkeypatch):
    from django.utils.translation import trans_real

    officer = UserFactory(language="fr")
    scene["alpha"].programmes.first().officers.add(officer)
    client.force_login(officer)
    # French puts a (narrow) no-break space before a colon: only a label holding the colon lets it.
    catalog = trans_real.translation("fr")._catalog._catalogs[0]
    key = "before the share of makers who declared the attribute\x04Declared:"
    monkeypatch.setitem(catalog, key, "Déclaré\u202f:")
    page = html(client.get(reverse("report_pages:lab", args=["alpha"]) + "?period=2025-Q4"))
    assert '<p class="coverage">Déclaré\u202f: <span' in page
