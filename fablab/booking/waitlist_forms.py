"""The form of the waitlist's join page. It only parses input; the rules live in :mod:`.waitlist`."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from fablab.labs.models import Machine

from .forms import StartEndMixin

WIDGET = {"type": "datetime-local"}


class WaitlistJoinForm(StartEndMixin, forms.Form):
    """This machine or any machine of its type in its lab, and a window typed in lab time (the view
    activates the lab's zone)."""

    MACHINE, TYPE = "machine", "type"

    target = forms.ChoiceField(label=_("Wait for"), widget=forms.RadioSelect, initial=MACHINE)
    start = forms.DateTimeField(
        label=_("From"), widget=forms.DateTimeInput(attrs=WIDGET, format="%Y-%m-%dT%H:%M")
    )
    end = forms.DateTimeField(
        label=_("Until"),
        widget=forms.DateTimeInput(attrs=WIDGET, format="%Y-%m-%dT%H:%M"),
        help_text=_("You are offered freed time within this window, as long as the machine allows."),
    )

    def __init__(self, *args, machine: Machine, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["target"].choices = [
            (self.MACHINE, _("Only %(machine)s") % {"machine": machine.name}),
            (
                self.TYPE,
                _("Any %(type)s in %(lab)s") % {"type": machine.machine_type.name, "lab": machine.lab.name},
            ),
        ]
