"""Machine care from real use: run hours, jobs, laser-on hours, service intervals and their alerts.

What is counted, and from what:

* **run hours** (:func:`run_hours`) — the machine's usage sessions (:class:`devices.models.UsageSession`,
  opened and closed by its statuses, :mod:`devices.sessions`), each clipped to ``[since, until)``; a
  session still running counts up to ``until``. One aggregate query: the database sums the clipped
  durations. Sessions of one machine never overlap (a new one closes the open one first), so the sum
  is the time the machine ran;
* **jobs** (:func:`job_count`) — the sessions that *started* in ``[since, until)``: one run, one job
  (a plug-only machine's runs have no job id, and still count);
* **laser-on hours** (:func:`laser_on_hours`) — from the ``laser_power_pct`` telemetry a GRBL
  controller in laser mode reports, in InfluxDB (the estimate and its error:
  :meth:`devices.influx.InfluxStore.field_on_seconds`). Raw telemetry is kept ``INFLUX_RAW_RETENTION``;
  the hours before the first raw reading still kept come from the hourly on-seconds the downsampling
  keeps (:func:`_laser_seconds`). When the store is not configured or does not answer the figure is
  *unknown* (``None``), never 0, and nothing else depends on it.

A :class:`~devices.models.ServiceInterval` counts its basis (run or laser-on hours) from its last
:class:`~devices.models.ServiceRecord` (else from ``counted_from``); it is *due* the moment the hours
used reach ``every_hours`` (:func:`status`). :func:`record_service` (the lab's managers only) writes a
record with the hours used at that moment, which restarts the count.

Alerts: :func:`scheduled_pass` (the scheduler's ``care`` step) keeps at most one open ``service_due``
alert per machine (:mod:`devices.alerts`: raising is a claim, so of several schedulers one opens it),
whose message lists the due tasks; the message follows the list, and the alert is cleared once no
interval is due. An interval whose hours are unknown never clears nor shortens an alert (nothing is
known to be done); the run-hour intervals are decided all the same. Laser-on hours are asked of
InfluxDB at most every :data:`LASER_REFRESH` per interval (answers, and failures, are remembered in
this process), so the pass costs one aggregate query per run-hour interval plus two reads (five for
an interval counted from before the raw retention). A service recorded also closes the machine's
``fault_reported`` alert (members' fault reports made before it:
:func:`devices.fault_reports.close_reported_before`): the manager who serviced it has seen to the machine.

Imports the models, :mod:`devices.alerts`, :mod:`devices.fault_reports`, :mod:`devices.influx`,
:mod:`devices.influx_retention` and the lab roles only.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import DurationField, ExpressionWrapper, F, Max, OuterRef, Q, Subquery, Sum, Value
from django.db.models.functions import Coalesce, Greatest, Least
from django.utils import timezone
from django.utils.translation import gettext as _

from devices import alerts, fault_reports
from devices.models import Alert, MachineLink, MachineStatus, ServiceInterval, ServiceRecord, UsageSession
from fablab.labs.models import Machine
from fablab.members import roles

log = logging.getLogger(__name__)

#: The telemetry field a GRBL controller in laser mode reports (S relative to ``$30``).
LASER_FIELD = "laser_power_pct"
#: How long the pass reuses a laser-on figure (or a failed query) before asking InfluxDB again.
LASER_REFRESH = dt.timedelta(minutes=5)
#: A care query must not hold the scheduler's pass long when InfluxDB hangs.
QUERY_TIMEOUT_S = 5.0
#: A second "service done" for the same task within this time is the same service (a double submit).
SAME_SERVICE = dt.timedelta(minutes=1)
#: The page's "recent" period.
RECENT = dt.timedelta(days=30)


def _machine_id(machine: Machine | int) -> int:
    return machine if isinstance(machine, int) else machine.pk


# ----------------------------------------------------------------------------------- run hours


def run_hours(machine: Machine | int, since: dt.datetime, until: dt.datetime | None = None) -> float:
    """Hours the machine ran in ``[since, until)`` (``until`` default: now), from its usage sessions.

    Each session is clipped to the interval; one still running counts up to ``until``.
    """
    until = until or timezone.now()
    if until <= since:
        return 0.0
    end = Least(Coalesce(F("ended_at"), Value(until)), Value(until))
    clipped = ExpressionWrapper(end - Greatest(F("started_at"), Value(since)), output_field=DurationField())
    total = (
        UsageSession.objects.filter(machine_id=_machine_id(machine), started_at__lt=until)
        .filter(Q(ended_at__isnull=True) | Q(ended_at__gt=since))
        .aggregate(total=Sum(clipped))["total"]
    )
    return max(total.total_seconds(), 0.0) / 3600 if total else 0.0


def job_count(machine: Machine | int, since: dt.datetime, until: dt.datetime | None = None) -> int:
    """The machine's runs (usage sessions) that started in ``[since, until)`` (``until`` default: now)."""
    until = until or timezone.now()
    return UsageSession.objects.filter(
        machine_id=_machine_id(machine), started_at__gte=since, started_at__lt=until
    ).count()


# ----------------------------------------------------------------------------------- laser-on hours


def _store():
    """The site's telemetry store, or None when none is configured."""
    from django.conf import settings

    from devices.influx import InfluxStore

    try:
        return InfluxStore(
            settings.INFLUX_URL,
            database=settings.INFLUX_DATABASE,
            token=settings.INFLUX_TOKEN,
            org=settings.INFLUX_ORG,
            bucket=settings.INFLUX_BUCKET,
            timeout_s=QUERY_TIMEOUT_S,
        )
    except ValueError:  # no database named, or v2 settings incomplete
        return None


def laser_on_hours(
    machine: Machine, since: dt.datetime, until: dt.datetime | None = None, *, store=None
) -> float | None:
    """Hours the laser was on in ``[since, until)``, or None when unknown.

    Unknown: the machine has no bridge link, no store is configured, or the store failed to answer
    (logged). ``store``: an :class:`~devices.influx.InfluxStore` to use (not closed here); by
    default one from the settings, closed after the query. The reading interval's bound is the
    link's ``telemetry_interval_s``; the method and its error are
    :meth:`~devices.influx.InfluxStore.field_on_seconds`'s, also for the hours whose raw readings
    expired (:func:`_laser_seconds`).
    """
    from devices.influx import InfluxError

    until = until or timezone.now()
    cap = (
        MachineLink.objects.filter(machine_id=machine.pk)
        .values_list("telemetry_interval_s", flat=True)
        .first()
    )
    if cap is None:
        return None
    own = store is None
    if own:
        store = _store()
        if store is None:
            return None
    try:
        seconds = _laser_seconds(store, machine, since, until, float(cap))
    except InfluxError as exc:
        log.warning("laser-on hours of %s/%s unknown: %s", machine.lab.slug, machine.slug, exc)
        return None
    finally:
        if own:
            store.close()
    return seconds / 3600


def _laser_seconds(store, machine: Machine, since: dt.datetime, until: dt.datetime, cap: float) -> float:
    """Laser-on seconds in ``[since, until)``: raw readings where they are kept, the hourly figures before.

    InfluxDB drops raw readings older than ``INFLUX_RAW_RETENTION``, and counting only those still
    kept would let an old tube's hours shrink back. Before the machine's first raw reading in the
    period, the hours (the whole hour ``since`` falls in: the safe side) come from the on-seconds
    the downsampling kept per hour (:func:`devices.influx_retention.hourly_on_seconds`); from that
    reading's hour on, from the raw readings; no hour counts twice. While ``since`` is within the
    raw retention nothing can have expired and only the raw readings are asked, as on InfluxDB 2.x,
    whose downsampling is a task of the operator's (docs/telemetry-retention.md).
    """
    from devices import influx_retention as retention

    lab, slug = machine.lab.slug, machine.slug
    if store.v2 or not _raw_may_have_expired(since):
        return store.field_on_seconds(lab, slug, LASER_FIELD, since, until, reading_cap_s=cap)
    since_ms, until_ms = int(since.timestamp() * 1000), int(until.timestamp() * 1000)
    first = store.first_reading_ms(lab, slug, LASER_FIELD, since, until)
    # Raw readings are whole from the first one's hour on: InfluxDB drops whole shard groups, on the hour.
    raw_from_ms = until_ms if first is None else first - first % retention.HOUR_MS
    if raw_from_ms <= since_ms:
        return store.field_on_seconds(lab, slug, LASER_FIELD, since, until, reading_cap_s=cap)
    since_hour_ms = since_ms - since_ms % retention.HOUR_MS
    older = retention.hourly_on_seconds(
        store, lab, slug, LASER_FIELD, since_hour_ms, raw_from_ms, reading_cap_s=cap
    )
    raw_from = dt.datetime.fromtimestamp(raw_from_ms / 1000, dt.UTC)
    return older + store.field_on_seconds(lab, slug, LASER_FIELD, raw_from, until, reading_cap_s=cap)


def _raw_may_have_expired(since: dt.datetime) -> bool:
    """Whether raw telemetry from ``since`` on may be gone: older than ``INFLUX_RAW_RETENTION`` (if set wrong: yes)."""
    from devices.influx_retention import configured_durations

    try:
        raw_s = configured_durations()[0]
    except ValueError:
        return True
    return raw_s > 0 and since < timezone.now() - dt.timedelta(seconds=raw_s)


class _LaserCache:
    """Laser-on hours per ``(interval, counted since)``, each asked of InfluxDB at most every LASER_REFRESH.

    Keyed by the pass's ``now`` (not the wall clock), so a pass given ``now`` behaves the same in tests.
    A failed query (None) is remembered as long: a store that is down is not asked every pass.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: dict[tuple[int, dt.datetime], tuple[dt.datetime, float | None]] = {}

    def get(self, interval: ServiceInterval, since: dt.datetime, now: dt.datetime) -> float | None:
        key = (interval.pk, since)
        with self._lock:
            hit = self._rows.get(key)
        if hit is not None and dt.timedelta(0) <= now - hit[0] < LASER_REFRESH:
            return hit[1]
        hours = laser_on_hours(interval.machine, since, now)
        with self._lock:
            # Drop the interval's older keys (a service restarted its count).
            for old in [k for k in self._rows if k[0] == interval.pk and k != key]:
                del self._rows[old]
            self._rows[key] = (now, hours)
        return hours

    def clear(self) -> None:
        with self._lock:
            self._rows.clear()


laser_cache = _LaserCache()


# ----------------------------------------------------------------------------------- intervals


@dataclasses.dataclass(frozen=True)
class Status:
    """Where a service interval stands at ``now``.

    ``used`` and ``left`` are hours (``left`` negative once overdue), None when unknown (laser-on
    hours without an answer from InfluxDB); ``due`` is True once ``used`` reached ``every``.
    """

    interval: ServiceInterval
    since: dt.datetime
    used: float | None
    every: int
    now: dt.datetime

    @property
    def known(self) -> bool:
        return self.used is not None

    @property
    def left(self) -> float | None:
        return None if self.used is None else self.every - self.used

    @property
    def due(self) -> bool:
        return self.used is not None and self.used >= self.every

    @property
    def overdue(self) -> bool:
        return self.used is not None and self.used > self.every

    @property
    def overdue_by(self) -> float | None:
        """Hours past the interval (None unless overdue)."""
        return self.used - self.every if self.overdue else None


def counted_since(interval: ServiceInterval) -> dt.datetime:
    """When the interval's count started: its last service, else ``counted_from``."""
    last = getattr(interval, "last_service_at", None)
    if last is None and not hasattr(interval, "last_service_at"):
        last = interval.records.aggregate(at=Max("at"))["at"]
    return max(last, interval.counted_from) if last is not None else interval.counted_from


def hours_used(interval: ServiceInterval, since: dt.datetime, now: dt.datetime, *, cached: bool = False):
    """The interval's basis hours in ``[since, now)``: run hours, or laser-on hours (None when unknown)."""
    if interval.basis == ServiceInterval.Basis.LASER:
        if cached:
            return laser_cache.get(interval, since, now)
        return laser_on_hours(interval.machine, since, now)
    return run_hours(interval.machine_id, since, now)


def status(interval: ServiceInterval, now: dt.datetime, *, cached: bool = False) -> Status:
    """The interval's hours used since its last service (or ``counted_from``), hours left, due or not.

    ``cached``: laser-on hours may come from the pass's cache (:data:`LASER_REFRESH` old at most).
    """
    since = counted_since(interval)
    return Status(
        interval=interval, since=since, used=hours_used(interval, since, now, cached=cached),
        every=interval.every_hours, now=now,
    )  # fmt: skip


def intervals_with_last_service(**filters):
    """Service intervals (with their machine and lab) annotated with ``last_service_at`` (one query)."""
    last = ServiceRecord.objects.filter(interval=OuterRef("pk")).order_by("-at").values("at")[:1]
    return (
        ServiceInterval.objects.filter(**filters)
        .select_related("machine", "machine__lab")
        .annotate(last_service_at=Subquery(last))
        .order_by("machine_id", "name", "pk")
    )


def record_service(
    interval: ServiceInterval, by, note: str = "", now: dt.datetime | None = None
) -> ServiceRecord:
    """Record that ``by`` did the interval's service at ``now``: its count restarts from there.

    Only the managers of the machine's lab may (else :class:`PermissionDenied`, nothing written).
    The record keeps the hours used until then (empty when the laser-on figure is unknown). Those hours are
    counted before the transaction (a laser figure may wait on InfluxDB, and no row stays locked
    meanwhile); inside it the interval's row is locked and its last service read again, so two managers
    pressing the button together write in turn, and the second counts from the first. A second record
    within :data:`SAME_SERVICE` of the last one is that same service (a double submit) and is not
    written again. Afterwards the machine's ``service_due`` alert follows its intervals: cleared when
    none is due, else its message lists those still due; and the fault reported before the service
    is closed.
    """
    now = now or timezone.now()
    machine = interval.machine
    if not roles.manages_lab(by, machine.lab_id):
        raise PermissionDenied(_("Only the lab's managers may record a service."))
    note = (note or "").strip()[:300]

    def since_last(last: ServiceRecord | None) -> dt.datetime:
        return max(last.at, interval.counted_from) if last is not None else interval.counted_from

    seen = interval.records.order_by("-at", "-pk").first()
    used = hours_used(interval, since_last(seen), now)
    with transaction.atomic():
        ServiceInterval.objects.select_for_update().filter(pk=interval.pk).first()
        last = interval.records.order_by("-at", "-pk").first()
        if last is not None and dt.timedelta(0) <= now - last.at < SAME_SERVICE:
            record = last
        else:
            if last != seen:  # recorded meanwhile by someone else: count from that one
                used = hours_used(interval, since_last(last), now)
            record = ServiceRecord.objects.create(
                interval=interval, at=now, by=by, note=note, hours=None if used is None else round(used, 2)
            )
    refresh_machine(machine, now)
    fault_reports.close_reported_before(machine.pk, record.at, by, how=fault_reports.SERVICE_RECORDED)
    return record


# ----------------------------------------------------------------------------------- alerts


def due_message(tasks: list[str]) -> str:
    return _("Service due: %(tasks)s.") % {"tasks": ", ".join(tasks)}


def _apply(machine_id: int, statuses: list[Status], now: dt.datetime, open_alert: Alert | None) -> int:
    """Bring the machine's ``service_due`` alert to its statuses; 1 when it changed, else 0."""
    due = [s.interval.name for s in statuses if s.due]
    unknown = any(not s.known for s in statuses)
    if due:
        message = due_message(due)[:500]
        if open_alert is None:
            return int(alerts.raise_alert(machine_id, Alert.Kind.SERVICE_DUE, message, now))
        if open_alert.message != message and not unknown:
            # The list changed (a new task due, or one done): the same alert, with the new list.
            return Alert.objects.filter(pk=open_alert.pk, cleared_at__isnull=True).update(message=message)
        return 0
    if open_alert is not None and not unknown:
        return int(alerts.clear_alert(machine_id, Alert.Kind.SERVICE_DUE, now))
    return 0


def _open_alerts(machine_ids) -> dict[int, Alert]:
    rows = Alert.objects.filter(
        machine_id__in=list(machine_ids), kind=Alert.Kind.SERVICE_DUE, cleared_at__isnull=True
    )
    return {a.machine_id: a for a in rows}


def refresh_machine(machine: Machine, now: dt.datetime) -> int:
    """The machine's ``service_due`` alert brought to its intervals now (after a change by hand)."""
    statuses = [status(i, now, cached=True) for i in intervals_with_last_service(machine=machine)]
    return _apply(machine.pk, statuses, now, _open_alerts([machine.pk]).get(machine.pk))


def scheduled_pass(now: dt.datetime) -> int:
    """The scheduler's ``care`` step: raise, update and clear ``service_due`` alerts; returns the changes.

    Every interval's status is computed (laser-on hours from the cache, see :class:`_LaserCache`);
    machines without intervals any more lose their open alert. An interval that fails (a database
    error) fails the step, which the scheduler logs and runs again next pass.
    """
    by_machine: dict[int, list[Status]] = {}
    for interval in intervals_with_last_service():
        by_machine.setdefault(interval.machine_id, []).append(status(interval, now, cached=True))
    open_alerts = _open_alerts(
        Alert.objects.filter(kind=Alert.Kind.SERVICE_DUE, cleared_at__isnull=True).values_list(
            "machine_id", flat=True
        )
    )
    changed = 0
    for machine_id in sorted(set(by_machine) | set(open_alerts)):
        changed += _apply(machine_id, by_machine.get(machine_id, []), now, open_alerts.get(machine_id))
    return changed


# ----------------------------------------------------------------------------------- the page


def laser_applicable(machine: Machine, intervals=()) -> bool:
    """Whether the machine reports laser power (its live readings have it) or counts a laser interval."""
    if any(i.basis == ServiceInterval.Basis.LASER for i in intervals):
        return True
    reading = MachineStatus.objects.filter(pk=machine.pk).values_list("last_reading", flat=True).first()
    return isinstance(reading, dict) and LASER_FIELD in reading


def reports_laser(machine: Machine) -> bool:
    """Whether laser-on hours can be counted: the machine is linked through a GRBL controller."""
    return MachineLink.objects.filter(machine=machine, adapter=MachineLink.Adapter.GRBL).exists()


def summary(machine: Machine, now: dt.datetime, *, records: int = 5) -> dict:
    """What the manager's machine page shows: use (last 30 days and total), the intervals, recent services,
    and the fault members reported (``fault``: :class:`devices.fault_reports.OpenReport` or None).

    ``laser``: ``{"recent": h, "total": h}`` (a value None when unknown) or None when not applicable.
    "Total" counts from the machine's first session (laser: from the first session or interval).
    One InfluxDB failure makes the page's other laser figures unknown without asking again.
    """
    recent_since = now - RECENT
    first = (
        UsageSession.objects.filter(machine=machine)
        .order_by("started_at")
        .values_list("started_at", flat=True)
        .first()
    )
    intervals = list(intervals_with_last_service(machine=machine))
    origin = min([t for t in [first, *(i.counted_from for i in intervals)] if t is not None], default=None)
    use = {
        "recent_hours": run_hours(machine, recent_since, now),
        "recent_jobs": job_count(machine, recent_since, now),
        "total_hours": run_hours(machine, first, now) if first else 0.0,
        "total_jobs": job_count(machine, first, now) if first else 0,
    }
    laser = None
    applicable = laser_applicable(machine, intervals)
    store = _store() if applicable else None
    failed = store is None

    def laser_hours(since: dt.datetime) -> float | None:
        nonlocal failed
        if failed:
            return None
        hours = laser_on_hours(machine, since, now, store=store)
        failed = hours is None
        return hours

    try:
        if applicable:
            laser = {"recent": laser_hours(recent_since), "total": laser_hours(origin) if origin else 0.0}
        statuses = []
        for interval in intervals:
            since = counted_since(interval)
            if interval.basis == ServiceInterval.Basis.LASER:
                used = laser_hours(since)
            else:
                used = run_hours(machine, since, now)
            statuses.append(
                Status(interval=interval, since=since, used=used, every=interval.every_hours, now=now)
            )
    finally:
        if store is not None:
            store.close()
    history = list(
        ServiceRecord.objects.filter(interval__machine=machine)
        .select_related("interval", "by")
        .order_by("-at", "-pk")[:records]
    )
    fault = fault_reports.open_report(machine.pk)
    return {"use": use, "laser": laser, "statuses": statuses, "records": history, "fault": fault}
