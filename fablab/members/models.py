"""Members, roles, trainings and certifications."""

from __future__ import annotations

import datetime as dt
import secrets

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from fablab.reports.definitions import AGE_BANDS, GENDERS, USER_CATEGORIES


def new_calendar_token() -> str:
    return secrets.token_urlsafe(24)


def validate_birth_year(value: int) -> None:
    """A year of birth from 1900 to this year (checked when entered, so "this year" moves on)."""
    if value is not None and not 1900 <= value <= timezone.now().year:
        raise ValidationError(
            _("Enter a year from 1900 to %(year)s."), code="birth_year", params={"year": timezone.now().year}
        )


class MemberProfile(models.Model):
    """What the platform knows about a person beyond their login.

    The statistics categories are optional and opt-in: they are only ever
    reported in aggregate, and every one of them offers "prefer not to say".
    """

    #: The statistics answers use the report categories of :mod:`fablab.reports.definitions` (spelled once
    #: there); "" is "prefer not to say" on every question.
    GENDER_CHOICES = [("", _("Prefer not to say")), *((k, v) for k, v in GENDERS.items() if k)]
    AGE_BAND_CHOICES = [("", _("Prefer not to say")), *((k, v) for k, v in AGE_BANDS.items() if k)]
    USER_CATEGORY_CHOICES = [("", _("Prefer not to say")), *((k, v) for k, v in USER_CATEGORIES.items() if k)]

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="profile")
    language = models.CharField(
        _("preferred language"), max_length=8, choices=settings.LANGUAGES, default=settings.LANGUAGE_CODE
    )
    statistics_consent = models.BooleanField(
        _("I agree that my answers below are used, anonymously and in aggregate, in programme statistics"),
        default=False,
    )
    gender = models.CharField(_("gender"), max_length=12, choices=GENDER_CHOICES, blank=True, default="")
    #: Statistics only (the age band at the time of each activity). Never a date: ``birth_date`` below
    #: exists for the guardian-consent rule alone and is never read for statistics.
    birth_year = models.PositiveSmallIntegerField(
        _("year of birth"), null=True, blank=True, validators=[validate_birth_year]
    )
    #: Declared only by members who prefer not to give a birth year; ignored when there is one.
    age_band = models.CharField(
        _("age band"), max_length=10, choices=AGE_BAND_CHOICES, blank=True, default=""
    )
    user_category = models.CharField(
        _("I use the labs as"), max_length=16, choices=USER_CATEGORY_CHOICES, blank=True, default=""
    )
    calendar_token = models.CharField(max_length=64, unique=True, default=new_calendar_token, editable=False)
    #: What a maker types at a lab kiosk (with their PIN); shown on their profile page.
    member_number = models.CharField(
        _("member number"), max_length=12, unique=True, null=True, blank=True, editable=False
    )
    #: The number a USB badge reader types; set by a lab manager.
    badge_number = models.CharField(_("badge number"), max_length=64, unique=True, null=True, blank=True)
    #: Hashed like a password (``make_password``); empty: the kiosk refuses this member.
    kiosk_pin = models.CharField(max_length=128, blank=True, editable=False)
    #: Asked at sign-up; under :data:`CONSENT_AGE` a guardian's consent must be recorded before booking.
    birth_date = models.DateField(_("date of birth"), null=True, blank=True)

    class Meta:
        verbose_name = _("member profile")
        verbose_name_plural = _("member profiles")

    def __str__(self) -> str:
        return str(self.user)

    def save(self, *args, **kwargs) -> None:
        if not self.member_number and self.user_id:
            self.member_number = f"{self.user_id:05d}"
            if kwargs.get("update_fields") is not None:
                kwargs["update_fields"] = {*kwargs["update_fields"], "member_number"}
        super().save(*args, **kwargs)

    def reset_calendar_token(self) -> None:
        """Revoke the secret calendar feed URL by issuing a new one."""
        self.calendar_token = new_calendar_token()
        self.save(update_fields=["calendar_token"])


#: Members younger than this need a guardian's recorded consent (:class:`GuardianConsent`) to book.
CONSENT_AGE = 13


def age_on(birth_date: dt.date, day: dt.date) -> int:
    """Whole years from ``birth_date`` to ``day`` (a 29 February birthday counts on 1 March)."""
    return day.year - birth_date.year - ((day.month, day.day) < (birth_date.month, birth_date.day))


def profile_for(user) -> MemberProfile:
    profile, _created = MemberProfile.objects.get_or_create(user=user)
    return profile


class Training(models.Model):
    """What a member must have followed before using some machines.

    Defined by a lab (``lab``), whose managers grant it and schedule its sessions, or shared
    network-wide (``lab`` empty) by an administrator.
    """

    slug = models.SlugField(_("slug"), max_length=63, unique=True)
    name = models.CharField(_("name"), max_length=200)
    lab = models.ForeignKey(
        "labs.Lab",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="trainings",
        verbose_name=_("lab"),
        help_text=_("Empty: shared by every lab of the network."),
    )
    description = models.TextField(_("description"), blank=True)
    validity_days = models.PositiveIntegerField(
        _("valid for (days)"),
        null=True,
        blank=True,
        help_text=_("Leave empty for a training that never expires."),
    )

    class Meta:
        ordering = ["name"]
        verbose_name = _("training")
        verbose_name_plural = _("trainings")

    def __str__(self) -> str:
        return self.name


class CertificationQuerySet(models.QuerySet):
    def active(self, at: dt.datetime | None = None) -> CertificationQuerySet:
        at = at or timezone.now()
        return self.filter(revoked_at__isnull=True).filter(
            models.Q(expires_at__isnull=True) | models.Q(expires_at__gt=at)
        )


class Certification(models.Model):
    member = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="certifications",
        verbose_name=_("member"),
    )
    training = models.ForeignKey(
        Training, on_delete=models.PROTECT, related_name="certifications", verbose_name=_("training")
    )
    granted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("granted by"),
    )
    granted_at = models.DateTimeField(_("granted at"), default=timezone.now)
    expires_at = models.DateTimeField(_("expires at"), null=True, blank=True)
    revoked_at = models.DateTimeField(_("revoked at"), null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    objects = CertificationQuerySet.as_manager()

    class Meta:
        ordering = ["-granted_at"]
        verbose_name = _("certification")
        verbose_name_plural = _("certifications")

    def __str__(self) -> str:
        return f"{self.member} – {self.training}"

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def is_valid(self, at: dt.datetime | None = None) -> bool:
        at = at or timezone.now()
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > at)


class Programme(models.Model):
    """A funding programme: the labs it funds and the officers who oversee them.

    An officer oversees exactly the labs of their programmes
    (:func:`fablab.members.roles.oversees_lab`); overseeing grants no
    manager right and shows no member's name.
    """

    name = models.CharField(_("name"), max_length=200, unique=True)
    labs = models.ManyToManyField(
        "labs.Lab", blank=True, related_name="programmes", verbose_name=_("labs it funds")
    )
    officers = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="programmes", verbose_name=_("programme officers")
    )

    class Meta:
        ordering = ["name"]
        verbose_name = _("programme")
        verbose_name_plural = _("programmes")

    def __str__(self) -> str:
        return self.name


class CertificationAudit(models.Model):
    """One grant or revocation of a certification: who did it, to whom, when and why.

    Written by :mod:`fablab.members.services` in the same transaction as the
    change itself, so there is no change without its row. Never edited.
    """

    class Action(models.TextChoices):
        GRANT = "grant", _("granted")
        REVOKE = "revoke", _("revoked")

    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        related_name="+",
        verbose_name=_("by"),
    )
    member = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        related_name="+",
        verbose_name=_("member"),
    )
    training = models.ForeignKey(
        Training, on_delete=models.PROTECT, related_name="audit", verbose_name=_("training")
    )
    certification = models.ForeignKey(
        Certification,
        on_delete=models.SET_NULL,
        null=True,
        related_name="audit",
        verbose_name=_("certification"),
    )
    action = models.CharField(_("action"), max_length=8, choices=Action.choices)
    at = models.DateTimeField(_("when"), default=timezone.now)
    expires_at = models.DateTimeField(_("expires at"), null=True, blank=True)
    reason = models.CharField(_("reason"), max_length=300, blank=True)

    class Meta:
        ordering = ["-at", "-pk"]
        verbose_name = _("certification audit entry")
        verbose_name_plural = _("certification audit")

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.action} {self.training} {self.member} by {self.actor}"


class GuardianConsent(models.Model):
    """A parent's or guardian's consent for a member under :data:`CONSENT_AGE`, as a manager recorded it.

    Written once by :func:`fablab.members.accounts.record_guardian_consent` and never edited: the row is
    the audit (who consented, how, when, and which manager recorded it). The newest row counts.
    """

    class Method(models.TextChoices):
        IN_PERSON = "in-person", _("In person at the lab")
        PAPER = "paper", _("Signed paper form")
        EMAIL = "email", _("By email from the guardian")

    member = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="guardian_consents",
        verbose_name=_("member"),
    )
    guardian_name = models.CharField(_("guardian's name"), max_length=200)
    guardian_email = models.EmailField(_("guardian's email address"), blank=True)
    method = models.CharField(_("how consent was given"), max_length=10, choices=Method.choices)
    given_at = models.DateTimeField(_("given at"), default=timezone.now)
    recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("recorded by"),
    )

    class Meta:
        ordering = ["-given_at", "-pk"]
        verbose_name = _("guardian's consent")
        verbose_name_plural = _("guardians' consents")

    def __str__(self) -> str:
        return f"{self.member} – {self.guardian_name} ({self.given_at:%Y-%m-%d})"


class LabMembership(models.Model):
    """A member's request to book in a lab that approves new members, and its approval.

    Pending while ``approved_at`` is empty. Created by the member (:func:`fablab.members.accounts.
    request_membership`); approved once by a manager of the lab, who is recorded (the audit).
    Only labs with ``Lab.new_members_need_approval`` read it.
    """

    lab = models.ForeignKey(
        "labs.Lab", on_delete=models.CASCADE, related_name="memberships", verbose_name=_("lab")
    )
    member = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="lab_memberships",
        verbose_name=_("member"),
    )
    requested_at = models.DateTimeField(_("requested at"), default=timezone.now)
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("approved by"),
    )
    approved_at = models.DateTimeField(_("approved at"), null=True, blank=True)

    class Meta:
        ordering = ["requested_at", "pk"]
        verbose_name = _("lab membership")
        verbose_name_plural = _("lab memberships")
        constraints = [models.UniqueConstraint(fields=["lab", "member"], name="one_membership_per_lab")]

    def __str__(self) -> str:
        return f"{self.member} @ {self.lab}"

    @property
    def approved(self) -> bool:
        return self.approved_at is not None
