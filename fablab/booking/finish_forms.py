"""Forms of "I'm done" on the booking page and at the kiosk: the optional one-line fault report.

They parse input only; :func:`fablab.booking.lifecycle.finish` decides.
"""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from .lifecycle import FAULT_MAX, one_line


class FinishForm(forms.Form):
    fault = forms.CharField(
        label=_("Something wrong with the machine? (optional)"),
        max_length=FAULT_MAX,
        required=False,
        help_text=_("One line for the lab's managers, e.g. “the nozzle is clogged”."),
        error_messages={"max_length": _("Describe the fault in at most %(limit_value)d characters.")},
        widget=forms.TextInput(attrs={"autocomplete": "off", "enterkeyhint": "done"}),
    )

    def clean_fault(self) -> str:
        return one_line(self.cleaned_data["fault"])


class KioskFinishForm(FinishForm):
    """The same at the kiosk, with the ticket the member's PIN earned and the booking they finish."""

    ticket = forms.CharField(max_length=500, widget=forms.HiddenInput)
    booking = forms.IntegerField(min_value=1, widget=forms.HiddenInput)
