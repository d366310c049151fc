"""A lab manager's hand on a machine's interlock: overrides for a stated time, with a reason, audited.

The page shows what the server wants (:class:`devices.models.Interlock`: enabled or disabled, and why)
beside what the machine reports (``MachineStatus.enabled``), the override form and every override
ever made on the machine (the audit: rows are never deleted; ending one early records who and when).
Creating an override ends the one in force first, so at most one holds at a time. After each change
the interlock is reconciled at once (:func:`devices.interlock.reconcile`), which writes the command.

Only the lab's managers (:func:`fablab.members.roles.manages_lab`) may see the page or post to it.
"""

from __future__ import annotations

import datetime as dt

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from fablab.labs.models import Machine
from fablab.members import roles

from . import interlock
from .models import Interlock, InterlockOverride, MachineLink, MachineStatus

#: The longest override a manager may set in one go (a day).
MAX_MINUTES = 24 * 60
AUDIT_ROWS = 100

REASONS = {
    interlock.OVERRIDE: gettext_lazy("a manager's override"),
    interlock.MAINTENANCE: gettext_lazy("maintenance"),
    interlock.BOOKING: gettext_lazy("a booking"),
    interlock.FINISHING: gettext_lazy("a job finishing after its booking"),
    interlock.IDLE: gettext_lazy("no booking"),
}


class OverrideForm(forms.Form):
    enabled = forms.TypedChoiceField(
        label=gettext_lazy("Keep the machine"),
        choices=[("1", gettext_lazy("enabled")), ("0", gettext_lazy("disabled"))],
        coerce=lambda v: v == "1",
        widget=forms.RadioSelect,
        initial="0",
    )
    minutes = forms.IntegerField(
        label=gettext_lazy("for (minutes)"), min_value=1, max_value=MAX_MINUTES, initial=30
    )
    reason = forms.CharField(
        label=gettext_lazy("Reason"),
        max_length=300,
        help_text=gettext_lazy("Kept with the override, for whoever reads the audit."),
    )


def _managed_machine(request, lab: str, machine: str) -> Machine:
    machine = get_object_or_404(
        Machine.objects.select_related("lab", "machine_type"), lab__slug=lab, slug=machine
    )
    if not roles.manages_lab(request.user, machine.lab_id):
        raise PermissionDenied(_("Only the lab's managers may override a machine's interlock."))
    return machine


def _back(machine: Machine):
    return redirect("devices:interlock", machine.lab.slug, machine.slug)


@login_required
def machine_interlock(request, lab, machine):
    """GET: the interlock's state, the override form and the audit; POST: create an override."""
    machine = _managed_machine(request, lab, machine)
    has_interlock = MachineLink.objects.filter(machine=machine, interlock=True).exists()
    form = OverrideForm(request.POST or None)
    if request.method == "POST":
        if not has_interlock:
            messages.error(request, _("%(machine)s has no interlock.") % {"machine": machine.name})
            return _back(machine)
        if form.is_valid():
            now = timezone.now()
            until = now + dt.timedelta(minutes=form.cleaned_data["minutes"])
            with transaction.atomic():
                # One override at a time: the new one replaces the one in force (which stays in the audit).
                InterlockOverride.objects.filter(interlock.override_filter(now), machine=machine).update(
                    ended_at=now, ended_by=request.user
                )
                InterlockOverride.objects.create(
                    machine=machine,
                    enabled=form.cleaned_data["enabled"],
                    reason=form.cleaned_data["reason"],
                    starts_at=now,
                    until=until,
                    created_by=request.user,
                )
            interlock.reconcile([machine], now)
            text = (
                _("%(machine)s is kept enabled until %(time)s.")
                if form.cleaned_data["enabled"]
                else _("%(machine)s is kept disabled until %(time)s.")
            )
            local = timezone.localtime(until, machine.lab.tz)
            messages.success(request, text % {"machine": machine.name, "time": local.strftime("%H:%M")})
            return _back(machine)
    now = timezone.now()
    row = Interlock.objects.filter(pk=machine.pk).select_related("booking", "last_command").first()
    status = MachineStatus.objects.filter(pk=machine.pk).first()
    overrides = list(
        InterlockOverride.objects.filter(machine=machine).select_related("created_by", "ended_by")[
            :AUDIT_ROWS
        ]
    )
    for o in overrides:
        o.in_force = o.ended_at is None and o.starts_at <= now < o.until
    context = {
        "lab": machine.lab,
        "machine": machine,
        "has_interlock": has_interlock,
        "interlock": row,
        "reason": REASONS.get(row.reason, row.reason) if row else "",
        "reported": status.enabled if status is not None and status.online else None,
        "online": bool(status and status.online),
        "form": form,
        "overrides": overrides,
    }
    with timezone.override(machine.lab.tz):
        return render(request, "devices/interlock.html", context)


@login_required
def end_override(request, lab, machine, pk):
    """POST: end an override in force now; the bookings rule the interlock again at once."""
    if request.method != "POST":
        return redirect("devices:interlock", lab, machine)
    machine = _managed_machine(request, lab, machine)
    now = timezone.now()
    ended = InterlockOverride.objects.filter(interlock.override_filter(now), pk=pk, machine=machine).update(
        ended_at=now, ended_by=request.user
    )
    if ended:
        interlock.reconcile([machine], now)
        messages.success(request, _("The override has ended; the bookings decide again."))
    else:
        messages.info(request, _("This override was no longer in force."))
    return _back(machine)
