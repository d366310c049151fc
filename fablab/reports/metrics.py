"""The raw figures of a report: every metric of REPORTS.md for every period of one calendar year.

:func:`year_cells` is the one entry point. It reads only the daily rollups
(:class:`~fablab.reports.models.MachineDay`, :class:`~fablab.reports.models.MemberDay`), never bookings,
sessions or telemetry, with a fixed handful of grouping queries whatever the number of machines and
members, and returns *unprotected* cells: nothing here may be shown before
:func:`fablab.reports.disclosure.protect` has run on the whole year (it needs the ``people``,
``shares`` and ``users`` each cell carries, and every period and level at once, to suppress
consistently).

What is emitted where follows :data:`fablab.reports.definitions.METRICS` (levels and grains) and
:data:`fablab.reports.definitions.DIMENSIONS` (the grid of each breakdown): a cell the definitions do not
allow is never produced. The cells of the running period (the year, quarter and month that contain
``today``) carry ``obs_status`` "p" (provisional).

* machine table (:mod:`.metrics_machines`): M1–M12, booking-kind hours and the around-the-clock flag, for
  the network, each lab, each type within a lab and each machine; ``users`` on each cell;
* heatmap: used hours by weekday × hour, per lab and network, per quarter and year;
* people (:mod:`.metrics_people`): P1–P4, P6 and P7;
* groups (:mod:`.metrics_groups`): P5 and the tables by user category, gender, age band and initiative.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from django.utils import timezone

from fablab.labs.models import Lab, Machine

from .cells import Cell
from .definitions import DIMENSIONS, METRICS
from .metrics_grid import Scope
from .metrics_groups import group_cells
from .metrics_machines import heatmap_cells, machine_cells
from .metrics_people import people_cells, population

#: The tables of a report, in display order (XLSX sheets, page sections).
TABLES = (
    "machines",
    "heatmap",
    "people",
    "trainings",
    "user_category",
    "gender",
    "age_band",
    "initiatives",
)
_TABLE_OF_DIMENSION = {
    "weekday_hour": "heatmap",
    "training": "trainings",
    "gender": "gender",
    "age_band": "age_band",
    "user_category": "user_category",
    "initiative": "initiatives",
}
assert set(_TABLE_OF_DIMENSION) <= set(DIMENSIONS)


def table_of(cell: Cell) -> str:
    """The table a cell belongs to (one of :data:`TABLES`): its breakdown's, else machines or people."""
    if cell.dimension:
        return _TABLE_OF_DIMENSION.get(cell.dimension, cell.dimension)
    return "people" if METRICS[cell.metric].kind.startswith("people") else "machines"


def year_cells(year: int, labs: Iterable, *, today: dt.date | None = None) -> list[Cell]:
    """The raw cells of every period of ``year`` (the year, its quarters, its months) for ``labs``.

    ``labs`` is the viewer's scope (labs or lab ids); the network level is all of them together, each
    member counted once. ``today`` (default: the local date) marks the running periods provisional.
    """
    lab_ids = [getattr(lab, "pk", lab) for lab in labs]
    slugs = dict(Lab.objects.filter(pk__in=lab_ids).values_list("pk", "slug"))
    scope = Scope(year=year, lab_slugs=slugs, today=today or timezone.localdate())
    if not slugs:
        return []
    machines = {
        pk: (slugs[lab], mtype, slug)
        for pk, lab, mtype, slug in Machine.objects.filter(lab__in=slugs).values_list(
            "pk", "lab", "machine_type__slug", "slug"
        )
    }
    people = population(scope, machines)
    machine_cells(scope, machines, people.users)
    heatmap_cells(scope, people.users)
    people_cells(scope, people)
    group_cells(scope)
    return scope.cells
