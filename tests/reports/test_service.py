"""The report service: who sees which labs, the fixed grid, one protection per year and scope, the cache."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.contrib.auth.models import AnonymousUser
from django.core.cache import cache
from django.core.exceptions import PermissionDenied

from fablab.reports import service
from fablab.reports.disclosure import protect
from fablab.reports.metrics import year_cells
from fablab.reports.models import MachineDay
from tests.reports.outputs_world import NOW, OPEN_H, YEAR, make_world

pytestmark = pytest.mark.django_db


@pytest.fixture
def world():
    cache.clear()
    with time_machine.travel(NOW, tick=False):
        yield make_world()


def value(report, metric, **where):
    found = [
        c
        for c in report.cells
        if c.metric == metric and not c.dimension and all(getattr(c, k) == v for k, v in where.items())
    ]
    assert len(found) == 1, (metric, where, found)
    return found[0].value


@pytest.mark.parametrize(
    "period",
    [
        "",
        "2025-Q5",
        "2025-13",
        "2025-00",
        "25",
        "2025-1",
        "2025-07-01",
        "2025-01-01/2025-03-31",
        "2025-W12",
        "Q3-2025",
        "2025 ",
        "1999",
        "2027",
        "abc",
    ],
)
def test_anything_off_the_grid_is_report_period_invalid(world, period):
    with pytest.raises(service.ReportError) as caught:
        service.report(world["officer_a"], period, "network")
    assert caught.value.code == "report_period_invalid"
    assert caught.value.status == 400


@pytest.mark.parametrize("period", ["2025", "2025-Q3", "2025-07", "2026-Q4", "2026-12"])
def test_years_quarters_and_months_up_to_this_year_are_on_the_grid(world, period):
    report = service.report(world["officer_a"], period, "network")
    assert str(report.period) == period
    assert all(cell.period == period for cell in report.cells)


@pytest.mark.parametrize("level", ["", "labs", "Network", "programme", "machine-type"])
def test_an_unknown_level_is_report_level_invalid(world, level):
    with pytest.raises(service.ReportError) as caught:
        service.report(world["officer_a"], "2025", level)
    assert caught.value.code == "report_level_invalid"


def test_who_sees_which_labs(world):
    slugs = lambda user: [lab.slug for lab in service.visible_labs(user)]  # noqa: E731
    assert slugs(world["officer_a"]) == ["a-one", "a-two"]
    assert slugs(world["officer_b"]) == ["b-one"]
    assert slugs(world["manager"]) == ["a-two"]
    assert slugs(world["admin"]) == ["a-one", "a-two", "b-one"]
    assert slugs(world["member"]) == []
    assert slugs(AnonymousUser()) == []
    assert service.may_see_reports(world["officer_a"]) and service.may_see_reports(world["manager"])
    assert not service.may_see_reports(world["member"]) and not service.may_see_reports(AnonymousUser())


@pytest.mark.parametrize("who", ["member", "anonymous"])
def test_anyone_else_is_refused(world, who):
    user = AnonymousUser() if who == "anonymous" else world[who]
    with pytest.raises(PermissionDenied):
        service.report(user, "2025", "network")
    with pytest.raises(PermissionDenied):
        service.year_report(user, YEAR)


@pytest.mark.parametrize("lab", ["b-one", "no-such-lab"])
def test_another_programmes_lab_is_not_found_like_a_lab_that_does_not_exist(world, lab):
    for level in ("lab", "machine_type", "machine"):
        with pytest.raises(service.ReportError) as caught:
            service.report(world["officer_a"], "2025", level, lab)
        assert caught.value.code == "report_lab_not_found"
        assert caught.value.status == 404


def test_an_officers_network_is_their_programmes_labs_only(world):
    a = service.report(world["officer_a"], "2025", "network")
    b = service.report(world["officer_b"], "2025", "network")
    assert value(a, "net_available_hours") == 12 * (OPEN_H["a-one"] + OPEN_H["a-two"])
    assert value(b, "net_available_hours") == 12 * OPEN_H["b-one"]
    assert [lab.slug for lab in a.labs] == ["a-one", "a-two"]
    lab_rows = service.report(world["officer_a"], "2025", "lab")
    assert {cell.lab for cell in lab_rows.cells} == {"a-one", "a-two"}
    every = service.year_report(world["officer_a"], YEAR)
    assert not any(cell.lab == "b-one" for cell in every)


def test_a_manager_sees_their_lab_only(world):
    report = service.report(world["manager"], "2025-Q1", "lab")
    assert {cell.lab for cell in report.cells} == {"a-two"}
    assert value(service.report(world["manager"], "2025", "network"), "net_available_hours") == 120
    with pytest.raises(service.ReportError):
        service.report(world["manager"], "2025", "lab", "a-one")


def test_a_slice_is_cut_from_the_protection_of_the_whole_year_of_the_scope(world):
    labs = service.visible_labs(world["officer_a"])
    whole = {cell.key: cell for cell in protect(year_cells(YEAR, labs))}
    for period, level, lab in [
        ("2025-Q1", "lab", "a-two"),
        ("2025-03", "machine", None),
        ("2025", "network", None),
    ]:
        report = service.report(world["officer_a"], period, level, lab)
        assert report.cells, (period, level)
        for cell in report.cells:
            assert whole[cell.key] == cell
        expected = [
            c
            for c in whole.values()
            if c.period == period and c.level == level and (lab is None or c.lab == lab)
        ]
        assert len(report.cells) == len(expected)


def test_people_figures_of_few_people_are_suppressed_for_managers_too(world):
    b = service.report(world["officer_b"], "2025", "lab", "b-one")
    makers = [c for c in b.cells if c.metric == "active_makers"]
    assert makers and all(c.suppressed and c.public()["value"] is None for c in makers)
    a = service.report(world["officer_a"], "2025", "lab", "a-one")
    assert value(a, "active_makers") == 25


def test_a_rollup_rebuild_invalidates_the_cached_year(world):
    officer = world["officer_a"]
    assert value(service.report(officer, "2025", "network"), "net_available_hours") == 240
    # Served from the cache: the same answer however often.
    assert value(service.report(officer, "2025", "network"), "net_available_hours") == 240
    day = MachineDay.objects.filter(machine=world["machines"]["a-one"]).first()
    day.open_h = 30
    with time_machine.travel(NOW.replace(hour=13), tick=False):
        day.save()
        assert value(service.report(officer, "2025", "network"), "net_available_hours") == 260


def test_the_running_period_is_provisional(world):
    MachineDay.objects.create(machine=world["machines"]["a-one"], day=dt.date(2026, 5, 1), open_h=10)
    report = service.report(world["officer_a"], "2026-Q2", "network")
    assert report.cells
    assert all("p" in cell.obs_status for cell in report.cells)
    assert not any(
        "p" in cell.obs_status for cell in service.report(world["officer_a"], "2025", "network").cells
    )
