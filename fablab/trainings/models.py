"""Trainers, training sessions and their registrations, initiatives.

Integrity:

* a session holds each of its machines with one :class:`~fablab.booking.models.Booking` of kind
  ``training`` (``holds``), made through the booking integrity (exclusion constraint on PostgreSQL,
  IMMEDIATE transaction on SQLite), see :mod:`fablab.trainings.services`;
* a member has at most one live (not cancelled) registration per session: the conditional unique
  constraint ``one_live_registration_per_member``; the seat count is kept by locking the session row;
* each reminder is sent once: ``TrainingSession.reminded_at`` and :class:`RenewalReminder` are
  claimed by a conditional write before the email goes out.
"""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class Trainer(models.Model):
    """A member a lab manager allowed to schedule and run the lab's training sessions."""

    lab = models.ForeignKey(
        "labs.Lab", on_delete=models.CASCADE, related_name="trainers", verbose_name=_("lab")
    )
    member = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="trainer_of",
        verbose_name=_("member"),
    )
    granted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    granted_at = models.DateTimeField(_("granted at"), default=timezone.now)

    class Meta:
        ordering = ["lab", "member__username"]
        verbose_name = _("trainer")
        verbose_name_plural = _("trainers")
        constraints = [models.UniqueConstraint(fields=["lab", "member"], name="one_trainer_role_per_lab")]

    def __str__(self) -> str:
        return f"{self.member} @ {self.lab}"


class Initiative(models.Model):
    """A programme's initiative ("Young makers", "Women in tech"): a tag on sessions, and opt-in for members."""

    programme = models.ForeignKey(
        "members.Programme", on_delete=models.CASCADE, related_name="initiatives", verbose_name=_("programme")
    )
    slug = models.SlugField(_("slug"), max_length=63, unique=True)
    name = models.CharField(_("name"), max_length=200)
    description = models.TextField(_("description"), blank=True)

    class Meta:
        ordering = ["name"]
        verbose_name = _("initiative")
        verbose_name_plural = _("initiatives")

    def __str__(self) -> str:
        return self.name


class InitiativeParticipation(models.Model):
    """A member's own, opt-in statement that they take part in an initiative; leaving deletes it."""

    member = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="initiatives",
        verbose_name=_("member"),
    )
    initiative = models.ForeignKey(
        Initiative, on_delete=models.CASCADE, related_name="participations", verbose_name=_("initiative")
    )
    joined_at = models.DateTimeField(_("joined at"), default=timezone.now)

    class Meta:
        verbose_name = _("initiative participation")
        verbose_name_plural = _("initiative participations")
        constraints = [
            models.UniqueConstraint(fields=["member", "initiative"], name="one_participation_per_initiative")
        ]

    def __str__(self) -> str:
        return f"{self.member} – {self.initiative}"


class TrainingSession(models.Model):
    """One scheduled session of a training, in one lab, holding its machines from ``start`` to ``end``."""

    class Language(models.TextChoices):
        NL = "nl", _("Dutch")
        FR = "fr", _("French")
        EN = "en", _("English")

    training = models.ForeignKey(
        "members.Training", on_delete=models.PROTECT, related_name="sessions", verbose_name=_("training")
    )
    lab = models.ForeignKey(
        "labs.Lab", on_delete=models.PROTECT, related_name="training_sessions", verbose_name=_("lab")
    )
    machines = models.ManyToManyField(
        "labs.Machine", blank=True, related_name="training_sessions", verbose_name=_("machines")
    )
    start = models.DateTimeField(_("start"))
    end = models.DateTimeField(_("end"))
    seats = models.PositiveSmallIntegerField(_("seats"), validators=[MinValueValidator(1)])
    language = models.CharField(_("language"), max_length=2, choices=Language.choices, default=Language.EN)
    initiative = models.ForeignKey(
        Initiative,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="sessions",
        verbose_name=_("initiative"),
    )
    prerequisites = models.ManyToManyField(
        "members.Training", blank=True, related_name="+", verbose_name=_("prerequisites")
    )
    #: Set by a lab manager only: the session may lie outside the lab's opening hours.
    outside_opening_hours = models.BooleanField(_("outside opening hours"), default=False)
    #: The bookings (kind ``training``) holding the machines; replaced when the session is edited.
    holds = models.ManyToManyField("booking.Booking", blank=True, related_name="+", editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    cancelled_at = models.DateTimeField(_("cancelled at"), null=True, blank=True)
    reminded_at = models.DateTimeField(_("reminded at"), null=True, blank=True)

    class Meta:
        ordering = ["start", "pk"]
        verbose_name = _("training session")
        verbose_name_plural = _("training sessions")
        indexes = [models.Index(fields=["lab", "start"]), models.Index(fields=["reminded_at", "start"])]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(end__gt=models.F("start")), name="training_session_order"
            ),
            models.CheckConstraint(condition=models.Q(seats__gte=1), name="training_session_seats"),
        ]

    def __str__(self) -> str:
        return f"{self.training} {self.start:%Y-%m-%d %H:%M}"

    @property
    def cancelled(self) -> bool:
        return self.cancelled_at is not None


class Registration(models.Model):
    """A member's place in a session: a seat (``registered``), a place in the queue, or cancelled."""

    class Status(models.TextChoices):
        REGISTERED = "registered", _("Registered")
        WAITLISTED = "waitlisted", _("On the waitlist")
        CANCELLED = "cancelled", _("Cancelled")

    session = models.ForeignKey(
        TrainingSession, on_delete=models.CASCADE, related_name="registrations", verbose_name=_("session")
    )
    member = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="training_registrations",
        verbose_name=_("member"),
    )
    status = models.CharField(_("status"), max_length=10, choices=Status.choices)
    created_at = models.DateTimeField(_("registered at"), default=timezone.now)
    cancelled_at = models.DateTimeField(_("cancelled at"), null=True, blank=True)
    #: Empty until the trainer marks it; True: present, False: absent.
    attended = models.BooleanField(_("attended"), null=True, blank=True)
    marked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    marked_at = models.DateTimeField(_("marked at"), null=True, blank=True)
    #: The certification this attendance granted (revoked if the trainer corrects it to absent).
    certification = models.ForeignKey(
        "members.Certification", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["created_at", "pk"]
        verbose_name = _("registration")
        verbose_name_plural = _("registrations")
        constraints = [
            models.UniqueConstraint(
                fields=["session", "member"],
                condition=~models.Q(status="cancelled"),
                name="one_live_registration_per_member",
            )
        ]

    def __str__(self) -> str:
        return f"{self.member} – {self.session} ({self.status})"


class RenewalReminder(models.Model):
    """Marks that a certification's renewal reminder went out (at most one per certification)."""

    certification = models.OneToOneField(
        "members.Certification", on_delete=models.CASCADE, related_name="renewal_reminder"
    )
    sent_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.certification_id} reminded {self.sent_at:%Y-%m-%d}"
