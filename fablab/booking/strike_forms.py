"""The manager's waiver form: a strike is waived with a reason, which is kept (audited, never edited)."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from .strikes import REASON_MAX


class WaiveForm(forms.Form):
    reason = forms.CharField(
        label=_("Reason for waiving"),
        max_length=REASON_MAX,
        help_text=_("Kept with the waiver, e.g. “phoned in sick, confirmed by the lab”."),
        error_messages={
            "required": _("Give a reason: it is kept with the waiver."),
            "max_length": _("Keep the reason to at most %(limit_value)d characters."),
        },
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )

    def clean_reason(self) -> str:
        reason = " ".join(self.cleaned_data["reason"].split())
        if not reason:
            raise forms.ValidationError(self.fields["reason"].error_messages["required"], code="required")
        return reason
