"""Alerts: raised and cleared at most once per machine and kind, whatever the number of hubs.

Contract: one open alert per machine and kind (a unique constraint), so
:func:`raise_alert` is a claim — True only for the call that opened it — and
:func:`clear_alert` a conditional ``UPDATE``. :func:`alerts_for_status` is the rule
a status applies: which open alerts it resolves and which one it raises.

Called by :mod:`devices.status`, :mod:`devices.readings`, :mod:`devices.events`,
:mod:`devices.interlock` and :mod:`devices.scheduler`.
Imports the models and the MQTT contract only.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from django.db import IntegrityError, transaction
from django.utils.translation import gettext as _

from devices.models import Alert
from firmware_bridge import protocol

#: An open alert as ``(pk, kind, raised_at)``.
OpenAlert = tuple[int, str, datetime]


def raise_alert(
    machine_id: int, kind: str, message: str, at: datetime, *, booking_id: int | None = None
) -> bool:
    """Open an alert unless one of this kind is open already; True when this call opened it.

    ``booking_id``: the booking the alert is about (a booked machine offline at its start, an
    interlock out of its wanted state during a booking), if any.
    """
    try:
        with transaction.atomic():
            Alert.objects.create(
                machine_id=machine_id, kind=kind, message=message[:500], raised_at=at, booking_id=booking_id
            )
    except IntegrityError:
        return False
    return True


def clear_alert(machine_id: int, kind: str, at: datetime) -> bool:
    """Close the open alert of this kind (conditional UPDATE); True when one was open."""
    return bool(
        Alert.objects.filter(machine_id=machine_id, kind=kind, cleared_at__isnull=True).update(cleared_at=at)
    )


def open_alerts_of(machine_ids: Iterable[int]) -> dict[int, list[OpenAlert]]:
    """Open alerts per machine as ``(pk, kind, raised_at)``, oldest first."""
    out: dict[int, list[OpenAlert]] = {}
    rows = (
        Alert.objects.filter(machine_id__in=list(machine_ids), cleared_at__isnull=True)
        .order_by("raised_at", "pk")
        .values_list("machine_id", "pk", "kind", "raised_at")
    )
    for machine_id, pk, kind, raised_at in rows:
        out.setdefault(machine_id, []).append((pk, kind, raised_at))
    return out


def alerts_for_status(
    machine_id: int, msg: protocol.Status, at: datetime, open_alerts: list[OpenAlert]
) -> list[OpenAlert]:
    """Clear the open alerts this status resolves and raise the one it calls for; return the open ones after.

    Queries only when something changes: ``open_alerts`` (read in the same transaction) says what is open.
    """
    resolved = []
    for pk, kind, raised_at in open_alerts:
        if (
            (kind == Alert.Kind.ERROR and msg.state != protocol.ERROR and raised_at <= at)
            or (kind == Alert.Kind.OFFLINE and msg.state != protocol.OFFLINE)
            or (kind == Alert.Kind.JOB_FAILED and msg.state == protocol.RUNNING)
        ):
            resolved.append(pk)
    if resolved:
        Alert.objects.filter(pk__in=resolved, cleared_at__isnull=True).update(cleared_at=at)
        open_alerts = [a for a in open_alerts if a[0] not in resolved]
    kinds = {kind for _pk, kind, _raised in open_alerts}
    if msg.state == protocol.OFFLINE and Alert.Kind.OFFLINE not in kinds:
        raise_alert(machine_id, Alert.Kind.OFFLINE, _("The machine is offline."), at)
        open_alerts = open_alerts_of([machine_id]).get(machine_id, [])
    elif msg.state == protocol.ERROR and Alert.Kind.ERROR not in kinds:
        text = f"{msg.error.code}: {msg.error.message}" if msg.error else _("The machine reports an error.")
        raise_alert(machine_id, Alert.Kind.ERROR, text, at)
        open_alerts = open_alerts_of([machine_id]).get(machine_id, [])
    return open_alerts
