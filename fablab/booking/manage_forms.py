"""Forms of the manager pages for a lab's opening hours, closures and machines' booking policy.

What a manager may change is deliberately narrow: a machine's lab, slug and
type are shared with the bridges and the MQTT contract, and its required
training decides who may grant what (:func:`fablab.members.roles.grantable_trainings`),
so those stay with the network administrators in the Django admin.
"""

from __future__ import annotations

from django import forms
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from fablab.labs.models import Closure, Machine, OpeningHours

from .forms import within_reach

#: The booking policy a lab manager sets on the manager pages.
MACHINE_POLICY_FIELDS = [
    "bookable",
    "approval_required",
    "slot_minutes",
    "min_duration_minutes",
    "max_duration_minutes",
    "min_notice_minutes",
    "max_days_ahead",
    "buffer_minutes",
]


class MachinePolicyForm(forms.ModelForm):
    class Meta:
        model = Machine
        fields = MACHINE_POLICY_FIELDS


class OpeningHoursForm(forms.ModelForm):
    class Meta:
        model = OpeningHours
        fields = ["weekday", "opens", "closes"]
        widgets = {
            "opens": forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
            "closes": forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
        }

    def clean(self):
        cleaned = super().clean()
        opens, closes = cleaned.get("opens"), cleaned.get("closes")
        if opens and closes and closes <= opens:
            self.add_error("closes", _("Closing time must be after opening time."))
        return cleaned


class ClosureForm(forms.ModelForm):
    class Meta:
        model = Closure
        fields = ["starts_on", "ends_on", "reason"]
        widgets = {
            "starts_on": forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
            "ends_on": forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
        }

    def clean_starts_on(self):
        return within_reach(self.fields["starts_on"], self.cleaned_data.get("starts_on"))

    def clean_ends_on(self):
        value = within_reach(self.fields["ends_on"], self.cleaned_data.get("ends_on"))
        if value is not None and value < timezone.localdate():
            raise forms.ValidationError(_("This date has already passed."))
        return value

    def clean(self):
        cleaned = super().clean()
        start, end = cleaned.get("starts_on"), cleaned.get("ends_on")
        if start and end and end < start:
            self.add_error("ends_on", _("The last day must not be before the first day."))
        return cleaned
