"""Accounts: the login form, allauth's adapter, API token rotation, guardians' consent and lab approval.

See docs/accounts.md. The booking rules read :func:`booking_refusal` (through
``fablab.booking.access``); everything that writes an account's state is here.
"""

from __future__ import annotations

import datetime as dt

from allauth.account.adapter import DefaultAccountAdapter
from allauth.account.models import EmailAddress
from django import forms
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.signals import user_logged_in
from django.db import IntegrityError, transaction
from django.db.models.signals import pre_save
from django.dispatch import receiver
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from . import throttle
from .models import CONSENT_AGE, GuardianConsent, LabMembership, MemberProfile, age_on


class LoginForm(AuthenticationForm):
    """Django's login form, throttled (:mod:`.throttle`) and closed to unconfirmed sign-ups.

    The throttle is checked before the password, so a throttled client learns nothing about it.
    """

    username = forms.CharField(label=_("Username or email address"), max_length=254)
    error_messages = {
        **AuthenticationForm.error_messages,
        "invalid_login": _("Please enter a correct username or email address and password."),
        "unconfirmed": _(
            "Please confirm your email address first: follow the link in the email we sent you."
        ),
    }

    def clean(self):
        username = self.cleaned_data.get("username") or ""
        if username and self.request is not None:
            try:
                throttle.check(self.request, username)
            except throttle.Throttled as exc:
                self.throttled = exc
                raise forms.ValidationError(exc.message(), code="throttled") from None
        return super().clean()

    def confirm_login_allowed(self, user) -> None:
        super().confirm_login_allowed(user)
        if not email_confirmed(user):
            raise forms.ValidationError(self.error_messages["unconfirmed"], code="unconfirmed")


def email_confirmed(user) -> bool:
    """False only for a self sign-up whose address is not confirmed yet.

    Accounts made by an administrator (or before sign-up existed) have no allauth address rows.
    """
    addresses = list(EmailAddress.objects.filter(user=user).values_list("verified", flat=True))
    return not addresses or any(addresses)


class AccountAdapter(DefaultAccountAdapter):
    """allauth, with our login throttle instead of its own and the member's language at sign-up."""

    def pre_authenticate(self, request, **credentials) -> None:
        try:
            throttle.check(request, throttle.identifier_of(credentials))
        except throttle.Throttled as exc:
            raise forms.ValidationError(exc.message(), code="throttled") from None

    def authentication_failed(self, request, **credentials) -> None:
        # Counted by the user_login_failed signal (fablab.members.throttle); nothing more to do.
        return None

    def save_user(self, request, user, form, commit=True):
        user = super().save_user(request, user, form, commit=commit)
        if commit:
            MemberProfile.objects.update_or_create(
                user=user,
                defaults={
                    "language": form.cleaned_data["language"],
                    "birth_date": form.cleaned_data["birth_date"],
                },
            )
        return user


@receiver(user_logged_in, dispatch_uid="fablab.members.accounts.clear_throttle")
def _clear_throttle(sender, request, user, **kwargs) -> None:
    if request is not None:
        throttle.note_success(request, user.get_username())


# --- API tokens -----------------------------------------------------------------------------------


def revoke_tokens(user, *, digest: str | None = None) -> int:
    """Delete the member's API tokens (only the one with ``digest`` if given); the count deleted."""
    from knox.models import AuthToken

    tokens = AuthToken.objects.filter(user=user)
    if digest is not None:
        tokens = tokens.filter(digest=digest)
    return tokens.delete()[0]


@receiver(pre_save, dispatch_uid="fablab.members.accounts.rotate_tokens_on_password_change")
def _rotate_tokens_on_password_change(sender, instance, raw=False, update_fields=None, **kwargs) -> None:
    """A new password revokes every API token: whoever had the old one may have a token too.

    On the save itself, whatever set the password (the change and reset pages, the admin,
    ``set_password`` or ``set_unusable_password`` then ``save``), so no page can forget it; deleted
    in the same transaction as the save when there is one. Django re-hashing the *same* password
    at login (``check_password`` clears ``_password`` before saving) revokes nothing.
    """
    from django.contrib.auth import get_user_model

    if raw or sender is not get_user_model() or instance.pk is None:
        return
    if update_fields is not None and "password" not in update_fields:
        return
    if getattr(instance, "_password", None) is None and instance.has_usable_password():
        return
    old = sender.objects.filter(pk=instance.pk).values_list("password", flat=True).first()
    if old is not None and old != instance.password:
        revoke_tokens(instance)


# --- Guardians' consent -----------------------------------------------------------------------------


def needs_guardian_consent(user, today: dt.date) -> bool:
    """Younger than CONSENT_AGE on ``today`` with no consent recorded (no birth date: no)."""
    birth = MemberProfile.objects.filter(user=user).values_list("birth_date", flat=True).first()
    if birth is None or age_on(birth, today) >= CONSENT_AGE:
        return False
    return not GuardianConsent.objects.filter(member=user).exists()


def record_guardian_consent(*, member, guardian_name: str, guardian_email: str, method: str, by, now=None):
    """Record a guardian's consent; the row (with ``recorded_by``) is the audit."""
    return GuardianConsent.objects.create(
        member=member,
        guardian_name=guardian_name,
        guardian_email=guardian_email,
        method=method,
        given_at=now or timezone.now(),
        recorded_by=by,
    )


# --- Lab approval -------------------------------------------------------------------------------------


def request_membership(*, lab, member, now=None) -> LabMembership:
    """The member's (pending) membership of ``lab``, created if missing; idempotent.

    Two requests at once: the unique constraint lets one insert win; the other reads its row.
    """
    try:
        with transaction.atomic():
            membership, _created = LabMembership.objects.get_or_create(
                lab=lab, member=member, defaults={"requested_at": now or timezone.now()}
            )
    except IntegrityError:
        membership = LabMembership.objects.get(lab=lab, member=member)
    return membership


def approve_membership(*, membership: LabMembership, by, now=None) -> bool:
    """Approve a pending membership; False if someone approved it first (the first approver stays)."""
    updated = LabMembership.objects.filter(pk=membership.pk, approved_at__isnull=True).update(
        approved_at=now or timezone.now(), approved_by=by
    )
    return bool(updated)


def membership_approved(user, lab) -> bool:
    """True unless ``lab`` approves new members and ``user`` is not approved there (managers always are)."""
    if not lab.new_members_need_approval:
        return True
    from . import roles

    if roles.manages_lab(user, lab):
        return True
    return LabMembership.objects.filter(lab=lab, member=user, approved_at__isnull=False).exists()


def booking_refusal(user, lab, now: dt.datetime) -> str | None:
    """The booking rule code an account's state breaks in ``lab`` at ``now``, else None."""
    if needs_guardian_consent(user, timezone.localtime(now, lab.tz).date()):
        return "guardian_consent_needed"
    if not membership_approved(user, lab):
        return "membership_pending"
    return None
