"""Public pages: the labs, a lab's machines and a machine's week.

Anyone may browse; other people's bookings only ever show as "booked".
"""

from __future__ import annotations

import datetime as dt

from django.shortcuts import get_object_or_404, render
from django.utils import timezone
from django.utils.cache import patch_vary_headers

from fablab.booking import selectors
from fablab.members.models import Certification

from .models import Lab, Machine

#: How many workshop and course sessions a lab's page shows.


def lab_list(request):
    labs = Lab.objects.prefetch_related("machines", "opening_hours")
    return render(request, "labs/lab_list.html", {"labs": labs})


def lab_detail(request, lab):
    """A lab's page: its opening hours this coming week, its closures ahead and its machines.

    Each machine's live state (idle, running, offline…) is not read here: ``fablab.labs`` knows
    nothing of the machine side (``devices`` depends on it, not the other way round). The page's
    script reads the states from the devices app's public JSON (``devices:states``, state words
    only, no names) and fills them in; without JavaScript the page simply shows no states.
    """
    lab = get_object_or_404(Lab, slug=lab)
    machines = list(
        lab.machines.select_related("lab", "machine_type", "required_training").order_by(
            "machine_type__name", "name"
        )
    )
    certified = _certified_training_ids(request.user)
    now = timezone.now()
    rows = []
    for machine in machines:
        rows.append(
            {
                "machine": machine,
                "certified": machine.required_training_id is None
                or machine.required_training_id in certified,
                "next_free": selectors.next_free_slot(machine, now=now) if machine.bookable else None,
            }
        )
    today = timezone.localtime(now, lab.tz).date()
    week = [
        {
            "day": day,
            "intervals": [
                (s.astimezone(lab.tz), e.astimezone(lab.tz)) for s, e in lab.opening_intervals(day)
            ],
        }
        for day in (today + dt.timedelta(days=n) for n in range(7))
    ]
    closures = lab.closures.filter(ends_on__gte=today).order_by("starts_on")[:5]
    context = {
        "lab": lab,
        "rows": rows,
        "week": week,
        "today": today,
        "closures": closures,
        "workshops": selectors.upcoming_workshops(lab, now=now),
    }
    if lab.new_members_need_approval and request.user.is_authenticated:
        from fablab.members.accounts import membership_approved

        context["must_ask_to_join"] = not membership_approved(request.user, lab)
    with timezone.override(lab.tz):
        return render(request, "labs/lab_detail.html", context)


def machine_week(request, lab, machine):
    machine = get_object_or_404(
        Machine.objects.select_related("lab", "machine_type", "required_training"),
        lab__slug=lab,
        slug=machine,
    )
    lab = machine.lab
    now = timezone.now()
    today = timezone.localtime(now, lab.tz).date()
    monday = _monday(request.GET.get("week"), default=today)
    member = request.user if request.user.is_authenticated else None
    days = selectors.machine_week(machine=machine, monday=monday, member=member, now=now)
    certified = machine.required_training_id is None or (
        machine.required_training_id in _certified_training_ids(request.user)
    )
    context = {
        "lab": lab,
        "machine": machine,
        "days": days,
        "monday": monday,
        "sunday": monday + dt.timedelta(days=6),
        "previous_week": monday - dt.timedelta(days=7),
        "next_week": monday + dt.timedelta(days=7),
        "this_week": monday <= today < monday + dt.timedelta(days=7),
        "today": today,
        "now": now,
        "certified": certified,
        # A signed-in member without the machine's training sees the free slots but cannot click them;
        # the page offers the training's next sessions instead.
        "may_book": certified or not request.user.is_authenticated,
        "has_free": any(slot.state == "free" for day in days for slot in day.slots),
    }
    # htmx asks for the week only; without JavaScript the whole page comes back,
    # and so it does when htmx restores a page missing from its history cache.
    partial = request.headers.get("HX-Request") == "true" and not request.headers.get(
        "HX-History-Restore-Request"
    )
    template = "labs/_week.html" if partial else "labs/machine_week.html"
    with timezone.override(lab.tz):
        response = render(request, template, context)
    patch_vary_headers(response, ["HX-Request"])
    return response


def _monday(raw: str | None, *, default: dt.date) -> dt.date:
    day = default
    if raw:
        try:
            day = dt.date.fromisoformat(raw)
        except ValueError:
            day = default
    if abs((day - default).days) > 3660:
        # Far-off weeks mean nothing here and would overflow the date arithmetic.
        day = default
    return day - dt.timedelta(days=day.weekday())


def _certified_training_ids(user) -> set[int]:
    if not user.is_authenticated:
        return set()
    return set(Certification.objects.filter(member=user).active().values_list("training_id", flat=True))
