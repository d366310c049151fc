"""Retention: old bookings and sessions are pseudonymised, so the reports keep their numbers and nobody
can be told from them (issue 12, members' rights).

After ``settings.FABLAB_PSEUDONYMISE_AFTER_DAYS`` (default three years) from its end:

* a member booking keeps its machine, times, status and usage, but its member is replaced by the
  member's report pseudonym (``Booking.subject``, :func:`fablab.reports.subjects.subject_for`) — the
  rollups count the same pseudonym as before, so rebuilding an old day gives the same figures. Its free
  texts (purpose, fault line) are blanked, and who approved, cancelled or checked it in is forgotten; a
  member series' occurrence leaves its series (the series names the member), and a member series with
  no occurrence left is deleted;
* a usage session forgets its job's name and id (file names often carry a person's name);
* a machine command forgets who issued it (``source`` still says a member did);
* a fault-reported or job-failed alert forgets its message (members' own lines, prefixed with their
  names; a job's file name).

:func:`pseudonymise_pass` runs as the scheduler's ``retention`` step. Each kind of row is done in
batches of at most :data:`BATCH` per pass (a backlog drains over passes), each batch in one transaction
under a row lock, selecting only rows not yet done: the pass is idempotent, and two schedulers side by
side change each row once.
"""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.db import transaction

from .subjects import subjects_for

#: At most this many rows of each kind per pass.
BATCH = 500
DEFAULT_AFTER_DAYS = 3 * 365


def cutoff(now: dt.datetime) -> dt.datetime:
    """Rows that ended before this are pseudonymised."""
    days = getattr(settings, "FABLAB_PSEUDONYMISE_AFTER_DAYS", DEFAULT_AFTER_DAYS)
    return now - dt.timedelta(days=days)


def pseudonymise_pass(now: dt.datetime) -> int:
    """One batch of each kind of old row; returns how many rows changed."""
    before = cutoff(now)
    return (
        _bookings(before) + _member_series(before) + _sessions(before) + _commands(before) + _alerts(before)
    )


def _bookings(before: dt.datetime) -> int:
    from fablab.booking.models import Booking, Series

    with transaction.atomic():
        rows = list(
            Booking.objects.select_for_update(of=("self",))
            .filter(member__isnull=False, end__lt=before)
            .select_related("series")
            .order_by("end", "pk")[:BATCH]
        )
        if not rows:
            return 0
        subjects = subjects_for(b.member_id for b in rows)
        for booking in rows:
            booking.subject_id = subjects[booking.member_id]
            booking.member = None
            booking.purpose = ""
            booking.fault_report = ""
            booking.decided_by = booking.cancelled_by = booking.checked_in_by = None
            if booking.series is not None and booking.series.kind == Series.Kind.MEMBER:
                booking.series = None
        Booking.objects.bulk_update(
            rows,
            [
                "subject",
                "member",
                "purpose",
                "fault_report",
                "decided_by",
                "cancelled_by",
                "checked_in_by",
                "series",
            ],
        )
    return len(rows)


def _member_series(before: dt.datetime) -> int:
    """A member's recurring booking that ended long ago and has no occurrence left names nobody's activity."""
    from fablab.booking.models import Booking, Series

    ids = list(
        Series.objects.filter(kind=Series.Kind.MEMBER, until__lt=before.date())
        .exclude(pk__in=Booking.objects.filter(series__isnull=False).values("series_id"))
        .order_by("pk")
        .values_list("pk", flat=True)[:BATCH]
    )
    if not ids:
        return 0
    _total, by_model = Series.objects.filter(pk__in=ids).delete()
    return by_model.get(Series._meta.label, 0)


def _sessions(before: dt.datetime) -> int:
    from django.db.models import Q

    from devices.models import UsageSession

    with transaction.atomic():
        ids = list(
            UsageSession.objects.select_for_update()
            .filter(ended_at__lt=before)
            .filter(~Q(job_name="") | ~Q(job_id=""))
            .order_by("ended_at", "pk")
            .values_list("pk", flat=True)[:BATCH]
        )
        return UsageSession.objects.filter(pk__in=ids).update(job_name="", job_id="") if ids else 0


def _commands(before: dt.datetime) -> int:
    from devices.models import Command

    with transaction.atomic():
        ids = list(
            Command.objects.select_for_update()
            .filter(issued_at__lt=before, issued_by__isnull=False)
            .order_by("issued_at", "pk")
            .values_list("pk", flat=True)[:BATCH]
        )
        return Command.objects.filter(pk__in=ids).update(issued_by=None) if ids else 0


def _alerts(before: dt.datetime) -> int:
    from devices.models import Alert

    # Alerts that quote members' words or their jobs' names.
    wordy = (Alert.Kind.FAULT_REPORTED, Alert.Kind.JOB_FAILED)

    with transaction.atomic():
        ids = list(
            Alert.objects.select_for_update()
            .filter(kind__in=wordy, raised_at__lt=before, cleared_at__lt=before)
            .exclude(message="")
            .order_by("raised_at", "pk")
            .values_list("pk", flat=True)[:BATCH]
        )
        return Alert.objects.filter(pk__in=ids).update(message="") if ids else 0
