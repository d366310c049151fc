"""Pages of workshops and series: a manager plans a workshop (conflicts, skip or move, confirm), sees
its occurrences and registrations, records attendance; a member registers for an occurrence in one
click, or cancels the rest of their own recurring booking.

The plan is not stored between the steps: confirming recomputes it from the same form and hands
the manager's choices to :func:`fablab.booking.series.create_workshop`, which checks again under
lock. A conflict that appeared in between has no choice yet: the page shows the new list.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from fablab.labs.models import Lab
from fablab.members import roles

from . import series
from .errors import BookingError
from .models import Booking, Series, WorkshopRegistration
from .series_forms import WorkshopForm


def _require_lab(user, lab_id: int) -> None:
    if not roles.manages_lab(user, lab_id):
        raise PermissionDenied


@login_required
def workshop_list(request, lab: str):
    lab = get_object_or_404(Lab, slug=lab)
    _require_lab(request.user, lab.pk)
    workshops = Series.objects.filter(lab=lab, kind=Series.Kind.WORKSHOP).prefetch_related("machines")
    return render(request, "booking/series/workshop_list.html", {"lab": lab, "workshops": workshops})


@login_required
@require_http_methods(["GET", "POST"])
def workshop_new(request, lab: str):
    """GET: the form. POST ``plan``: the occurrences and their conflicts, a choice per conflict.
    POST ``confirm``: book it (all or nothing)."""
    lab = get_object_or_404(Lab, slug=lab)
    _require_lab(request.user, lab.pk)
    now = timezone.now()
    with timezone.override(lab.tz):
        form = WorkshopForm(request.POST or None, lab=lab)
        the_plan = None
        if request.method == "POST" and form.is_valid():
            try:
                the_plan = series.plan(
                    lab=lab,
                    machines=form.cleaned_data["machines"],
                    recurrence=form.recurrence,
                    title=form.cleaned_data["title"],
                    seats=form.cleaned_data["seats"],
                    target_group=form.cleaned_data["target_group"],
                    initiative=form.cleaned_data["initiative"],
                    now=now,
                )
            except BookingError as exc:
                form.add_error(None, exc.detail)
            if the_plan is not None and "confirm" in request.POST:
                resolutions = {c.key: request.POST.get(f"resolve-{c.key}", "") for c in the_plan.conflicts}
                try:
                    result = series.create_workshop(the_plan, resolutions, request.user, now=now)
                except BookingError as exc:
                    form.add_error(None, exc.detail)
                else:
                    messages.success(
                        request,
                        _(
                            "%(title)s planned: %(booked)d sessions, %(skipped)d skipped, %(moved)d bookings moved."
                        )
                        % {
                            "title": result.series.title,
                            "booked": len({b.start for b in result.bookings}),
                            "skipped": len(result.skipped),
                            "moved": len(result.moved),
                        },
                    )
                    return redirect("booking:workshop", pk=result.series.pk)
        context = {"lab": lab, "form": form, "plan": the_plan, "SKIP": series.SKIP, "MOVE": series.MOVE}
        return render(request, "booking/series/workshop_new.html", context)


def _workshop(pk: int) -> Series:
    return get_object_or_404(Series.objects.select_related("lab"), pk=pk, kind=Series.Kind.WORKSHOP)


@login_required
def workshop_detail(request, pk: int):
    """Managers: occurrences, machines, registrations and attendance counts. Members: the sessions
    ahead with a one-click registration (no other participant is named)."""
    workshop = _workshop(pk)
    manager = roles.manages_lab(request.user, workshop.lab_id)
    now = timezone.now()
    rows = series.occurrence_rows(workshop)
    mine = set(
        WorkshopRegistration.objects.filter(
            series=workshop, member=request.user, status=WorkshopRegistration.Status.REGISTERED
        ).values_list("occurrence_start", flat=True)
    )
    for row in rows:
        row["mine"] = row["start"] in mine
        row["first_booking"] = row["bookings"][0]
        row["open"] = not row["cancelled"] and row["end"] > now
    if not manager:
        rows = [r for r in rows if r["open"]]
        if workshop.cancelled_at is not None:
            raise Http404
    with timezone.override(workshop.lab.tz):
        context = {"workshop": workshop, "rows": rows, "manager": manager, "lab": workshop.lab}
        return render(request, "booking/series/workshop_detail.html", context)


@login_required
@require_POST
def register(request, pk: int, booking: int):
    workshop = _workshop(pk)
    occurrence = get_object_or_404(Booking, pk=booking, series=workshop)
    try:
        if request.POST.get("action") == "unregister":
            series.unregister(workshop, occurrence.start, request.user)
            messages.success(request, _("You are no longer registered for this session."))
        else:
            series.register(workshop, occurrence.start, request.user)
            with timezone.override(workshop.lab.tz):
                when = date_format(timezone.localtime(occurrence.start), "DATETIME_FORMAT")
            messages.success(request, _("You are registered for %(when)s.") % {"when": when})
    except BookingError as exc:
        messages.error(request, exc.detail)
    return redirect("booking:workshop", pk=workshop.pk)


@login_required
@require_http_methods(["GET", "POST"])
def attendance(request, pk: int, booking: int):
    """One occurrence's participants with a tick each (phone width): who came."""
    workshop = _workshop(pk)
    _require_lab(request.user, workshop.lab_id)
    occurrence = get_object_or_404(Booking, pk=booking, series=workshop)
    rows = list(
        WorkshopRegistration.objects.filter(
            series=workshop, occurrence_start=occurrence.start, status=WorkshopRegistration.Status.REGISTERED
        ).select_related("member")
    )
    if request.method == "POST":
        came = {int(v) for v in request.POST.getlist("attended") if v.isdigit()}
        series.record_attendance(
            workshop, occurrence.start, {r.member_id: r.member_id in came for r in rows}, request.user
        )
        messages.success(request, _("Attendance saved."))
        return redirect("booking:workshop_attendance", pk=workshop.pk, booking=occurrence.pk)
    with timezone.override(workshop.lab.tz):
        context = {"workshop": workshop, "occurrence": occurrence, "rows": rows, "lab": workshop.lab}
        return render(request, "booking/series/attendance.html", context)


@login_required
@require_POST
def cancel_rest(request, pk: int):
    """Cancel this booking and every later occurrence of its series (its member, or a manager)."""
    booking = get_object_or_404(Booking.objects.select_related("series"), pk=pk)
    if booking.series is None or (
        booking.member_id != request.user.pk and not roles.manages_lab(request.user, booking.series.lab_id)
    ):
        raise Http404
    try:
        cancelled = series.cancel_series_from(booking.series, booking.start, request.user)
    except BookingError as exc:
        messages.error(request, exc.detail)
        return redirect("booking:detail", pk=booking.pk)
    messages.success(request, _("%(count)d bookings of the series cancelled.") % {"count": len(cancelled)})
    return redirect("booking:mine")
