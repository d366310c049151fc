"""Forms of the workshop pages. They only parse input into a :class:`~fablab.booking.series.Recurrence`;
the rules live in :mod:`fablab.booking.series`."""

from __future__ import annotations

import datetime as dt

from django import forms
from django.utils.translation import gettext_lazy as _

from fablab.labs.models import Lab, Machine

from . import series
from .errors import BookingError
from .forms import within_reach

WEEKDAY_CHOICES = [
    (0, _("Monday")),
    (1, _("Tuesday")),
    (2, _("Wednesday")),
    (3, _("Thursday")),
    (4, _("Friday")),
    (5, _("Saturday")),
    (6, _("Sunday")),
]


class WorkshopForm(forms.Form):
    """A workshop or course: what, on which machines, and the recurrence (an RRULE built from the days)."""

    title = forms.CharField(label=_("Title"), max_length=200)
    machines = forms.ModelMultipleChoiceField(
        label=_("Machines"), queryset=Machine.objects.none(), widget=forms.CheckboxSelectMultiple
    )
    weekdays = forms.TypedMultipleChoiceField(
        label=_("Every"), choices=WEEKDAY_CHOICES, coerce=int, widget=forms.CheckboxSelectMultiple
    )
    first_day = forms.DateField(label=_("From"), widget=forms.DateInput(attrs={"type": "date"}))
    start_time = forms.TimeField(label=_("Starts at"), widget=forms.TimeInput(attrs={"type": "time"}))
    duration_minutes = forms.IntegerField(label=_("Length (minutes)"), min_value=15, max_value=24 * 60)
    until = forms.DateField(label=_("Until"), required=False, widget=forms.DateInput(attrs={"type": "date"}))
    count = forms.IntegerField(
        label=_("Or this many times"), required=False, min_value=1, max_value=series.MAX_OCCURRENCES
    )
    seats = forms.IntegerField(label=_("Seats"), required=False, min_value=1, max_value=1000)
    target_group = forms.CharField(label=_("Target group"), max_length=200, required=False)
    initiative = forms.ModelChoiceField(label=_("Initiative"), queryset=None, required=False)

    def __init__(self, *args, lab: Lab, **kwargs):
        from django.apps import apps

        super().__init__(*args, **kwargs)
        self.lab = lab
        self.fields["machines"].queryset = Machine.objects.filter(lab=lab).order_by("name")
        # The initiatives of the programmes this lab belongs to (``trainings`` is looked up, not imported).
        initiatives = apps.get_model("trainings", "Initiative").objects.filter(programme__labs=lab)
        self.fields["initiative"].queryset = initiatives.order_by("name")

    def clean_first_day(self):
        return within_reach(self.fields["first_day"], self.cleaned_data.get("first_day"))

    def clean_until(self):
        return within_reach(self.fields["until"], self.cleaned_data.get("until"))

    def clean(self):
        cleaned = super().clean()
        until, count, first = cleaned.get("until"), cleaned.get("count"), cleaned.get("first_day")
        if not until and not count:
            self.add_error("until", _("Give a last day or a number of times."))
        elif until and first and until < first:
            self.add_error("until", _("The last day must not be before the first."))
        if self.errors:
            return cleaned
        try:
            self.recurrence = series.Recurrence(
                series.weekly_rule(cleaned["weekdays"], count=count),
                first,
                cleaned["start_time"],
                dt.timedelta(minutes=cleaned["duration_minutes"]),
                until=until,
            )
            series.occurrences(self.recurrence, self.lab.tz)
        except BookingError as exc:
            raise forms.ValidationError(exc.detail) from exc
        return cleaned
