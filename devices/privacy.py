"""The machine side's part of a member's data export and of their erasure (:mod:`fablab.members.privacy`).

The members app may not import this app, so these functions are registered with it from
:meth:`devices.apps.DevicesConfig.ready`: the export gets the machine sessions of the member's bookings
and the commands they issued; the erasure blanks those sessions' job names (file names often carry a
name) and drops the member's own lines from the fault-reported alerts (the other members' lines stay).
Commands keep pointing at the tombstone account: the audit of who unlocked a machine stays whole.
"""

from __future__ import annotations

from devices.fault_reports import SEPARATOR
from devices.models import Alert, Command, UsageSession
from fablab.booking.models import Booking
from fablab.members.privacy import iso


def export(user, booking_ids: list[int]) -> dict:
    return {
        "usage_sessions": [
            {
                "booking": s.booking_id,
                "machine": s.machine.slug,
                "started_at": iso(s.started_at),
                "ended_at": iso(s.ended_at),
                "job_id": s.job_id,
                "job_name": s.job_name,
                "outcome": s.outcome,
                "energy_wh": s.energy_wh,
            }
            for s in UsageSession.objects.filter(booking_id__in=booking_ids)
            .select_related("machine")
            .order_by("started_at", "pk")
        ],
        "commands": [
            {
                "machine": c.machine.slug,
                "action": c.action,
                "booking": c.booking_id,
                "issued_at": iso(c.issued_at),
                "result": c.result,
            }
            for c in Command.objects.filter(issued_by=user).select_related("machine").order_by("issued_at")
        ],
    }


def erase(user, booking_ids: list[int]) -> None:
    UsageSession.objects.filter(booking_id__in=booking_ids).update(job_name="", job_id="")
    # Their lines in the fault-reported alerts ("#<booking> <name>: ..."): dropped, the others stay.
    prefixes = tuple(f"#{pk} " for pk in booking_ids) + tuple(f"#{pk}:" for pk in booking_ids)
    if not prefixes:
        return
    alerts = Alert.objects.select_for_update().filter(kind=Alert.Kind.FAULT_REPORTED, booking__isnull=False)
    for alert in alerts.filter(
        machine_id__in=Booking.objects.filter(pk__in=booking_ids).values("machine_id")
    ):
        lines = alert.message.split(SEPARATOR)
        kept = [line for line in lines if not line.startswith(prefixes)]
        if kept != lines:
            Alert.objects.filter(pk=alert.pk).update(message=SEPARATOR.join(kept))
