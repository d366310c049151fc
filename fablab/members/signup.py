"""The self sign-up form: allauth's (email, username, password twice) plus language and date of birth.

Kept apart from :mod:`.accounts` because allauth imports it while loading its own forms.
"""

from __future__ import annotations

import datetime as dt

from allauth.account.forms import SignupForm as AllauthSignupForm
from django import forms
from django.conf import settings
from django.utils import timezone, translation
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from .models import CONSENT_AGE


class SignupForm(AllauthSignupForm):
    """Saved by :meth:`fablab.members.accounts.AccountAdapter.save_user` into the member's profile."""

    language = forms.ChoiceField(label=_("Preferred language"), choices=settings.LANGUAGES)
    birth_date = forms.DateField(
        label=_("Date of birth"),
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        current = translation.get_language() or settings.LANGUAGE_CODE
        codes = [code for code, _name in settings.LANGUAGES]
        self.fields["language"].initial = current if current in codes else settings.LANGUAGE_CODE
        self.fields["birth_date"].help_text = gettext(
            "Members under %(age)d need a parent's or guardian's consent, recorded by a lab manager, "
            "before their first booking."
        ) % {"age": CONSENT_AGE}

    def clean_birth_date(self) -> dt.date:
        born = self.cleaned_data["birth_date"]
        today = timezone.localdate()
        if born > today:
            raise forms.ValidationError(_("The date of birth cannot be in the future."), code="future")
        if born.year < today.year - 120:
            raise forms.ValidationError(_("Please check the year of birth."), code="too_old")
        return born
