"""Forms of the training pages. Times are typed in the lab's time zone (the views activate it)."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from fablab.booking.forms import StartEndMixin
from fablab.labs.models import Lab
from fablab.members import roles
from fablab.members.forms import ExactMemberField

from . import access
from .models import Initiative, TrainingSession

DATETIME = {"type": "datetime-local"}


class SessionForm(StartEndMixin, forms.ModelForm):
    """Schedule or edit a session of ``lab``: its own or network-wide trainings, its own machines.

    "Outside opening hours" is offered to the lab's managers only; the training is fixed once scheduled.
    """

    class Meta:
        model = TrainingSession
        fields = [
            "training",
            "machines",
            "start",
            "end",
            "seats",
            "language",
            "initiative",
            "prerequisites",
            "outside_opening_hours",
        ]
        widgets = {
            "start": forms.DateTimeInput(attrs=DATETIME, format="%Y-%m-%dT%H:%M"),
            "end": forms.DateTimeInput(attrs=DATETIME, format="%Y-%m-%dT%H:%M"),
            "machines": forms.CheckboxSelectMultiple,
            "prerequisites": forms.CheckboxSelectMultiple,
        }

    def __init__(self, *args, lab: Lab, user, **kwargs):
        super().__init__(*args, **kwargs)
        trainings = access.lab_trainings(lab)
        self.fields["training"].queryset = trainings
        self.fields["prerequisites"].queryset = trainings
        self.fields["machines"].queryset = lab.machines.order_by("name")
        self.fields["initiative"].queryset = Initiative.objects.filter(programme__labs=lab).distinct()
        self.fields["seats"].min_value = 1
        if self.instance.pk:
            self.fields["training"].disabled = True
        if not roles.manages_lab(user, lab):
            del self.fields["outside_opening_hours"]


class TrainerForm(forms.Form):
    member = ExactMemberField(label=_("Member"))
