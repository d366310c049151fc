"""Protected years, computed once and kept in slices: what makes a report request cheap.

Protecting a year is the expensive part of a report: the disclosure control must see every period, level
and table of the scope at once (:mod:`fablab.reports.service` explains why), which for a network of 200
machines is about a hundred thousand cells and seconds of work. A request needs a few hundred of them.
So a *snapshot* is the protected year of one scope, stored in the cache cut into the slices the outputs
read:

* ``("p", period, level)`` — one period at one level (the API, the CSV and XLSX downloads);
* ``("lab", slug)`` — a lab's cells at every level plus the network's, for a year (a lab's page);
* ``("summary",)`` — the network and lab levels for a year (the overview page).

A small *manifest* per (year, scope) names the current snapshot and what it was built from: the
rollups' stamp (:func:`rollup_stamp`) and the local date (the running period's provisional flag). A
request whose manifest matches reads its slice; otherwise it builds the snapshot itself (a *cold*
report). The scheduler (:func:`scheduled_pass`) builds the snapshots of every scope someone may look at
right after the rollups change, so requests stay warm. While it does, the previous snapshot it built
is still served, for at most :data:`STALE_S`: a report may be minutes behind the rollups, never more.

The cache is Django's: Redis when ``REDIS_URL`` is set (shared by the web processes and the
scheduler), else each process's memory, where the scheduler's snapshots are not seen by the web server
and requests build their own (correct, but cold after every rollup change).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable

from django.conf import settings
from django.core.cache import cache
from django.db.models import Count, Max
from django.utils import timezone

from .cells import Cell
from .models import MachineDay, MemberDay

log = logging.getLogger(__name__)

#: How long a snapshot built by the scheduler is served after the rollups changed under it.
STALE_S = getattr(settings, "REPORTS_SNAPSHOT_STALE_S", 15 * 60)
#: Snapshots and manifests expire from the cache after this long unused (the scheduler renews them).
SNAPSHOT_SECONDS = 2 * 24 * 3600
#: The open data (complete years only) is cached this long.
OPEN_DATA_SECONDS = 60 * 60


def rollup_stamp() -> str:
    """Changes whenever the rollups do: a machine day whose figures changed is inserted again with a new
    ``computed_at``, a member day with a new id; a rebuild that changes no figure changes neither (it
    leaves those rows alone), nor does an erased member (by design)."""
    machines = MachineDay.objects.aggregate(newest=Max("computed_at"), n=Count("pk"))
    members = MemberDay.objects.aggregate(newest=Max("pk"), n=Count("pk"))
    newest = machines["newest"].isoformat() if machines["newest"] else "-"
    return f"{newest}/{machines['n']}/{members['newest']}/{members['n']}"


def cache_key(kind: str, year: int, lab_ids: list[int], today: dt.date, stamp: str | None = None) -> str:
    stamp = rollup_stamp() if stamp is None else stamp
    raw = f"{kind}|{year}|{','.join(map(str, lab_ids))}|{today.isoformat()}|{stamp}"
    return "reports:" + hashlib.sha256(raw.encode()).hexdigest()


def _manifest_key(year: int, lab_ids: list[int]) -> str:
    scope = hashlib.sha256(",".join(map(str, lab_ids)).encode()).hexdigest()[:32]
    return f"reports:manifest:{year}:{scope}"


def _slice_key(snapshot_id: str, key: tuple) -> str:
    return f"reports:snap:{snapshot_id}:" + ":".join(map(str, key))


def protect_year(year: int, labs: Iterable, *, today: dt.date) -> list[Cell]:
    """The protected cells of a whole year for the scope ``labs`` (computed, not cached)."""
    from .disclosure import protect
    from .metrics import year_cells

    return protect(year_cells(year, sorted(labs, key=lambda lab: lab.pk), today=today))


def slices(cells: Iterable[Cell]) -> dict[tuple, list[Cell]]:
    """A protected year cut into the slices the outputs read (see the module's docstring)."""
    out: dict[tuple, list[Cell]] = defaultdict(list)
    network: list[Cell] = []
    for cell in cells:
        level = cell.level
        out[("p", cell.period, level)].append(cell)
        if level in ("network", "lab"):
            out[("summary",)].append(cell)
        if cell.lab:
            out[("lab", cell.lab)].append(cell)
        else:
            network.append(cell)
    for key in [k for k in out if k[0] == "lab"]:
        out[key] = network + out[key]
    return out


def build(year: int, labs: Iterable, *, today: dt.date, by: str = "request") -> str:
    """Compute the snapshot of (year, scope), store its slices and manifest; returns its id.

    The stamp is read *before* computing: rollups rebuilt during the computation make the next request
    (or scheduler pass) see a different stamp and build again, never serve this one as newer than it is.
    """
    labs = sorted(labs, key=lambda lab: lab.pk)
    lab_ids = [lab.pk for lab in labs]
    stamp = rollup_stamp()
    began = time.monotonic()
    cut = slices(protect_year(year, labs, today=today))
    snapshot_id = uuid.uuid4().hex
    cache.set_many({_slice_key(snapshot_id, key): value for key, value in cut.items()}, SNAPSHOT_SECONDS)
    manifest = {
        "id": snapshot_id,
        "stamp": stamp,
        "today": today.isoformat(),
        "by": by,
        "built_at": time.time(),
        "keys": sorted(map(repr, cut)),
    }
    cache.set(_manifest_key(year, lab_ids), manifest, SNAPSHOT_SECONDS)
    log.debug(
        "report snapshot %s of %s for labs %s in %.2f s", snapshot_id, year, lab_ids, time.monotonic() - began
    )
    return snapshot_id


def _current(year: int, lab_ids: list[int], today: dt.date) -> dict | None:
    manifest = cache.get(_manifest_key(year, lab_ids))
    if not manifest or manifest["today"] != today.isoformat():
        return None
    if manifest["stamp"] == rollup_stamp():
        return manifest
    if manifest["by"] == "scheduler" and time.time() - manifest["built_at"] < STALE_S:
        return manifest  # the scheduler is building the next one
    return None


def slice_of(year: int, labs: Iterable, key: tuple, *, today: dt.date) -> list[Cell]:
    """One slice of the current snapshot of (year, scope), building the snapshot if there is none.

    A slice the snapshot does not have (a lab or period without cells) is empty; a slice it has but the
    cache lost (evicted, restarted) makes the snapshot be built again.
    """
    labs = sorted(labs, key=lambda lab: lab.pk)
    lab_ids = [lab.pk for lab in labs]
    manifest = _current(year, lab_ids, today)
    if manifest is not None:
        if repr(key) not in manifest["keys"]:
            return []
        value = cache.get(_slice_key(manifest["id"], key))
        if value is not None:
            return value
    snapshot_id = build(year, labs, today=today)
    return cache.get(_slice_key(snapshot_id, key)) or []


# --------------------------------------------------------------------------------------- scheduler


def scopes() -> list[list]:
    """Every distinct scope someone may look at: each officer's and manager's labs, and all labs."""
    from fablab.labs.models import Lab
    from fablab.members.models import Programme

    labs = {lab.pk: lab for lab in Lab.objects.all()}
    found: dict[tuple, list] = {tuple(sorted(labs)): list(labs.values())}
    by_user: dict[int, set[int]] = defaultdict(set)
    for user_id, lab_id in Programme.objects.filter(officers__is_active=True).values_list("officers", "labs"):
        if lab_id is not None:
            by_user[user_id].add(lab_id)
    for user_id, lab_id in Lab.managers.through.objects.filter(user__is_active=True).values_list(
        "user_id", "lab_id"
    ):
        by_user[user_id].add(lab_id)
    for ids in by_user.values():
        key = tuple(sorted(ids))
        found.setdefault(key, [labs[i] for i in key if i in labs])
    return list(found.values())


_last_pass: dt.datetime | None = None
#: The scheduler looks at the manifests at most this often (seconds).
PASS_INTERVAL_S = 30.0


def scheduled_pass(now: dt.datetime) -> int:
    """Build the snapshots that are out of date, for every scope in use, of the years whose rollups the
    scheduler keeps current (this year, and last year during January's first days); returns how many.

    Runs right after the rollup step; cheap when nothing changed (one manifest read per scope and year).
    """
    global _last_pass
    # Measured on the pass's own clock: a clock that went back (tests travelling in time) runs the pass.
    if _last_pass is not None and 0 <= (now - _last_pass).total_seconds() < PASS_INTERVAL_S:
        return 0
    _last_pass = now
    today = timezone.localdate(now)
    years = sorted({today.year, (today - dt.timedelta(days=1)).year})
    stamp = rollup_stamp()
    built = 0
    for year in years:
        for labs in scopes():
            lab_ids = sorted(lab.pk for lab in labs)
            manifest = cache.get(_manifest_key(year, lab_ids))
            if manifest and manifest["today"] == today.isoformat() and manifest["stamp"] == stamp:
                continue
            build(year, labs, today=today, by="scheduler")
            built += 1
    return built
