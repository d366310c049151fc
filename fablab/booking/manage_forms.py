"""Forms of the manager pages: a lab's opening hours, closures, quota policies, its machines'
booking policy, and booking a machine for a member.

What a manager may change is deliberately narrow: a machine's lab, slug and
type are shared with the bridges and the MQTT contract, and its required
training decides who may grant what (:func:`fablab.members.roles.grantable_trainings`),
so those stay with the network administrators in the Django admin.
"""

from __future__ import annotations

import datetime as dt

from django import forms
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from fablab.labs.models import Closure, Lab, Machine, MachineType, MaintenanceWindow, OpeningHours
from fablab.members.forms import ExactMemberField

from .forms import StartEndMixin, within_reach
from .models import QuotaPolicy

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
    "bookable_around_the_clock",
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


class QuotaPolicyForm(forms.ModelForm):
    """A quota policy of one lab. The lab is fixed by the view, never read from the form;
    network-wide policies (no lab) are the network administrators' (Django admin)."""

    class Meta:
        model = QuotaPolicy
        fields = ["machine_type", "max_hours_per_week", "max_future_bookings"]

    def __init__(self, *args, lab: Lab, **kwargs):
        super().__init__(*args, **kwargs)
        self.lab = lab
        self.instance.lab = lab
        self.fields["machine_type"].queryset = MachineType.objects.order_by("name")

    def clean(self):
        cleaned = super().clean()
        machine_type = cleaned.get("machine_type")
        # The lab is not a form field, so the model's unique constraint is not checked by the form.
        taken = QuotaPolicy.objects.filter(lab=self.lab, machine_type=machine_type).exclude(
            pk=self.instance.pk
        )
        if machine_type is not None and taken.exists():
            self.add_error("machine_type", _("This lab already has a quota policy for this machine type."))
        return cleaned


class ManagerBookingForm(StartEndMixin, forms.Form):
    """A manager books a machine of their lab for a member, named exactly (see ``ExactMemberField``).

    Start and end are read in the lab's time zone (the view activates it). The form only parses
    input: every booking rule is checked by :func:`fablab.booking.services.booking_create`.
    """

    member = ExactMemberField(label=_("Member"))
    start = forms.DateTimeField(
        label=_("Start"),
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )
    end = forms.DateTimeField(
        label=_("End"),
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )
    purpose = forms.CharField(label=_("Purpose (optional)"), max_length=300, required=False)

    @staticmethod
    def initial_start(lab: Lab, day: dt.date) -> dt.datetime | None:
        """The lab's first opening time on ``day``, to pre-fill the form; ``None`` if it is closed."""
        intervals = lab.opening_intervals(day)
        return timezone.localtime(intervals[0][0], lab.tz) if intervals else None


class OutOfServiceForm(forms.Form):
    """Put a machine out of service from now until a moment typed in the lab's time zone (the view
    activates it). Only parses input: :func:`fablab.booking.out_of_service.put_out_of_service` acts."""

    kind = forms.ChoiceField(label=_("Why"), choices=MaintenanceWindow.Kind.choices)
    until = forms.DateTimeField(
        label=_("Out of service until"),
        input_formats=StartEndMixin.INPUT_FORMATS,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )
    reason = forms.CharField(
        label=_("Reason"),
        max_length=200,
        required=False,
        help_text=_("Told to the members whose bookings are cancelled."),
    )

    def clean_until(self):
        until = within_reach(self.fields["until"], self.cleaned_data.get("until"))
        if until is not None and until <= timezone.now():
            raise forms.ValidationError(_("Give a moment after now."), code="past")
        return until


class ShortenMaintenanceForm(forms.Form):
    """A window's new, earlier end, in the lab's time zone."""

    end = forms.DateTimeField(
        label=_("New end"),
        input_formats=StartEndMixin.INPUT_FORMATS,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )

    def clean_end(self):
        return within_reach(self.fields["end"], self.cleaned_data.get("end"))


class LabPolicyForm(forms.ModelForm):
    """The lab's waitlist hold and no-show (strike) policy; the model's validators bound every number."""

    class Meta:
        model = Lab
        fields = [
            "strike_limit",
            "strike_window_days",
            "strike_block_days",
            "late_cancel_hours",
            "waitlist_hold_minutes",
        ]
