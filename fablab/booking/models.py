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
    """A hold on a machine: a member's booking, or one of a training, a workshop or a maintenance block.

    Lifecycle of a member booking: ``pending → confirmed → checked_in → completed`` or
    ``confirmed → no_show``; ``cancelled`` from pending or confirmed. Every time-based
    transition is a conditional UPDATE in :mod:`fablab.booking.lifecycle`, so it happens once
    whatever the number of schedulers. A no-show keeps its original times (reports need them)
    and stops holding the machine from ``released_at``: it leaves :attr:`ACTIVE`.
    The other kinds hold the machine with the same no-overlap guarantee but have no check-in,
    no no-show, no quota: they go ``confirmed → completed``.
    """

    class Kind(models.TextChoices):
        MEMBER = "member", _("Member booking")
        TRAINING = "training", _("Training session")
        WORKSHOP = "workshop", _("Workshop")
        MAINTENANCE = "maintenance", _("Maintenance")

    class CheckInVia(models.TextChoices):
        PAGE = "page", _("Booking page")
        KIOSK = "kiosk", _("Lab kiosk")
        API = "api", _("API")
        MANAGER = "manager", _("Lab manager")
        MACHINE = "machine", _("Job started on the machine")

    class Unavailable(models.TextChoices):
        OFFLINE = "offline", _("Machine offline at the start")
        ERROR = "error", _("Machine in error at the start")
        OUT_OF_SERVICE = "out_of_service", _("Machine out of service at the start")

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
        OUT_OF_SERVICE = "out_of_service", _("Machine out of service")

    #: States that hold the machine: they take part in the no-overlap rule.
    ACTIVE = (Status.PENDING, Status.CONFIRMED, Status.CHECKED_IN, Status.COMPLETED)
    #: States in which a booking holds its machine now or later (a no-show, completed or cancelled one does not).
    HOLDING = (Status.PENDING, Status.CONFIRMED, Status.CHECKED_IN)
    #: States a member or manager may still cancel.
    CANCELLABLE = (Status.PENDING, Status.CONFIRMED)

    #: Kinds that keep the machine unlocked for their whole time, without a check-in.
    UNLOCKING_KINDS = (Kind.TRAINING, Kind.WORKSHOP)

    kind = models.CharField(_("kind"), max_length=12, choices=Kind.choices, default=Kind.MEMBER)
    machine = models.ForeignKey(
        Machine, on_delete=models.PROTECT, related_name="bookings", verbose_name=_("machine")
    )
    #: Empty only for the kinds that are not a member's (a training, a workshop, maintenance).
    member = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="bookings",
        verbose_name=_("member"),
    )
    #: Set, and ``member`` emptied, when an old member booking is pseudonymised
    #: (:mod:`fablab.reports.retention`): the reports still count the same person, nobody can tell who.
    subject = models.ForeignKey(
        "reports.Subject",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        editable=False,
        related_name="+",
        verbose_name=_("pseudonym"),
    )
    title = models.CharField(_("title"), max_length=200, blank=True)
    start = models.DateTimeField(_("start"))
    end = models.DateTimeField(_("end"))
    blocked_until = models.DateTimeField(
        _("machine blocked until"),
        help_text=_("End plus the machine's buffer; where the time was released, if it was released early."),
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
        _("cancel reason"), max_length=14, choices=CancelReason.choices, blank=True
    )
    # Check-in and the end of the booking.
    checked_in_at = models.DateTimeField(_("checked in at"), null=True, blank=True)
    checked_in_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("checked in by"),
    )
    check_in_via = models.CharField(
        _("checked in through"), max_length=8, choices=CheckInVia.choices, blank=True
    )
    completed_at = models.DateTimeField(_("completed at"), null=True, blank=True)
    #: A no-show's time, or the rest of a booking finished early, stopped holding the machine from
    #: here; start and end stay as booked (a finished booking's ``blocked_until`` moves here).
    released_at = models.DateTimeField(_("released at"), null=True, blank=True)
    #: The one line a member may leave when finishing ("the nozzle is clogged"): raises an alert.
    fault_report = models.CharField(_("fault reported"), max_length=300, blank=True)
    #: Set instead of ``no_show`` when the machine could not be used at the start.
    unavailable = models.CharField(
        _("machine unavailable"), max_length=16, choices=Unavailable.choices, blank=True
    )
    # Usage attributed from the machine's sessions (devices.attribution recomputes them).
    used_minutes = models.FloatField(_("minutes used"), default=0)
    overrun_minutes = models.FloatField(_("minutes past the end"), default=0)
    energy_wh = models.FloatField(_("energy (Wh)"), null=True, blank=True)
    job_outcome = models.CharField(_("job outcome"), max_length=12, blank=True)
    #: The workshop or member series this booking is an occurrence of (:mod:`fablab.booking.series`).
    series = models.ForeignKey(
        "Series",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="bookings",
        verbose_name=_("series"),
    )

    class Meta:
        ordering = ["start"]
        verbose_name = _("booking")
        verbose_name_plural = _("bookings")
        indexes = [
            models.Index(fields=["machine", "start"]),
            models.Index(fields=["member", "start"]),
            models.Index(fields=["status", "start"]),
            models.Index(fields=["status", "end"]),
        ]
        constraints = [
            models.CheckConstraint(condition=models.Q(end__gt=models.F("start")), name="booking_order"),
            models.CheckConstraint(
                condition=models.Q(blocked_until__gte=models.F("end")) | models.Q(released_at__isnull=False),
                name="booking_buffer",
            ),
            models.CheckConstraint(
                # A pseudonymised member booking has its subject instead of its member.
                condition=~models.Q(kind="member")
                | models.Q(member__isnull=False)
                | models.Q(subject__isnull=False),
                name="member_booking_has_member",
            ),
            # One booking per occurrence and machine, whatever its status: a series never books an
            # occurrence twice, nor again after it was cancelled (series.extend_member_series).
            models.UniqueConstraint(
                fields=["series", "machine", "start"],
                condition=models.Q(series__isnull=False),
                name="one_booking_per_series_occurrence",
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

    @property
    def is_member_booking(self) -> bool:
        return self.kind == self.Kind.MEMBER


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


class Kiosk(models.Model):
    """A screen in a lab, enrolled once by a manager, where makers check in with their number and PIN.

    The screen holds a signed token naming this row and a secret whose hash is kept here: revoking the
    row (or enrolling anew) makes the token worthless. It is no one's session: the kiosk can do one thing,
    check in a member who proves themselves with their PIN.
    """

    lab = models.ForeignKey(Lab, on_delete=models.CASCADE, related_name="kiosks", verbose_name=_("lab"))
    name = models.CharField(_("name"), max_length=100)
    secret_hash = models.CharField(max_length=64, editable=False)
    enrolled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    enrolled_at = models.DateTimeField(_("enrolled at"))
    revoked_at = models.DateTimeField(_("revoked at"), null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    last_seen_at = models.DateTimeField(_("last seen"), null=True, blank=True)

    class Meta:
        ordering = ["lab", "name"]
        verbose_name = _("kiosk")
        verbose_name_plural = _("kiosks")

    def __str__(self) -> str:
        return f"{self.name} ({self.lab})"


class KioskPinFailure(models.Model):
    """A wrong member number or PIN typed at a kiosk; recent ones throttle further tries."""

    kiosk = models.ForeignKey(Kiosk, on_delete=models.CASCADE, related_name="+")
    #: Empty when the number matched no member.
    member = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    at = models.DateTimeField(db_index=True)

    class Meta:
        indexes = [models.Index(fields=["member", "at"]), models.Index(fields=["kiosk", "at"])]

    def __str__(self) -> str:
        return f"{self.kiosk_id}:{self.member_id}@{self.at:%Y-%m-%d %H:%M}"


class FreedTime(models.Model):
    """Time on a machine that stopped being held (a cancellation, a no-show, a booking finished early,
    maintenance ended or shortened), to be offered to the waitlist.

    Written in the same transaction as the change that freed it, so no freed time is lost; the
    waitlist (:mod:`fablab.booking.waitlist`) offers it and closes it. ``start`` is on a slot boundary.
    """

    class Reason(models.TextChoices):
        CANCELLED = "cancelled", _("Cancelled")
        NO_SHOW = "no_show", _("No-show")
        FINISHED_EARLY = "finished", _("Finished early")
        MAINTENANCE = "maintenance", _("Maintenance ended early")

    machine = models.ForeignKey(
        Machine, on_delete=models.CASCADE, related_name="+", verbose_name=_("machine")
    )
    start = models.DateTimeField(_("start"))
    end = models.DateTimeField(_("end"))
    reason = models.CharField(_("reason"), max_length=12, choices=Reason.choices)
    booking = models.ForeignKey(Booking, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(_("freed at"))
    #: Set once no more offers will be made for it (taken, nobody eligible, or its time passed).
    closed_at = models.DateTimeField(_("closed at"), null=True, blank=True)

    class Meta:
        ordering = ["created_at"]
        verbose_name = _("freed time")
        verbose_name_plural = _("freed time")
        indexes = [models.Index(fields=["closed_at", "created_at"])]
        constraints = [
            models.CheckConstraint(condition=models.Q(end__gt=models.F("start")), name="freed_time_order"),
        ]

    def __str__(self) -> str:
        return f"{self.machine_id} {self.start:%Y-%m-%d %H:%M}–{self.end:%H:%M}"


class WaitlistEntry(models.Model):
    """A member waiting for time on one machine, or on any machine of a type in a lab, within a window."""

    class Status(models.TextChoices):
        WAITING = "waiting", _("Waiting")
        BOOKED = "booked", _("Booked from an offer")
        LEFT = "left", _("Left the waitlist")
        EXPIRED = "expired", _("Window passed")

    member = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="waitlist", verbose_name=_("member")
    )
    lab = models.ForeignKey(Lab, on_delete=models.CASCADE, related_name="+", verbose_name=_("lab"))
    #: Either one machine, or (machine empty) any machine of ``machine_type`` in ``lab``.
    machine = models.ForeignKey(
        Machine, on_delete=models.CASCADE, null=True, blank=True, related_name="+", verbose_name=_("machine")
    )
    machine_type = models.ForeignKey(
        MachineType,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("machine type"),
    )
    start = models.DateTimeField(_("from"))
    end = models.DateTimeField(_("until"))
    status = models.CharField(_("status"), max_length=8, choices=Status.choices, default=Status.WAITING)
    created_at = models.DateTimeField(_("joined at"))

    class Meta:
        ordering = ["created_at", "pk"]
        verbose_name = _("waitlist entry")
        verbose_name_plural = _("waitlist entries")
        indexes = [models.Index(fields=["status", "lab", "end"])]
        constraints = [
            models.CheckConstraint(condition=models.Q(end__gt=models.F("start")), name="waitlist_order"),
            models.CheckConstraint(
                condition=models.Q(machine__isnull=False) | models.Q(machine_type__isnull=False),
                name="waitlist_machine_or_type",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.member_id} {self.machine or self.machine_type} {self.start:%Y-%m-%d %H:%M}"


class WaitlistOffer(models.Model):
    """Freed time offered to one waiting member, held for them until ``expires_at``.

    At most one open offer per piece of freed time and per entry (unique constraints), so two
    schedulers racing to offer the same time make one offer between them.
    """

    class Status(models.TextChoices):
        OPEN = "open", _("Open")
        ACCEPTED = "accepted", _("Accepted")
        DECLINED = "declined", _("Declined")
        EXPIRED = "expired", _("Expired")
        VOID = "void", _("No longer available")

    entry = models.ForeignKey(WaitlistEntry, on_delete=models.CASCADE, related_name="offers")
    freed = models.ForeignKey(FreedTime, on_delete=models.CASCADE, related_name="offers")
    machine = models.ForeignKey(
        Machine, on_delete=models.CASCADE, related_name="+", verbose_name=_("machine")
    )
    start = models.DateTimeField(_("start"))
    end = models.DateTimeField(_("end"))
    offered_at = models.DateTimeField(_("offered at"))
    expires_at = models.DateTimeField(_("held until"))
    status = models.CharField(_("status"), max_length=8, choices=Status.choices, default=Status.OPEN)
    decided_at = models.DateTimeField(_("decided at"), null=True, blank=True)
    booking = models.ForeignKey(Booking, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")

    class Meta:
        ordering = ["-offered_at"]
        verbose_name = _("waitlist offer")
        verbose_name_plural = _("waitlist offers")
        indexes = [models.Index(fields=["status", "expires_at"])]
        constraints = [
            models.UniqueConstraint(
                fields=["freed"], condition=models.Q(status="open"), name="one_open_offer_per_freed_time"
            ),
            models.UniqueConstraint(
                fields=["entry"], condition=models.Q(status="open"), name="one_open_offer_per_entry"
            ),
            models.UniqueConstraint(fields=["entry", "freed"], name="one_offer_per_entry_and_freed_time"),
        ]

    def __str__(self) -> str:
        return f"{self.entry_id} {self.machine_id} {self.start:%Y-%m-%d %H:%M} ({self.status})"


class StrikeWaiver(models.Model):
    """A manager waived the strike a booking (a no-show or a late cancellation) counted as. Never edited."""

    booking = models.OneToOneField(Booking, on_delete=models.CASCADE, related_name="strike_waiver")
    by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+", verbose_name=_("by")
    )
    reason = models.CharField(_("reason"), max_length=300)
    at = models.DateTimeField(_("waived at"))

    class Meta:
        ordering = ["-at"]
        verbose_name = _("strike waiver")
        verbose_name_plural = _("strike waivers")

    def __str__(self) -> str:
        return f"{self.booking_id} waived"


class Series(models.Model):
    """A recurrence of bookings: a workshop or course (``workshop``), or a maker's weekly slot (``member``).

    The recurrence is an RFC 5545 RRULE (``rrule``, without DTSTART) expanded from ``first_day`` at
    ``start_time``, both lab-local wall-clock: every occurrence starts at ``start_time`` in the lab's
    zone, whatever the daylight-saving offset that day (:func:`fablab.booking.series.occurrences`).
    ``until`` is the last day (lab-local, inclusive) an occurrence may fall on; a COUNT in the rule may
    end it earlier. A workshop books all of ``machines`` at each occurrence; a member series books its
    one machine for ``member``.

    A workshop may belong to an initiative of a programme (``initiative``) and name its target group.
    """

    class Kind(models.TextChoices):
        WORKSHOP = "workshop", _("Workshop or course")
        MEMBER = "member", _("Member's recurring booking")

    kind = models.CharField(_("kind"), max_length=8, choices=Kind.choices)
    title = models.CharField(_("title"), max_length=200, blank=True)
    lab = models.ForeignKey(Lab, on_delete=models.PROTECT, related_name="series", verbose_name=_("lab"))
    machines = models.ManyToManyField(Machine, related_name="series", verbose_name=_("machines"))
    rrule = models.CharField(_("recurrence rule"), max_length=500, help_text=_("RFC 5545 RRULE."))
    first_day = models.DateField(_("first day"))
    start_time = models.TimeField(_("start time"))
    duration = models.DurationField(_("duration"))
    until = models.DateField(_("last day"), null=True, blank=True)
    #: Set for a member series only.
    member = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="booking_series",
        verbose_name=_("member"),
    )
    purpose = models.CharField(_("purpose"), max_length=300, blank=True)
    #: Places per occurrence of a workshop; empty: no limit.
    seats = models.PositiveSmallIntegerField(_("seats"), null=True, blank=True)
    initiative = models.ForeignKey(
        "trainings.Initiative",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="series",
        verbose_name=_("initiative"),
    )
    target_group = models.CharField(_("target group"), max_length=200, blank=True)
    #: A member series: the occurrences starting up to here have been tried (created or refused).
    extended_to = models.DateTimeField(_("occurrences tried up to"), null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("created by"),
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    cancelled_at = models.DateTimeField(_("cancelled at"), null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("series")
        verbose_name_plural = _("series")
        constraints = [
            models.CheckConstraint(
                condition=~models.Q(kind="member") | models.Q(member__isnull=False, until__isnull=False),
                name="member_series_has_member_and_end",
            ),
        ]

    def __str__(self) -> str:
        return self.title or f"{self.get_kind_display()} {self.pk}"


class WorkshopRegistration(models.Model):
    """A participant registered for one occurrence of a workshop (its start), and whether they came.

    One row per (series, occurrence, member); cancelling flips ``status`` so the seat is freed and the
    row stays for the record. Seats are counted under a lock of the series row
    (:func:`fablab.booking.series.register`).
    """

    class Status(models.TextChoices):
        REGISTERED = "registered", _("Registered")
        CANCELLED = "cancelled", _("Cancelled")

    series = models.ForeignKey(
        Series, on_delete=models.CASCADE, related_name="registrations", verbose_name=_("workshop")
    )
    occurrence_start = models.DateTimeField(_("occurrence"))
    member = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="workshop_registrations",
        verbose_name=_("participant"),
    )
    status = models.CharField(_("status"), max_length=10, choices=Status.choices, default=Status.REGISTERED)
    attended = models.BooleanField(_("attended"), null=True, blank=True)
    registered_at = models.DateTimeField(_("registered at"))
    #: One more each time the member leaves the session or registers again: the SEQUENCE of the
    #: session's event in their calendar feed, which RFC 5545 wants to grow with every change of STATUS.
    sequence = models.PositiveIntegerField(_("calendar revision"), default=0, editable=False)

    class Meta:
        ordering = ["occurrence_start", "registered_at"]
        verbose_name = _("workshop registration")
        verbose_name_plural = _("workshop registrations")
        constraints = [
            models.UniqueConstraint(
                fields=["series", "occurrence_start", "member"], name="one_registration_per_occurrence"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.series_id} {self.occurrence_start:%Y-%m-%d %H:%M} {self.member_id}"
