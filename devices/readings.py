"""Live readings: each machine's newest telemetry values, its energy, and silent machines.

Contract: :func:`apply_readings` folds a batch's newest readings into the live status
(never moving a reading back in time, whichever hub applied a newer one), adds the
energy counter's rise to the open usage sessions and clears "silent" alerts, then
pushes the changed machines to the board; :func:`check_silent` raises a "silent"
alert for an online machine without telemetry for 3x its interval;
:func:`reading_names` is the hub's allowance of reading names per machine.

Called by the hub (:mod:`devices.hub`). Imports :mod:`devices.status` (pushes),
:mod:`devices.sessions` and :mod:`devices.alerts`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from devices.alerts import raise_alert
from devices.machines import MachineIndex, dt_to_ms, ms_to_dt
from devices.models import Alert, MachineStatus
from devices.sessions import add_energy
from devices.status import push, push_machines

SILENT_FACTOR = 3


@dataclasses.dataclass
class Readings:
    """A batch's telemetry of one machine: the newest values, and the first energy counter seen."""

    ts: int
    values: dict[str, float]
    energy_first: float | None = None
    energy_first_ts: int | None = None

    def add(self, ts: int, values: Mapping[str, float]) -> None:
        energy = values.get("energy_wh")
        if energy is not None and (self.energy_first_ts is None or ts < self.energy_first_ts):
            self.energy_first, self.energy_first_ts = energy, ts
        if ts >= self.ts:
            self.ts = ts
            self.values.update(values)
        else:
            for key, value in values.items():
                self.values.setdefault(key, value)


def reading_names(machine_id: int) -> set[str]:
    """The reading names a machine has so far: the keys of its live readings (the hub's allowance)."""
    reading = (
        MachineStatus.objects.filter(machine_id=machine_id).values_list("last_reading", flat=True).first()
    )
    return set(reading) if isinstance(reading, dict) else set()


def _update_readings_sql() -> str:
    table = connection.ops.quote_name(MachineStatus._meta.db_table)
    col = {f: connection.ops.quote_name(MachineStatus._meta.get_field(f).column) for f in _READING_FIELDS}
    pk = connection.ops.quote_name(MachineStatus._meta.pk.column)
    # Conditional: never move the reading time backwards (another hub may have applied a newer one).
    return (
        f"UPDATE {table} SET {col['last_reading']} = %s, {col['last_reading_at']} = %s, "  # noqa: S608 - names only
        f"{col['last_message_at']} = %s WHERE {pk} = %s AND "
        f"({col['last_reading_at']} IS NULL OR {col['last_reading_at']} <= %s)"
    )


_READING_FIELDS = ("last_reading", "last_reading_at", "last_message_at")


def apply_readings(readings: Mapping[int, Readings]) -> list[int]:
    """Fold a batch's newest readings into the live status; energy into the open sessions.

    The session's energy is the ``energy_wh`` counter's rise since the first
    reading seen while it was open. A few queries per call whatever the number
    of machines (one SELECT, one executemany UPDATE): the hub calls this about
    once a second while draining thousands of messages. Returns the machine ids updated.
    """
    if not readings:
        return []
    now = timezone.now()
    ids = sorted(readings)
    reading_field = MachineStatus._meta.get_field("last_reading")
    at_field = MachineStatus._meta.get_field("last_reading_at")
    with transaction.atomic():
        rows = list(
            MachineStatus.objects.select_for_update()
            .filter(machine_id__in=ids)
            .order_by("pk")
            .values_list("machine_id", "last_reading", "last_reading_at")
        )
        missing = set(ids).difference(r[0] for r in rows)
        if missing:
            MachineStatus.objects.bulk_create(
                [MachineStatus(machine_id=i) for i in sorted(missing)], ignore_conflicts=True
            )
            rows += [(i, {}, None) for i in sorted(missing)]
        params = []
        updated = []
        now_db = at_field.get_db_prep_value(now, connection)
        for machine_id, reading, reading_at in rows:
            batch = readings[machine_id]
            if reading_at is not None and batch.ts < dt_to_ms(reading_at):
                continue  # older than what another hub (or a replay) applied already
            merged = dict(reading) if isinstance(reading, dict) else {}
            merged.update(batch.values)
            at = at_field.get_db_prep_value(ms_to_dt(batch.ts), connection)
            params.append((reading_field.get_db_prep_value(merged, connection), at, now_db, machine_id, at))
            updated.append(machine_id)
        if params:
            with connection.cursor() as cursor:
                cursor.executemany(_update_readings_sql(), params)
        add_energy(
            {
                i: (readings[i].values["energy_wh"], readings[i].energy_first)
                for i in updated
                if readings[i].values.get("energy_wh") is not None
            }
        )
        if updated:
            Alert.objects.filter(
                machine_id__in=updated, kind=Alert.Kind.SILENT, cleared_at__isnull=True
            ).update(cleared_at=now)
    for status in MachineStatus.objects.select_related("machine__lab").filter(machine_id__in=updated):
        push(status, readings[status.machine_id].ts)
    return updated


def check_silent(index: MachineIndex, now: datetime | None = None) -> int:
    """Raise a "silent" alert for each online machine without telemetry for 3x its interval."""
    now = now or timezone.now()
    raised = 0
    intervals = {info.id: info.interval_s for info in index.all() if info.interval_s}
    if not intervals:
        return 0
    rows = MachineStatus.objects.filter(machine_id__in=list(intervals), online=True).values_list(
        "machine_id", "last_reading_at", "since"
    )
    for machine_id, last_at, since in rows:
        limit = timedelta(seconds=SILENT_FACTOR * intervals[machine_id])
        reference = last_at or since
        if reference is None or now - reference <= limit:
            continue
        message = _("No telemetry for more than %(s)d seconds.") % {"s": int(limit.total_seconds())}
        if raise_alert(machine_id, Alert.Kind.SILENT, message, now):
            raised += 1
            push_machines([machine_id], dt_to_ms(now))
    return raised
