"""Bookings and the quota policies that bound them.

Integrity: an active booking occupies ``[start, blocked_until)`` on its
machine, where ``blocked_until`` is its end plus the machine's buffer at the
time of booking. No two active bookings of one machine may overlap there. On
PostgreSQL an exclusion constraint (migration 0002) guarantees it; on SQLite
the check and the insert run in one IMMEDIATE (write-locked) transaction. See
``fablab.booking.services``.
"""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

from fablab.labs.models import Lab, Machine, MachineType

#: Name of the PostgreSQL exclusion constraint; services map its violation to ``slot_taken``.
NO_OVERLAP_CONSTRAINT = "booking_no_overlap"


class Booking(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", _("Pending approval")
        CONFIRMED = "confirmed", _("Confirmed")
        CANCELLED = "cancelled", _("Cancelled")
        CHECKED_IN = "checked_in", _("Checked in")
        COMPLETED = "completed", _("Completed")
        NO_SHOW = "no_show", _("No-show")

    class CancelReason(models.TextChoices):
        MEMBER = "member", _("Cancelled by the member")
        MANAGER = "manager", _("Cancelled by a lab manager")
        DECLINED = "declined", _("Declined by a lab manager")

    #: States that hold the machine: they take part in the no-overlap rule.
    ACTIVE = (Status.PENDING, Status.CONFIRMED, Status.CHECKED_IN, Status.COMPLETED)
    #: States a member or manager may still cancel.
    CANCELLABLE = (Status.PENDING, Status.CONFIRMED)

    machine = models.ForeignKey(
        Machine, on_delete=models.PROTECT, related_name="bookings", verbose_name=_("machine")
    )
    member = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="bookings", verbose_name=_("member")
    )
    start = models.DateTimeField(_("start"))
    end = models.DateTimeField(_("end"))
    blocked_until = models.DateTimeField(
        _("machine blocked until"), help_text=_("End plus the machine's buffer.")
    )
    status = models.CharField(_("status"), max_length=12, choices=Status.choices, default=Status.CONFIRMED)
    purpose = models.CharField(_("purpose"), max_length=300, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("approved or declined by"),
    )
    decided_at = models.DateTimeField(_("approved or declined at"), null=True, blank=True)
    cancelled_at = models.DateTimeField(_("cancelled at"), null=True, blank=True)
    cancelled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("cancelled by"),
    )
    cancel_reason = models.CharField(
        _("cancel reason"), max_length=10, choices=CancelReason.choices, blank=True
    )

    class Meta:
        ordering = ["start"]
        verbose_name = _("booking")
        verbose_name_plural = _("bookings")
        indexes = [
            models.Index(fields=["machine", "start"]),
            models.Index(fields=["member", "start"]),
        ]
        constraints = [
            models.CheckConstraint(condition=models.Q(end__gt=models.F("start")), name="booking_order"),
            models.CheckConstraint(
                condition=models.Q(blocked_until__gte=models.F("end")), name="booking_buffer"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.machine} {self.start:%Y-%m-%d %H:%M}"

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE

    @property
    def is_cancellable(self) -> bool:
        return self.status in self.CANCELLABLE


class QuotaPolicy(models.Model):
    """Limits per member for one machine type, in one lab or (lab empty) everywhere.

    A lab-specific policy replaces the general one for that lab's machines.
    """

    machine_type = models.ForeignKey(
        MachineType, on_delete=models.CASCADE, related_name="quota_policies", verbose_name=_("machine type")
    )
    lab = models.ForeignKey(
        Lab,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="quota_policies",
        verbose_name=_("lab"),
    )
    max_hours_per_week = models.DecimalField(
        _("booked hours per member per week"),
        max_digits=5,
        decimal_places=1,
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
        help_text=_("Counted per calendar week (Monday to Sunday, lab time). Empty: no limit."),
    )
    max_future_bookings = models.PositiveSmallIntegerField(
        _("upcoming bookings per member"), null=True, blank=True, help_text=_("Empty: no limit.")
    )

    class Meta:
        verbose_name = _("quota policy")
        verbose_name_plural = _("quota policies")
        constraints = [
            models.UniqueConstraint(fields=["machine_type", "lab"], name="quota_per_type_and_lab"),
            models.UniqueConstraint(
                fields=["machine_type"], condition=models.Q(lab__isnull=True), name="quota_general_per_type"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.machine_type} – {self.lab or _('all labs')}"


class IdempotencyKey(models.Model):
    """An ``Idempotency-Key`` a member sent with ``POST /api/v1/bookings/``, shared by every server process.

    The unique (member, key) pair decides between concurrent requests with one key: the request whose
    insert succeeds makes the booking; the others replay it or, while it is still being made, get 409.
    Only hashes are kept: the key and the body are the client's and may be anything.
    """

    member = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key_hash = models.CharField(max_length=64)
    #: SHA-256 of the request body that first used the key (machine, times, purpose).
    fingerprint = models.CharField(max_length=64)
    #: Empty while the first request is in flight.
    booking = models.ForeignKey(Booking, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    claimed_at = models.DateTimeField()
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["member", "key_hash"], name="idempotency_key_per_member"),
        ]

    def __str__(self) -> str:
        return f"{self.member_id}:{self.key_hash[:12]}"
