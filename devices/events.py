"""Machine events: applied once each, whatever the number of hubs or replays.

Contract: :func:`apply_event` records the event under its ``(machine, sid, seq)``
key first (a unique constraint: a replay or a second hub changes nothing and gets
False), then applies it — a job's outcome on its usage session, a failed job or an
alarm as an alert, a started job clearing the failed-job alert — and pushes the
machine to the board after the commit.

Called by the hub (:mod:`devices.hub`). Imports :mod:`devices.sessions`,
:mod:`devices.alerts` and :mod:`devices.status` (pushes).
"""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.utils.translation import gettext as _

from devices.alerts import clear_alert, raise_alert
from devices.machines import MachineInfo, ms_to_dt
from devices.models import Alert, ProcessedEvent
from devices.sessions import record_outcome
from devices.status import push_machines
from firmware_bridge import protocol


def apply_event(info: MachineInfo, msg: protocol.Event) -> bool:
    """Apply an event once (de-duplicated on machine, sid, seq); True when it was new."""
    at = ms_to_dt(msg.ts)
    with transaction.atomic():
        try:
            with transaction.atomic():
                ProcessedEvent.objects.create(
                    machine_id=info.id, sid=msg.sid, seq=msg.seq, type=msg.type[:64], at=at
                )
        except IntegrityError:
            return False
        if msg.type == "job_started":
            clear_alert(info.id, Alert.Kind.JOB_FAILED, at)
        record_outcome(info.id, msg.type, at)
        if msg.type == "job_failed":
            name = msg.job.name if msg.job else ""
            raise_alert(info.id, Alert.Kind.JOB_FAILED, _("Job failed: %(job)s") % {"job": name}, at)
        elif msg.type == "alarm":
            detail = msg.detail or {}
            text = str(detail.get("message") or detail.get("code") or _("Alarm"))
            raise_alert(info.id, Alert.Kind.ERROR, text, at)
    if msg.type in ("job_failed", "alarm", "job_started"):
        push_machines([info.id], msg.ts)
    return True
