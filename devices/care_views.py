"""The manager's hand on a machine's care: service intervals added and removed, services recorded, and
the fault members reported marked resolved.

The "Care" section of the machine's live page (:func:`devices.views.machine_live`, managers only)
shows :func:`devices.care.summary`; its forms post here. Only the lab's managers
(:func:`fablab.members.roles.manages_lab`) may post (anyone else: 403, nothing written). A form with
bad input renders the page again with its errors and what was typed (status 400), so nothing is lost;
a success redirects to the page's care section. After each change the machine's ``service_due`` alert
follows its intervals at once (:func:`devices.care.refresh_machine`).
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from fablab.labs.models import Machine
from fablab.members import roles

from . import care, fault_reports
from .care_forms import IntervalForm, ServiceForm
from .models import Alert, ServiceInterval


def managed_machine(request, lab: str, machine: str) -> Machine:
    """The machine of the URL, for its lab's managers (anyone else: 403, before any form is read)."""
    machine = get_object_or_404(
        Machine.objects.select_related("lab", "machine_type"), lab__slug=lab, slug=machine
    )
    if not roles.manages_lab(request.user, machine.lab_id):
        raise PermissionDenied(_("Only the lab's managers may look after this machine."))
    return machine


def _back(machine: Machine):
    return redirect(reverse("devices:machine", args=[machine.lab.slug, machine.slug]) + "#care")


def _page_again(request, machine: Machine, **care_forms):
    """The machine's page with the care forms as typed and their errors (400)."""
    from .views import machine_live

    response = machine_live(request, machine.lab.slug, machine.slug, care_forms=care_forms)
    response.status_code = 400
    return response


@login_required
@require_POST
def add_interval(request, lab, machine):
    """POST ``name``, ``every_hours``, ``basis``: a new service interval, counted from now."""
    machine = managed_machine(request, lab, machine)
    form = IntervalForm(request.POST, machine=machine)
    if not form.is_valid():
        return _page_again(request, machine, add=form)
    now = timezone.now()
    try:
        with transaction.atomic():
            ServiceInterval.objects.create(
                machine=machine,
                name=form.cleaned_data["name"],
                every_hours=form.cleaned_data["every_hours"],
                basis=form.cleaned_data["basis"],
                counted_from=now,
            )
    except IntegrityError:  # the same name added at the same moment by someone else
        form.add_error(
            "name", _("%(machine)s already has a task with this name.") % {"machine": machine.name}
        )
        return _page_again(request, machine, add=form)
    care.refresh_machine(machine, now)
    messages.success(
        request,
        _("%(task)s is now counted every %(hours)s hours.")
        % {"task": form.cleaned_data["name"], "hours": form.cleaned_data["every_hours"]},
    )
    return _back(machine)


@login_required
@require_POST
def remove_interval(request, lab, machine, pk):
    """POST: the interval and its service history are removed; the machine's alert follows."""
    machine = managed_machine(request, lab, machine)
    interval = get_object_or_404(ServiceInterval, pk=pk, machine=machine)
    name = interval.name
    interval.delete()
    care.refresh_machine(machine, timezone.now())
    messages.success(request, _("%(task)s is no longer counted.") % {"task": name})
    return _back(machine)


@login_required
@require_POST
def service_done(request, lab, machine, pk):
    """POST ``note`` (optional): the interval's service is done now; its count restarts."""
    machine = managed_machine(request, lab, machine)
    interval = get_object_or_404(
        ServiceInterval.objects.select_related("machine__lab"), pk=pk, machine=machine
    )
    form = ServiceForm(request.POST)
    if not form.is_valid():
        return _page_again(request, machine, service=(interval.pk, form))
    care.record_service(interval, request.user, form.cleaned_data["note"], timezone.now())
    messages.success(
        request, _("Service recorded: %(task)s counts from zero again.") % {"task": interval.name}
    )
    return _back(machine)


@login_required
@require_POST
def resolve_fault(request, lab, machine, pk):
    """POST: the fault members reported (the machine's ``fault_reported`` alert ``pk``) is dealt with."""
    machine = managed_machine(request, lab, machine)
    alert = get_object_or_404(
        Alert.objects.select_related("machine"), pk=pk, machine=machine, kind=Alert.Kind.FAULT_REPORTED
    )
    if fault_reports.resolve(alert, request.user, timezone.now()):
        messages.success(request, _("The reported fault is marked as resolved."))
    else:
        messages.info(request, _("This fault report was already closed."))
    return _back(machine)
