"""What the live floor board shows, and to whom (reads only).

One *card* per machine of a lab: its live status (the hub's
:func:`devices.live.machine_frame`), its open alerts, the commands it
offers (``commands``: :func:`devices.capabilities.offered`) and its bookings
(who holds the current one, when the next one starts).

Privacy: a lab manager sees everything. Anyone else sees no one's name but
their own — a booking held by somebody else is just "booked", and the job
name (a file name, which often carries its owner's name) only on the
machine they hold themselves. :func:`for_viewer` applies that rule to every
frame, the snapshot's and the live ones alike.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from django.utils import timezone

from fablab.booking.models import Booking
from fablab.labs.models import Lab, Machine
from fablab.members import roles

from . import capabilities, machine_errors
from .live import machine_frame
from .models import Alert, MachineLink, MachineStatus

#: Bookings that mean someone holds (or will hold) the machine.
HOLDING = (Booking.Status.CONFIRMED, Booking.Status.CHECKED_IN, Booking.Status.PENDING)


@dataclasses.dataclass(frozen=True)
class Viewer:
    """Who watches a board: ``user_id`` (None for nobody) and whether they manage the lab."""

    user_id: int | None
    manager: bool


def viewer_for(user, lab: Lab) -> Viewer:
    """What ``user`` may see of ``lab``'s board.

    Everything if they manage the lab (:func:`fablab.members.roles.manages_lab`),
    otherwise no one's name but their own. A programme officer who oversees the
    lab is no manager here.
    """
    return Viewer(user_id=user.pk if user.is_authenticated else None, manager=roles.manages_lab(user, lab))


def _person(user) -> str:
    return user.get_full_name() or user.get_username()


def _booking_dict(booking: Booking | None, viewer: Viewer) -> dict[str, Any] | None:
    if booking is None:
        return None
    mine = viewer.user_id is not None and booking.member_id == viewer.user_id
    data: dict[str, Any] = {
        "start": booking.start.isoformat(),
        "end": booking.end.isoformat(),
        "mine": mine,
        "pending": booking.status == Booking.Status.PENDING,
    }
    # Only a manager learns who holds it; a maker sees "you" or just "booked".
    data["holder"] = _person(booking.member) if viewer.manager else None
    return data


def _empty_frame(machine: Machine) -> dict[str, Any]:
    return {
        "type": "machine",
        "machine": machine.slug,
        "state": "offline",
        "since": None,
        "online": False,
        "enabled": None,
        "job": None,
        "error": None,
        "readings": {},
        "ts": 0,
    }


def lab_cards(lab: Lab, viewer: Viewer, *, now: dt.datetime | None = None) -> list[dict[str, Any]]:
    """Every machine of ``lab`` as a card dict (JSON-ready), filtered for ``viewer``."""
    machines = lab.machines.select_related("lab", "machine_type").order_by("machine_type__name", "name")
    return cards_for(list(machines), viewer, now=now)


def machine_card(machine: Machine, viewer: Viewer, *, now: dt.datetime | None = None) -> dict[str, Any]:
    return cards_for([machine], viewer, now=now)[0]


def cards_for(
    machines: list[Machine], viewer: Viewer, *, now: dt.datetime | None = None
) -> list[dict[str, Any]]:
    now = now or timezone.now()
    ids = [m.pk for m in machines]
    statuses = {s.machine_id: s for s in MachineStatus.objects.filter(machine_id__in=ids)}
    # The links matter only for machines whose bridge declared no capabilities (the fallback).
    undeclared = [i for i in ids if not isinstance(getattr(statuses.get(i), "capabilities", None), list)]
    links = {link.machine_id: link for link in MachineLink.objects.filter(machine_id__in=undeclared)}
    alerts: dict[int, list[dict[str, Any]]] = {}
    for alert in Alert.objects.filter(machine_id__in=ids, cleared_at__isnull=True).order_by("raised_at"):
        alerts.setdefault(alert.machine_id, []).append(
            {"kind": alert.kind, "label": str(alert.get_kind_display()), "since": alert.raised_at.isoformat()}
        )
    current: dict[int, Booking] = {}
    upcoming: dict[int, Booking] = {}
    bookings = (
        Booking.objects.filter(machine_id__in=ids, status__in=HOLDING, end__gt=now)
        .select_related("member")
        .order_by("start")
    )
    for booking in bookings:
        if booking.start <= now:
            current.setdefault(booking.machine_id, booking)
        else:
            upcoming.setdefault(booking.machine_id, booking)
    cards = []
    for machine in machines:
        status = statuses.get(machine.pk)
        if status is not None:
            status.machine = machine  # machine_frame reads the slug; spare a query
            frame = machine_frame(status)
        else:
            frame = _empty_frame(machine)
        frame["name"] = machine.name
        frame["machine_type"] = machine.machine_type.name
        frame["alerts"] = alerts.get(machine.pk, [])
        # The commands the card offers: only what the machine can carry out (devices.capabilities).
        frame["commands"] = list(capabilities.offered(status, links.get(machine.pk)))
        frame["booking"] = _booking_dict(current.get(machine.pk), viewer)
        frame["next_booking"] = _booking_dict(upcoming.get(machine.pk), viewer)
        cards.append(for_viewer(frame, viewer, mine=bool(frame["booking"] and frame["booking"]["mine"])))
    return cards


def machines_held_by(user_id: int | None, lab: Lab, *, now: dt.datetime | None = None) -> set[str]:
    """Slugs of ``lab``'s machines whose current booking belongs to ``user_id``."""
    if user_id is None:
        return set()
    now = now or timezone.now()
    return set(
        Booking.objects.filter(
            machine__lab=lab,
            member_id=user_id,
            status__in=HOLDING,
            start__lte=now,
            end__gt=now,
        ).values_list("machine__slug", flat=True)
    )


def for_viewer(frame: dict[str, Any], viewer: Viewer, *, mine: bool) -> dict[str, Any]:
    """``frame`` as ``viewer`` may see it. ``mine``: the viewer holds this machine's current booking.

    Not a manager: no job name but on their own machine, and a machine error only as its translatable
    kind (:func:`devices.machine_errors.for_makers`), since the bridge's message may name internal addresses.
    """
    if viewer.manager:
        return frame
    hide_job = not mine and bool(frame.get("job"))
    if not hide_job and not frame.get("error"):
        return frame
    frame = dict(frame)
    if hide_job:
        frame["job"] = {**frame["job"], "name": None}
    if frame.get("error"):
        frame["error"] = machine_errors.for_makers(frame["error"])
    return frame
