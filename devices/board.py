"""What the live floor board shows, and to whom (reads only).

One *card* per machine of a lab: its live status (the hub's
:func:`devices.live.machine_frame`), its open alerts, the commands it
offers (``commands``: :func:`devices.capabilities.offered`), its interlock
(``interlock``: ``{"wanted": bool}`` for an interlocked machine, else None; what
the machine reports is the frame's ``enabled``) and its bookings:

``booking``
    The booking that concerns the machine now: one that holds it (``confirmed``,
    ``checked_in``, ``pending``) and covers the moment; else a no-show released
    during its time (the machine is free again); else a checked-in booking whose
    end has passed but which is not completed yet (its job runs on: an overrun).
``next_booking``
    The next booking that will hold it.

Each is a dict (:func:`_booking_dict`) with ``start``/``end`` (ISO), from which
the page counts the time left or the overrun ("+12 min") itself, minute by
minute, without a push per second.

Privacy: a lab manager sees everything. Anyone else (a maker, a programme
officer) sees no one's name but their own — a member's booking held by somebody
else is just "booked" with its times (``"released"`` once it was released), and
the job name (a file name, which often carries its owner's name) only on the
machine they hold themselves. A training, workshop or maintenance booking has
no member: its kind and title are public. :func:`for_viewer` applies the
rule to every frame, the snapshot's and the live ones alike.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from fablab.booking.models import Booking
from fablab.labs.models import Lab, Machine
from fablab.members import roles

from . import capabilities, machine_errors
from .live import machine_frame
from .models import Alert, Interlock, MachineLink, MachineStatus

#: What a viewer who neither holds a member's booking nor manages the lab learns of its state.
PUBLIC_STATE = {Booking.Status.NO_SHOW: "released"}


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
    """The board's view of ``booking`` for ``viewer`` (see the module's docstring for who sees what).

    ``status``: ``confirmed``, ``pending``, ``checked_in``, ``no_show`` or, for a member's booking
    the viewer may not look into, ``booked``/``released``. ``checked_in_at`` only with the full
    view, ``released_at`` to anyone (a released machine is free for all); ``kind`` always, ``title``
    but for a member's booking seen by someone who does not manage the lab.
    """
    if booking is None:
        return None
    mine = viewer.user_id is not None and booking.member_id == viewer.user_id
    member_booking = booking.kind == Booking.Kind.MEMBER
    full = viewer.manager or mine or not member_booking
    data: dict[str, Any] = {
        "start": booking.start.isoformat(),
        "end": booking.end.isoformat(),
        "mine": mine,
        "pending": booking.status == Booking.Status.PENDING,
        "kind": booking.kind,
        "title": booking.title if not member_booking or viewer.manager else "",
        "status": booking.status if full else PUBLIC_STATE.get(booking.status, "booked"),
        "checked_in_at": _iso(booking.checked_in_at) if full else None,
        "released_at": _iso(booking.released_at),
        "unavailable": booking.unavailable if full else "",
    }
    # Only a manager learns who holds it; a maker sees "you" or just "booked".
    data["holder"] = _person(booking.member) if viewer.manager and booking.member_id else None
    return data


def _iso(moment: dt.datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _concerning_now(now: dt.datetime) -> Q:
    """Bookings that may be a machine's current one at ``now`` (the module's docstring says which wins)."""
    return (
        Q(status__in=Booking.HOLDING, start__lte=now, end__gt=now)
        | Q(status=Booking.Status.NO_SHOW, start__lte=now, end__gt=now)
        | Q(status=Booking.Status.CHECKED_IN, end__lte=now)
    )


def _bookings_now(ids: list[int], now: dt.datetime) -> tuple[dict[int, Booking], dict[int, Booking]]:
    """Per machine: the booking that concerns it now and the next one (see the module's docstring)."""
    current: dict[int, Booking] = {}
    released: dict[int, Booking] = {}
    overrunning: dict[int, Booking] = {}
    upcoming: dict[int, Booking] = {}
    bookings = (
        Booking.objects.filter(machine_id__in=ids)
        .filter(_concerning_now(now) | Q(status__in=Booking.HOLDING, start__gt=now))
        .select_related("member")
        .order_by("start")
    )
    for booking in bookings:
        if booking.status == Booking.Status.NO_SHOW:
            released.setdefault(booking.machine_id, booking)
        elif booking.end <= now:
            overrunning[booking.machine_id] = booking  # the latest one, by start
        elif booking.start <= now:
            current.setdefault(booking.machine_id, booking)
        else:
            upcoming.setdefault(booking.machine_id, booking)
    for machine_id in set(released) | set(overrunning):
        if machine_id not in current:
            current[machine_id] = overrunning.get(machine_id) or released[machine_id]
    return current, upcoming


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


def lab_machine_card(lab: Lab, slug: str, viewer: Viewer) -> dict[str, Any] | None:
    """The card of ``lab``'s machine ``slug`` for ``viewer`` (None when it is gone): a booking changed."""
    machine = lab.machines.select_related("lab", "machine_type").filter(slug=slug).first()
    return None if machine is None else machine_card(machine, viewer)


def client_strings() -> dict[str, str]:
    """The texts board.js writes about bookings and the interlock, translated for the page."""
    return {
        "checked_in_at": _("checked in at %(time)s"),
        "no_show": _("no-show, released at %(time)s"),
        "released": _("released at %(time)s"),
        "awaiting_check_in": _("awaiting check-in"),
        "unavailable": _("machine unavailable at the start"),
        "time_left": _("%(minutes)s min left"),
        "overrun": _("+%(minutes)s min"),
        "overrun_title": _("Running past the end of the booking"),
        "interlock": _("Interlock"),
        "unlocked": _("unlocked"),
        "locked": _("locked"),
        "unlocking": _("unlocking…"),
        "locking": _("locking…"),
        "kinds": {key: str(label) for key, label in Booking.Kind.choices},
    }


def cards_for(
    machines: list[Machine], viewer: Viewer, *, now: dt.datetime | None = None
) -> list[dict[str, Any]]:
    now = now or timezone.now()
    ids = [m.pk for m in machines]
    statuses = {s.machine_id: s for s in MachineStatus.objects.filter(machine_id__in=ids)}
    # The links say which machines are interlocked, and give the commands of an undeclared bridge.
    links = {link.machine_id: link for link in MachineLink.objects.filter(machine_id__in=ids)}
    wanted = dict(Interlock.objects.filter(machine_id__in=ids).values_list("machine_id", "wanted"))
    alerts: dict[int, list[dict[str, Any]]] = {}
    for alert in Alert.objects.filter(machine_id__in=ids, cleared_at__isnull=True).order_by("raised_at"):
        alerts.setdefault(alert.machine_id, []).append(
            {"kind": alert.kind, "label": str(alert.get_kind_display()), "since": alert.raised_at.isoformat()}
        )
    current, upcoming = _bookings_now(ids, now)
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
        # The links matter to the commands only for machines whose bridge declared no capabilities.
        declared = isinstance(getattr(status, "capabilities", None), list)
        link = links.get(machine.pk)
        frame["commands"] = list(capabilities.offered(status, None if declared else link))
        interlocked = bool(link and link.interlock) or machine.pk in wanted
        frame["interlock"] = {"wanted": wanted.get(machine.pk, False)} if interlocked else None
        frame["booking"] = _booking_dict(current.get(machine.pk), viewer)
        frame["next_booking"] = _booking_dict(upcoming.get(machine.pk), viewer)
        cards.append(for_viewer(frame, viewer, mine=holds(frame)))
    return cards


def public_states(lab: Lab) -> dict[str, str]:
    """Each machine of ``lab`` by slug: its state word (``offline`` when it never reported), for anyone."""
    return {slug: state or "offline" for slug, state in lab.machines.values_list("slug", "live__state")}


def holds(card: dict[str, Any]) -> bool:
    """Whether the viewer a card was read for holds its machine now.

    Their booking is the machine's current one (running, or overrunning after a check-in) and was not
    released as a no-show: only then may they see the machine's job name (:func:`for_viewer`).
    """
    booking = card.get("booking")
    return bool(booking and booking["mine"] and booking["status"] != Booking.Status.NO_SHOW)


def machines_held_by(user_id: int | None, lab: Lab, *, now: dt.datetime | None = None) -> set[str]:
    """Slugs of ``lab``'s machines ``user_id`` holds now: the same rule as the cards' (:func:`holds`)."""
    if user_id is None:
        return set()
    now = now or timezone.now()
    mine = Booking.objects.filter(machine__lab=lab, member_id=user_id).filter(_concerning_now(now))
    machines = dict(mine.values_list("machine_id", "machine__slug"))
    if not machines:
        return set()
    current, _upcoming = _bookings_now(list(machines), now)
    return {
        machines[machine_id]
        for machine_id, booking in current.items()
        if booking.member_id == user_id and booking.status != Booking.Status.NO_SHOW
    }


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
