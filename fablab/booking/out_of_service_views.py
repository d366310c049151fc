"""The manager's side of out of service, on the machine's maintenance page.

"Put out of service" (planned or breakdown, until a moment, a reason) first shows what it will
do — the bookings it cancels, the trainings and workshops to call off, the checked-in bookings
it leaves — and acts when confirmed; "Back in service" ends the window under way; a window's end
can be moved earlier. The work is :mod:`fablab.booking.out_of_service`'s; these views parse,
ask for confirmation and report.

Who: a member who manages no lab gets 403; a manager of another lab gets 404 for a machine or
window of a lab they do not manage (ids reveal nothing).
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
from django.utils.translation import ngettext
from django.views.decorators.http import require_POST

from fablab.labs.models import Machine, MaintenanceWindow
from fablab.members import roles

from . import out_of_service
from .errors import BookingError
from .forms import MaintenanceWindowForm
from .manage_forms import OutOfServiceForm, ShortenMaintenanceForm
from .models import Booking


def managed_machine(user, machine_id: int) -> Machine:
    """``machine_id`` of a lab ``user`` manages; 403 for a non-manager, 404 for another lab's."""
    if not roles.manages_any_lab(user):
        raise PermissionDenied
    machine = get_object_or_404(Machine.objects.select_related("lab", "machine_type"), pk=machine_id)
    if not roles.manages_lab(user, machine.lab_id):
        raise Http404
    return machine


def managed_window(user, pk: int) -> MaintenanceWindow:
    if not roles.manages_any_lab(user):
        raise PermissionDenied
    window = get_object_or_404(MaintenanceWindow.objects.select_related("machine__lab"), pk=pk)
    if not roles.manages_lab(user, window.machine.lab_id):
        raise Http404
    return window


def render_page(
    request,
    machine: Machine,
    *,
    plan_form=None,
    oos_form=None,
    confirm_plan: out_of_service.Hits | None = None,
    confirm_oos: out_of_service.Hits | None = None,
    status: int = 200,
):
    """The maintenance page of ``machine``, in the lab's time zone: the forms, a confirmation if one
    is asked, and the windows not over yet with their kind and the bookings still in them."""
    lab = machine.lab
    now = timezone.now()
    with timezone.override(lab.tz):
        if plan_form is None:
            plan_form = MaintenanceWindowForm(
                instance=MaintenanceWindow(machine=machine, created_by=request.user)
            )
        if oos_form is None:
            oos_form = OutOfServiceForm(initial={"kind": MaintenanceWindow.Kind.BREAKDOWN})
        windows = [
            {
                "window": w,
                "open": w.start <= now,
                "overlapping": _still_in(w, now),
                "shorten_form": ShortenMaintenanceForm(
                    prefix=f"w{w.pk}", initial={"end": timezone.localtime(w.end)}
                ),
            }
            for w in machine.maintenance_windows.filter(end__gt=now).order_by("start", "pk")
        ]
        context = {
            "machine": machine,
            "lab": lab,
            "form": plan_form,
            "oos_form": oos_form,
            "windows": windows,
            "open_windows": [item["window"] for item in windows if item["open"]],
            "confirm": confirm_oos or confirm_plan,
            "confirm_oos": confirm_oos,
        }
        return render(request, "booking/manage/maintenance.html", context, status=status)


def _still_in(window: MaintenanceWindow, now) -> list[Booking]:
    """Bookings still holding the machine in ``window`` (checked in, or made in a race)."""
    return list(
        Booking.objects.filter(
            machine_id=window.machine_id,
            status__in=Booking.HOLDING,
            start__lt=window.end,
            end__gt=max(window.start, now),
        )
        .select_related("member")
        .order_by("start")
    )


def report(request, hits: out_of_service.Hits) -> None:
    """Tell the manager what a window did to the bookings it hit."""
    if hits.cancelled:
        messages.success(
            request,
            ngettext(
                "%(count)d booking cancelled; its member has been emailed.",
                "%(count)d bookings cancelled; their members have been emailed.",
                len(hits.cancelled),
            )
            % {"count": len(hits.cancelled)},
        )
    if hits.sessions:
        messages.warning(
            request,
            _("These trainings and workshops were cancelled; tell their participants: %(sessions)s")
            % {"sessions": _lines(hits.sessions)},
        )
    if hits.kept:
        messages.info(
            request,
            _("These bookings are under way and stay (the machine is in use): %(bookings)s")
            % {"bookings": _lines(hits.kept)},
        )


def _lines(bookings: list[Booking]) -> str:
    return "; ".join(
        f"{_name(b)} ({date_format(timezone.localtime(b.start), 'DATETIME_FORMAT')})" for b in bookings
    )


def _name(booking: Booking) -> str:
    if booking.member is not None:
        return booking.member.get_full_name() or booking.member.username
    return booking.title or booking.get_kind_display()


@login_required
@require_POST
def put_out_of_service(request, machine_id: int):
    """Put the machine out of service; with bookings to cancel, only once the manager confirms."""
    machine = managed_machine(request.user, machine_id)
    with timezone.override(machine.lab.tz):
        form = OutOfServiceForm(request.POST)
        if not form.is_valid():
            return render_page(request, machine, oos_form=form, status=400)
        data = form.cleaned_data
        now = timezone.now()
        hits = out_of_service.bookings_hit(machine=machine, start=now, end=data["until"], now=now)
        if (hits.cancelled or hits.sessions) and "confirm" not in request.POST:
            return render_page(request, machine, oos_form=form, confirm_oos=hits)
        try:
            result = out_of_service.put_out_of_service(
                machine=machine,
                kind=data["kind"],
                until=data["until"],
                reason=data["reason"],
                by=request.user,
                now=now,
            )
        except BookingError as exc:
            form.add_error(None, exc.detail)
            return render_page(request, machine, oos_form=form, status=400)
        messages.success(
            request,
            _("%(machine)s is out of service until %(until)s.")
            % {"machine": machine.name, "until": out_of_service.until_label(result.window)},
        )
        report(request, result.hits)
    return redirect("booking:maintenance", machine_id=machine.pk)


@login_required
@require_POST
def back_in_service(request, pk: int):
    window = managed_window(request.user, pk)
    try:
        out_of_service.back_in_service(window=window, by=request.user)
    except BookingError as exc:
        messages.error(request, exc.detail)
    else:
        messages.success(request, _("%(machine)s is back in service.") % {"machine": window.machine.name})
    return redirect("booking:maintenance", machine_id=window.machine_id)


@login_required
@require_POST
def shorten(request, pk: int):
    window = managed_window(request.user, pk)
    with timezone.override(window.machine.lab.tz):
        form = ShortenMaintenanceForm(request.POST, prefix=f"w{window.pk}")
        if not form.is_valid():
            messages.error(request, " ".join(str(e) for errors in form.errors.values() for e in errors))
        else:
            try:
                window = out_of_service.shorten_maintenance(window, form.cleaned_data["end"], request.user)
            except BookingError as exc:
                messages.error(request, exc.detail)
            else:
                messages.success(
                    request,
                    _("The maintenance window now ends at %(until)s; the time after it is free again.")
                    % {"until": out_of_service.until_label(window)},
                )
    return redirect("booking:maintenance", machine_id=window.machine_id)
