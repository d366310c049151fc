"""Forms of the lab kiosk and of its manager page. They parse input; the rules live in :mod:`.kiosk`."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from fablab.members.models import MemberProfile

from .kiosk import normalise_number

#: Long enough for any badge reader's number; bounded so nobody makes the server hash a novel.
NUMBER_MAX = 64
PIN_MAX = 32


class KioskLoginForm(forms.Form):
    """Member number or badge, and PIN. The number field has the focus: a USB badge reader types into it."""

    number = forms.CharField(
        label=_("Member number or badge"),
        max_length=NUMBER_MAX,
        widget=forms.TextInput(
            attrs={
                "autofocus": True,
                "autocomplete": "off",
                "autocapitalize": "off",
                "spellcheck": "false",
                "inputmode": "numeric",
                "enterkeyhint": "next",
            }
        ),
    )
    pin = forms.CharField(
        label=_("PIN"),
        max_length=PIN_MAX,
        strip=False,
        widget=forms.PasswordInput(
            attrs={"inputmode": "numeric", "autocomplete": "off", "enterkeyhint": "go"}, render_value=False
        ),
    )


class KioskPickForm(forms.Form):
    """Which of several bookings the member checks in, with the ticket their PIN earned."""

    ticket = forms.CharField(max_length=500, widget=forms.HiddenInput)
    booking = forms.IntegerField(min_value=1)


class EnrolKioskForm(forms.Form):
    name = forms.CharField(
        label=_("Name of this screen"),
        max_length=100,
        help_text=_("For example “Entrance” or “Laser room”."),
    )


class BadgeForm(forms.Form):
    """Assign a badge number to a member named by their member number; an empty badge clears it."""

    member_number = forms.CharField(label=_("Member number"), max_length=12)
    badge_number = forms.CharField(
        label=_("Badge number"),
        max_length=NUMBER_MAX,
        required=False,
        help_text=_("Scan the badge into this field. Leave empty to remove the member's badge."),
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )

    def clean_member_number(self) -> str:
        return normalise_number(self.cleaned_data["member_number"])

    def clean_badge_number(self) -> str | None:
        value = self.cleaned_data["badge_number"].strip()
        if not value:
            return None
        # The kiosk reads a member number first: a badge equal to one would never reach its member.
        if MemberProfile.objects.filter(member_number=normalise_number(value)).exists():
            raise forms.ValidationError(_("This number is a member number; it cannot be a badge number."))
        return value
