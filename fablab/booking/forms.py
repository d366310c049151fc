"""Forms of the booking pages. They only parse input; the rules live in services."""

from __future__ import annotations

import datetime as dt
import re

from django import forms
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext_lazy as _

from fablab.labs.models import Machine, MaintenanceWindow

from . import selectors
from .templatetags.fablab_tags import duration as duration_label

_LOST_PLUS = re.compile(r"(T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?) (\d{2}:?\d{2})$")

#: How far from today a date typed into a form may lie. Nothing here is planned decades
#: ahead, and a year-1 or year-9999 date would overflow converting to UTC (a 500).
REACH = dt.timedelta(days=3660)


def within_reach(field: forms.Field, value):
    """``value`` (a date or aware datetime) unchanged, or the field's own "enter a valid date" error."""
    if value is None:
        return value
    today = timezone.now() if isinstance(value, dt.datetime) else timezone.localdate()
    if abs(value - today) > REACH:
        # A split date-and-time field (the admin's) names its date part "invalid_date".
        key = "invalid_date" if "invalid_date" in field.error_messages else "invalid"
        raise forms.ValidationError(field.error_messages[key], code="invalid")
    return value


def parse_moment(raw: str | None, tz) -> dt.datetime | None:
    """An ISO 8601 moment from a query string or form, aware; naive ones are read in ``tz``.

    A ``+`` of an offset that arrived unencoded in a query string has become a
    space; it is put back. Anything unparsable gives ``None``.
    """
    if not raw or len(raw) > 64:
        return None
    raw = _LOST_PLUS.sub(r"\1+\2", raw.strip())
    try:
        moment = dt.datetime.fromisoformat(raw)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz)
    try:
        distance = abs(moment - timezone.now())
    except (OverflowError, ValueError):
        return None
    # Nothing is bookable years away; refusing it here keeps date arithmetic in range.
    if distance > REACH:
        return None
    return moment


class BookingForm(forms.Form):
    """Confirm a booking: the start is fixed by the slot clicked, the length is chosen."""

    start = forms.CharField(widget=forms.HiddenInput)
    duration = forms.TypedChoiceField(label=_("Length"), coerce=int)
    purpose = forms.CharField(
        label=_("Purpose (optional)"),
        max_length=300,
        required=False,
        help_text=_("For example the project you are working on."),
    )
    #: A member series (:func:`fablab.booking.series.create_member_series`) when given.
    repeat_until = forms.DateField(
        label=_("Repeat weekly until (optional)"),
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text=_(
            "The same time every week; each week is booked when it comes within reach, under the usual rules."
        ),
    )

    def __init__(self, *args, machine: Machine, start: dt.datetime, now: dt.datetime | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.machine = machine
        self.start_moment = start
        self.fields["start"].initial = start.isoformat()
        self.fields["duration"].choices = self._duration_choices(machine, start, now)
        first = self.fields["duration"].choices[0][0] if self.fields["duration"].choices else None
        self.fields["duration"].initial = first

    @staticmethod
    def _duration_choices(machine: Machine, start: dt.datetime, now) -> list[tuple[int, str]]:
        slot = machine.slot_minutes
        shortest = -(-machine.min_duration_minutes // slot) * slot
        longest = machine.max_duration_minutes
        # Offer only lengths that fit the free time after the start; if the start is
        # not free any more, offer them all and let the rules say why it fails.
        free = selectors.availability_for_machine(
            machine=machine, start=start, end=start + dt.timedelta(minutes=longest), now=now
        )
        for f_start, f_end in free:
            if f_start <= start < f_end:
                fits = int((f_end - start).total_seconds() // 60)
                if fits >= shortest:
                    longest = min(longest, fits)
                break
        choices = []
        minutes = max(shortest, slot)
        while minutes <= longest:
            end = timezone.localtime(start + dt.timedelta(minutes=minutes))
            label = _("%(length)s, until %(end)s") % {
                "length": duration_label(minutes),
                "end": date_format(end, "TIME_FORMAT"),
            }
            choices.append((minutes, label))
            minutes += slot
        return choices

    def clean_repeat_until(self):
        until = within_reach(self.fields["repeat_until"], self.cleaned_data.get("repeat_until"))
        if until is not None and until <= timezone.localtime(self.start_moment).date():
            raise forms.ValidationError(_("The last day must be after the first booking."))
        return until

    @property
    def end_moment(self) -> dt.datetime:
        return self.start_moment + dt.timedelta(minutes=self.cleaned_data["duration"])


class StartEndMixin:
    """A ``start`` and an ``end`` typed into ``datetime-local`` inputs (in the lab's time zone, which
    the view activates): accepted with or without seconds, within reach, and the end after the start."""

    INPUT_FORMATS = ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in ("start", "end"):
            self.fields[name].input_formats = self.INPUT_FORMATS

    def clean_start(self):
        return within_reach(self.fields["start"], self.cleaned_data.get("start"))

    def clean_end(self):
        return within_reach(self.fields["end"], self.cleaned_data.get("end"))

    def clean(self):
        cleaned = super().clean()
        start, end = cleaned.get("start"), cleaned.get("end")
        if start and end and end <= start:
            self.add_error("end", _("The end must be after the start."))
        return cleaned


class MaintenanceWindowForm(StartEndMixin, forms.ModelForm):
    """Start and end are read in the lab's time zone (the view activates it)."""

    class Meta:
        model = MaintenanceWindow
        fields = ["start", "end", "reason"]
        widgets = {
            "start": forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
            "end": forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        }
