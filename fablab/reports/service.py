"""The one entry point to the programme reports: who may see which labs, and which protected cells.

Pages, exports, the API and the open data all call this module, never :mod:`fablab.reports.metrics`
or :mod:`fablab.reports.disclosure` directly, so that nothing reaches a viewer without the disclosure
control, and so that every viewer gets the same suppression pattern whichever slice they download:

* **Access.** A programme officer sees the labs of their programmes, a lab manager their labs, a
  network administrator every lab (:mod:`fablab.members.roles`); the union of these is the viewer's
  *scope*. Anyone else sees nothing (:class:`~django.core.exceptions.PermissionDenied`). The
  ``network`` level is all labs of the scope together: an officer's network never includes a lab
  outside their programmes.
* **One protection per year and scope.** The disclosure control runs on the whole calendar year of the
  scope (every period, level and table at once) and the answer is then sliced. Protecting each slice
  on its own would give a different suppression pattern per download, and comparing two downloads
  could then recover a hidden cell.
* **Snapshots.** The protected year of a scope is computed once and kept, cut into the slices the
  outputs ask for (:mod:`fablab.reports.snapshots`); the scheduler builds the next one after the
  rollups change, so that a report request reads one small slice and never computes a year.
* **Fixed grid.** Periods are ``2026``, ``2026-Q3`` or ``2026-07`` only; anything else, a free range
  included, is refused with the code ``report_period_invalid`` (disclosure rule 2).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.db.models import Max, Min
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from fablab.labs.models import Lab
from fablab.members import roles

from . import snapshots
from .cells import LEVELS, Cell, Period
from .models import MachineDay, MemberDay

#: Years a report may ask for: from this one up to the current year (the grid has no future).
FIRST_YEAR = 2000

#: code -> (HTTP status, translated message). The API lists the same codes in ``api_errors.API_CODES``.
ERRORS: dict[str, tuple[int, object]] = {
    "report_period_invalid": (
        400,
        _(
            "Choose a calendar year (2026), quarter (2026-Q3) or month (2026-07); free date ranges are not offered."
        ),
    ),
    "report_level_invalid": (400, _("Choose the level network, lab, machine_type or machine.")),
    "report_lab_not_found": (404, _("There is no such lab among the labs you may see.")),
}


class ReportError(Exception):
    """A report request outside the fixed grid, the known levels or the viewer's labs."""

    def __init__(self, code: str, detail: str | None = None) -> None:
        self.code = code
        self.status, message = ERRORS[code]
        self.detail = str(detail or message)
        super().__init__(f"{code}: {self.detail}")


@dataclass(frozen=True)
class Report:
    """The protected cells of one period and level (and lab) for one viewer.

    ``labs`` is the viewer's whole scope (what ``network`` adds up); ``lab`` the one lab asked for, if any.
    """

    period: Period
    level: str
    lab: Lab | None
    cells: list[Cell]
    labs: list[Lab]
    generated_at: dt.datetime

    @property
    def scope_labs(self) -> list[Lab]:
        return self.labs

    def rows(self) -> list[dict]:
        """The public tidy rows (suppressed values blanked): what every export writes."""
        return [cell.public() for cell in self.cells]


# --------------------------------------------------------------------------------------- access


def visible_labs(viewer) -> list[Lab]:
    """The labs whose reports ``viewer`` may see, by name: overseen or managed (all for an admin)."""
    if roles.is_network_admin(viewer):
        return list(Lab.objects.order_by("name", "pk"))
    ids = set(roles.overseen_labs(viewer).values_list("pk", flat=True))
    ids |= set(roles.managed_labs(viewer).values_list("pk", flat=True))
    return list(Lab.objects.filter(pk__in=ids).order_by("name", "pk"))


def may_see_reports(viewer) -> bool:
    """Whether ``viewer`` sees any report at all (officers, managers, network administrators)."""
    return roles.is_network_admin(viewer) or bool(visible_labs(viewer))


# --------------------------------------------------------------------------------------- validation


def parse_period(period: str | Period, *, today: dt.date | None = None) -> Period:
    """A period of the fixed grid, from ``FIRST_YEAR`` to this year; else ``report_period_invalid``."""
    if isinstance(period, Period):
        parsed = period
    else:
        try:
            parsed = Period.parse(str(period) if period is not None else "")
        except ValueError:
            raise ReportError("report_period_invalid") from None
    today = today or timezone.localdate()
    if not FIRST_YEAR <= parsed.year <= today.year:
        raise ReportError("report_period_invalid")
    return parsed


def parse_level(level: str) -> str:
    if level not in LEVELS:
        raise ReportError("report_level_invalid")
    return level


def _lab_in_scope(slug: str | None, scope: list[Lab]) -> Lab | None:
    if not slug:
        return None
    for lab in scope:
        if lab.slug == slug:
            return lab
    # The same answer for a lab that does not exist and one outside the scope.
    raise ReportError("report_lab_not_found")


# --------------------------------------------------------------------------------------- the report


def report(viewer, period: str | Period, level: str, lab: str | None = None, *, today=None) -> Report:
    """The protected cells of ``period`` at ``level`` (of one ``lab`` slug, or of every lab in scope).

    Checks in this order: may the viewer see reports at all (else ``PermissionDenied``), is the period on
    the grid and the level known (else ``ReportError``), is the lab in the scope (else
    ``report_lab_not_found``, the same for a lab that does not exist). At ``network`` level a ``lab``
    narrows nothing: the network is the whole scope.
    """
    scope = visible_labs(viewer)
    if not scope:
        raise PermissionDenied
    today = today or timezone.localdate()
    parsed = parse_period(period, today=today)
    level = parse_level(level)
    chosen = _lab_in_scope(lab, scope)
    cells = snapshots.slice_of(parsed.year, scope, ("p", str(parsed), level), today=today)
    if chosen is not None and level != "network":
        cells = [cell for cell in cells if cell.lab == chosen.slug]
    return Report(
        period=parsed, level=level, lab=chosen, cells=cells, labs=scope, generated_at=timezone.now()
    )


def year_report(viewer, year: int, lab: str | None = None, *, today=None) -> list[Cell]:
    """The protected cells of a year for pages that chart a whole year (months side by side): with a
    ``lab``, that lab's cells at every level and the network's; without, the network and lab levels."""
    scope = visible_labs(viewer)
    if not scope:
        raise PermissionDenied
    today = today or timezone.localdate()
    parse_period(Period(int(year)), today=today)
    chosen = _lab_in_scope(lab, scope)
    key = ("lab", chosen.slug) if chosen is not None else ("summary",)
    return snapshots.slice_of(int(year), scope, key, today=today)


def protected_year(year: int, labs: Iterable[Lab], *, today: dt.date | None = None) -> list[Cell]:
    """Every protected cell of a whole year for the scope ``labs`` (tests and tools; pages and exports
    read the snapshot's slices)."""
    return snapshots.protect_year(year, labs, today=today or timezone.localdate())


def open_data_cells(*, today: dt.date | None = None) -> list[Cell]:
    """The open data: every complete calendar year with rollups, all labs, protected for open data.

    Only complete years are published (the year still running would change from one download to the
    next, and its provisional figures invite comparing successive downloads). ``protect`` keeps the
    network and lab × year tables only and rounds the counts (disclosure rule 9).
    """
    from .disclosure import protect
    from .metrics import year_cells

    today = today or timezone.localdate()
    labs = list(Lab.objects.order_by("pk"))
    key = snapshots.cache_key("open", 0, [lab.pk for lab in labs], today)
    cells = cache.get(key)
    if cells is None:
        cells = []
        for year in open_data_years(today=today):
            cells.extend(protect(year_cells(year, labs, today=today), open_data=True))
        cache.set(key, cells, snapshots.OPEN_DATA_SECONDS)
    return cells


def open_data_years(*, today: dt.date | None = None) -> list[int]:
    """The complete calendar years that have rollup rows (machine days or member days)."""
    today = today or timezone.localdate()
    bounds = [
        MachineDay.objects.aggregate(first=Min("day"), last=Max("day")),
        MemberDay.objects.aggregate(first=Min("day"), last=Max("day")),
    ]
    firsts = [b["first"] for b in bounds if b["first"]]
    lasts = [b["last"] for b in bounds if b["last"]]
    if not firsts:
        return []
    first = max(min(firsts).year, FIRST_YEAR)
    last = min(max(lasts).year, today.year - 1)
    return list(range(first, last + 1))
