"""Forms of the certification page and of the member's profile (statistics answers, erasure).

The certification forms only parse input; the rules live in :mod:`.services`. A member is always
named exactly — their username or their whole email address, case aside — never found by part of a
name or address, so the page cannot be used to list who is a member.
"""

from __future__ import annotations

import datetime as dt

from django import forms
from django.contrib.auth import get_user_model
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from fablab.booking.forms import within_reach

from .models import MemberProfile, Training
from .services import REASON_MAX


class ExactMemberField(forms.CharField):
    """An active member, named by exact username or exact email address (case-insensitive)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", 254)
        kwargs.setdefault("help_text", _("Exact username or email address."))
        super().__init__(**kwargs)

    def clean(self, value):
        value = super().clean(value)
        if value in self.empty_values:
            return None
        value = value.strip()
        users = get_user_model().objects.filter(is_active=True)
        by_name = users.filter(username__iexact=value)
        if by_name.count() == 1:
            return by_name.get()
        by_email = users.filter(email__iexact=value)
        count = by_email.count()
        if count == 1:
            return by_email.get()
        if count > 1:
            raise forms.ValidationError(_("Several members share this email address; use the username."))
        raise forms.ValidationError(_("No member has this username or email address."))


class GrantCertificationForm(forms.Form):
    member = ExactMemberField(label=_("Member"))
    training = forms.ModelChoiceField(label=_("Training"), queryset=Training.objects.none())
    expires_on = forms.DateField(
        label=_("Valid until (optional)"),
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
        help_text=_("Leave empty to use the training's own validity period, if it has one."),
    )
    reason = forms.CharField(label=_("Reason (optional)"), max_length=REASON_MAX, required=False)

    def __init__(self, *args, trainings: QuerySet[Training], **kwargs):
        super().__init__(*args, **kwargs)
        # Only the trainings this manager may grant are offered (and accepted).
        self.fields["training"].queryset = trainings

    def clean_expires_on(self):
        value = within_reach(self.fields["expires_on"], self.cleaned_data.get("expires_on"))
        if value is not None and value < timezone.localdate():
            raise forms.ValidationError(_("This date has already passed."))
        return value

    def expires_at(self, now: dt.datetime) -> dt.datetime | None:
        """Midnight after the chosen day (local time), or the training's validity, or never."""
        day = self.cleaned_data.get("expires_on")
        if day is not None:
            return dt.datetime.combine(
                day + dt.timedelta(days=1), dt.time(0), tzinfo=timezone.get_current_timezone()
            )
        training = self.cleaned_data["training"]
        if training.validity_days:
            return now + dt.timedelta(days=training.validity_days)
        return None


class MemberLookupForm(forms.Form):
    """Show one member's certifications and audit, named exactly."""

    member = ExactMemberField(label=_("Member"), required=True)


class RevokeCertificationForm(forms.Form):
    reason = forms.CharField(label=_("Reason (optional)"), max_length=REASON_MAX, required=False)


class KioskPinForm(forms.Form):
    """A new kiosk PIN, typed twice: 4 to 8 digits. The view stores only its hash (``make_password``)."""

    pin = forms.CharField(
        label=_("New PIN"),
        strip=False,
        max_length=8,
        widget=forms.PasswordInput(attrs={"inputmode": "numeric", "autocomplete": "new-password"}),
        help_text=_("4 to 8 digits."),
    )
    pin_again = forms.CharField(
        label=_("New PIN again"),
        strip=False,
        max_length=8,
        widget=forms.PasswordInput(attrs={"inputmode": "numeric", "autocomplete": "new-password"}),
    )

    def clean_pin(self) -> str:
        pin = self.cleaned_data["pin"]
        # str.isdigit accepts other scripts' digits and superscripts; a kiosk keypad types 0-9 only.
        if not (4 <= len(pin) <= 8 and all(c in "0123456789" for c in pin)):
            raise forms.ValidationError(_("A PIN is 4 to 8 digits."))
        return pin

    def clean(self):
        cleaned = super().clean()
        if (
            cleaned.get("pin")
            and cleaned.get("pin_again") is not None
            and cleaned["pin"] != cleaned["pin_again"]
        ):
            self.add_error("pin_again", _("The two PINs differ."))
        return cleaned


class ProfileForm(forms.ModelForm):
    """The member's language and their statistics answers (optional, opt-in, "prefer not to say").

    Without consent no answer is kept: unticking it empties them (the initiatives a member takes part in
    are their own statement and stay, but the reports read them only with consent). A birth year makes
    the declared age band unnecessary (the reports compute the band at the time of each activity), so
    only one of the two is kept.
    """

    initiatives = forms.ModelMultipleChoiceField(
        label=_("Initiatives I take part in"),
        queryset=None,
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )

    class Meta:
        model = MemberProfile
        fields = ["language", "statistics_consent", "gender", "birth_year", "age_band", "user_category"]
        widgets = {"birth_year": forms.NumberInput(attrs={"inputmode": "numeric", "placeholder": "1990"})}
        help_texts = {
            "birth_year": _("Only the year, never the date. Leave empty if you prefer to give an age band."),
            "age_band": _("Only if you prefer not to give your year of birth."),
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        user = self.instance.user
        self.fields["initiatives"].queryset = initiatives_offered(user)
        self.fields["initiatives"].initial = list(user.initiatives.values_list("initiative_id", flat=True))
        self.fields["birth_year"].min_value = 1900
        # The model's validators are not the field's: say the range in the HTML too.
        self.fields["birth_year"].widget.attrs.update(min=1900, max=timezone.localdate().year)

    def clean(self):
        cleaned = super().clean()
        if not cleaned.get("statistics_consent"):
            cleaned.update(gender="", birth_year=None, age_band="", user_category="")
        elif cleaned.get("birth_year"):
            cleaned["age_band"] = ""
        return cleaned

    def save(self, commit: bool = True) -> MemberProfile:
        from fablab.trainings import services as trainings

        profile = super().save(commit=commit)
        user = self.instance.user
        chosen = set(self.cleaned_data["initiatives"])
        for initiative in self.fields["initiatives"].queryset:
            if initiative in chosen:
                trainings.initiative_join(member=user, initiative=initiative)
            else:
                trainings.initiative_leave(member=user, initiative=initiative)
        return profile


def initiatives_offered(user) -> QuerySet:
    """The initiatives of the programmes that fund the labs ``user`` uses (booked in, trained or took a
    workshop in, or is a member of), plus those they already declared; every initiative when that is
    none (a newcomer)."""
    # One small set of lab ids per way of using a lab: OR-ing the four joins in one query multiplies
    # their rows (a member with a year of bookings took minutes).
    from fablab.booking.models import Booking, WorkshopRegistration
    from fablab.members.models import LabMembership
    from fablab.trainings.models import Initiative, Registration

    used = set(Booking.objects.filter(member=user).values_list("machine__lab_id", flat=True).distinct())
    used |= set(Registration.objects.filter(member=user).values_list("session__lab_id", flat=True).distinct())
    used |= set(
        WorkshopRegistration.objects.filter(member=user).values_list("series__lab_id", flat=True).distinct()
    )
    used |= set(LabMembership.objects.filter(member=user).values_list("lab_id", flat=True))
    offered = Initiative.objects.filter(
        Q(programme__labs__in=used) | Q(participations__member=user)
    ).distinct()
    if not offered.exists():
        offered = Initiative.objects.all()
    return offered.select_related("programme").order_by("name")


class DeleteAccountForm(forms.Form):
    """Erasure asks for the password and an explicit tick: it cannot be undone."""

    password = forms.CharField(
        label=_("Your password"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )
    confirm = forms.BooleanField(
        label=_("I understand that my account and my personal data are erased for good."), required=True
    )

    def __init__(self, *args, user, **kwargs):
        self.user = user
        super().__init__(*args, **kwargs)

    def clean_password(self) -> str:
        password = self.cleaned_data["password"]
        if not self.user.check_password(password):
            raise forms.ValidationError(_("This is not your password."), code="password")
        return password
