"""Report snapshots: requests read a slice of a protected year computed once, the scheduler keeps them current."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext

from fablab.reports import service, snapshots
from fablab.reports.models import MachineDay
from tests.reports.outputs_world import NOW, make_world

pytestmark = pytest.mark.django_db


@pytest.fixture
def world():
    cache.clear()
    with time_machine.travel(NOW, tick=False):
        yield make_world()


def hours(report) -> float:
    return next(c.value for c in report.cells if c.metric == "net_available_hours" and not c.dimension)


def test_a_warm_report_reads_its_slice_without_computing_the_year(world, monkeypatch):
    officer = world["officer_a"]
    first = service.report(officer, "2025-Q1", "lab")
    computed = []
    monkeypatch.setattr(snapshots, "protect_year", lambda *a, **k: computed.append(a) or [])
    with CaptureQueriesContext(connection) as queries:
        again = service.report(officer, "2025-Q1", "lab")
    assert again.cells == first.cells and not computed
    # The access check and the rollups' stamp; no query on the rollups' rows.
    assert not any('reports_memberday" WHERE' in q["sql"] for q in queries.captured_queries)


def test_the_scheduler_builds_every_scope_in_use_and_requests_then_stay_warm(world, monkeypatch):
    built = snapshots.scheduled_pass(NOW)
    # This year and (in May) not last year: all labs, officer A's, officer B's, the manager's.
    assert built == 4
    calls = []
    real = snapshots.protect_year
    monkeypatch.setattr(snapshots, "protect_year", lambda *a, **k: calls.append(a) or real(*a, **k))
    for who in ("officer_a", "officer_b", "manager", "admin"):
        service.report(world[who], "2026-Q1", "network")
    assert calls == []


def test_a_snapshot_the_scheduler_built_is_served_while_it_builds_the_next_one(world):
    officer = world["officer_a"]
    with time_machine.travel(NOW, tick=False):
        snapshots.build(2025, service.visible_labs(officer), today=NOW.date(), by="scheduler")
        assert hours(service.report(officer, "2025", "network")) == 240
    day = MachineDay.objects.filter(machine=world["machines"]["a-one"]).first()
    with time_machine.travel(NOW + dt.timedelta(minutes=1), tick=False):
        day.open_h = 30
        day.save()
        # The rollups changed a minute ago: the scheduler's snapshot is still the answer...
        assert hours(service.report(officer, "2025", "network")) == 240
    with time_machine.travel(NOW + dt.timedelta(seconds=snapshots.STALE_S + 1), tick=False):
        # ...but never for longer than STALE_S: then the request computes the year itself.
        assert hours(service.report(officer, "2025", "network")) == 260


def test_a_snapshot_a_request_built_is_never_served_stale(world):
    officer = world["officer_a"]
    assert hours(service.report(officer, "2025", "network")) == 240
    day = MachineDay.objects.filter(machine=world["machines"]["a-one"]).first()
    with time_machine.travel(NOW + dt.timedelta(minutes=1), tick=False):
        day.open_h = 30
        day.save()
        assert hours(service.report(officer, "2025", "network")) == 260


def test_a_slice_the_cache_lost_is_computed_again(world):
    officer = world["officer_a"]
    first = service.report(officer, "2025-07", "machine")
    manifest = cache.get(
        snapshots._manifest_key(2025, sorted(lab.pk for lab in service.visible_labs(officer)))
    )
    cache.delete(snapshots._slice_key(manifest["id"], ("p", "2025-07", "machine")))
    assert service.report(officer, "2025-07", "machine").cells == first.cells


def test_slices_hold_every_cell_once_per_view():
    from fablab.reports.cells import Cell

    cells = [
        Cell("2025", metric="m"),
        Cell("2025", lab="x", metric="m"),
        Cell("2025-Q1", lab="x", machine_type="t", machine="p", metric="m"),
        Cell("2025", lab="y", metric="m"),
    ]
    cut = snapshots.slices(cells)
    assert cut[("p", "2025", "network")] == [cells[0]]
    assert cut[("p", "2025", "lab")] == [cells[1], cells[3]]
    assert cut[("summary",)] == [cells[0], cells[1], cells[3]]
    assert cut[("lab", "x")] == [cells[0], cells[1], cells[2]]
    assert cut[("lab", "y")] == [cells[0], cells[3]]
