"""The forms of a machine's care section (:mod:`devices.care_views` posts them, :mod:`devices.views` shows them)."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from fablab.labs.models import Machine

from . import care
from .models import ServiceInterval

#: The longest interval a task may be given in the care section, in hours (about eleven years of use
#: around the clock): a longer one is a slip of the keyboard, a task that would never fall due. Only
#: this form bounds it; the model's ``every_hours`` takes any positive integer.
MAX_HOURS = 100_000


class IntervalForm(forms.Form):
    name = forms.CharField(
        label=gettext_lazy("Task"),
        max_length=100,
        help_text=gettext_lazy("For example: laser tube, spindle bearings."),
    )
    every_hours = forms.IntegerField(label=gettext_lazy("Every (hours)"), min_value=1, max_value=MAX_HOURS)
    basis = forms.ChoiceField(label=gettext_lazy("Counted in"), choices=ServiceInterval.Basis.choices)

    def __init__(self, *args, machine: Machine, **kwargs) -> None:
        kwargs.setdefault("auto_id", "care_%s")  # unique on the machine's page
        super().__init__(*args, **kwargs)
        self.machine = machine

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if not name:
            raise forms.ValidationError(_("Name the task."), code="required")
        if ServiceInterval.objects.filter(machine=self.machine, name__iexact=name).exists():
            raise forms.ValidationError(
                _("%(machine)s already has a task named “%(name)s”.")
                % {"machine": self.machine.name, "name": name},
                code="duplicate",
            )
        return name

    def clean_basis(self) -> str:
        basis = self.cleaned_data["basis"]
        if basis == ServiceInterval.Basis.LASER and not care.reports_laser(self.machine):
            raise forms.ValidationError(
                _(
                    "Laser-on hours are counted only on a machine linked through a GRBL controller "
                    "in laser mode; count this task in run hours."
                ),
                code="no_laser",
            )
        return basis


class ServiceForm(forms.Form):
    note = forms.CharField(
        label=gettext_lazy("Note"),
        max_length=300,
        required=False,
        help_text=gettext_lazy("Optional: what was done, parts replaced."),
    )
