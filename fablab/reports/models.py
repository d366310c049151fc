"""What the programme reports read: daily rollups, the pseudonyms behind them, and the export log.

Reports never read bookings, sessions or telemetry at request time. The scheduler keeps two daily
rollups current (:mod:`fablab.reports.rollup`), and ``manage.py rebuild_report_rollups`` rebuilds them:

* :class:`MachineDay` — per machine and day (in the lab's time zone): the hours and counts every machine
  metric (M1–M12) adds up over a period;
* :class:`MemberDay` — per pseudonymous member, machine, day and kind of activity: what the people
  metrics (P1–P11) count distinct members on, with the member's self-declared categories *as they were
  on that day* (their age band at the time of the activity, not today's).

No rollup row names a person: :class:`Subject` is a random pseudonym. An erased member's account
becomes a tombstone that names nobody and keeps its pseudonym, so a rollup rebuilt after the erasure
counts the same people and the report totals stay as they were (:mod:`fablab.members.privacy`); a
booking pseudonymised after the retention age keeps the pseudonym alone (``Booking.subject``).
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class Subject(models.Model):
    """A member's pseudonym in the rollups; an erased member's tombstone account keeps it (see above)."""

    key = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    member = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="report_subject",
    )

    class Meta:
        verbose_name = _("report pseudonym")
        verbose_name_plural = _("report pseudonyms")

    def __str__(self) -> str:
        return str(self.key)


class MachineDay(models.Model):
    """One machine's day, in hours and counts (see ``docs/reports.md`` for each definition).

    Hours are clipped as the metric definitions say: booked, used and down time only inside the
    machine's net available hours, so that every ratio stays within 0–100 %.
    """

    machine = models.ForeignKey("labs.Machine", on_delete=models.PROTECT, related_name="+")
    day = models.DateField()
    #: The machine was bookable around the clock on that day (its open hours are the whole day).
    around_the_clock = models.BooleanField(default=False)
    open_h = models.FloatField(default=0)
    plan_down_h = models.FloatField(default=0)
    unpl_down_h = models.FloatField(default=0)
    booked_h = models.FloatField(default=0)
    #: Of booked_h: time no-shows and "I'm done" released (still booked for the metrics).
    released_h = models.FloatField(default=0)
    used_h = models.FloatField(default=0)
    busy_h = models.FloatField(default=0)
    #: Of used_h: inside the booking windows of member bookings (clock time), for M6.
    realised_h = models.FloatField(default=0)
    #: Of used_h: sessions attributed to no booking (M9).
    walk_in_h = models.FloatField(default=0)
    #: Minutes past a booking's end on the sessions attributed to it, in hours (M11).
    overrun_h = models.FloatField(default=0)
    #: Hours of training, workshop and maintenance bookings (reported apart from member bookings).
    training_h = models.FloatField(default=0)
    workshop_h = models.FloatField(default=0)
    maintenance_h = models.FloatField(default=0)
    energy_kwh = models.FloatField(default=0)
    #: Used hours of the sessions that had an energy reading (the denominator of kWh per used hour).
    energy_used_h = models.FloatField(default=0)
    #: Member bookings by start day: made (all), kept (not cancelled before start), no-shows, late cancels.
    bookings_made = models.PositiveIntegerField(default=0)
    bookings_kept = models.PositiveIntegerField(default=0)
    no_shows = models.PositiveIntegerField(default=0)
    late_cancels = models.PositiveIntegerField(default=0)
    #: Sessions ending that day with a job outcome, and those that ended finished (M10).
    jobs_with_outcome = models.PositiveIntegerField(default=0)
    jobs_finished = models.PositiveIntegerField(default=0)
    #: Used hours by local hour of the day (24 numbers), for the weekday × hour heatmap.
    used_by_hour = models.JSONField(default=list)
    computed_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("machine day")
        verbose_name_plural = _("machine days")
        constraints = [models.UniqueConstraint(fields=["machine", "day"], name="one_rollup_per_machine_day")]
        indexes = [models.Index(fields=["day", "machine"])]

    def __str__(self) -> str:
        return f"{self.machine_id} {self.day}"


class MemberDay(models.Model):
    """One pseudonymous member's activity on one machine (or at one lab) on one day.

    ``kind`` says what the activity was: a checked-in member booking or a session attributed to one
    (``use``: what makes an *active maker*, P1), attending a training session (``training``) or a
    workshop occurrence (``workshop``). ``machine`` is empty for a training or workshop attended without
    a machine. The categories are a snapshot of the member's self-declared answers on that day, empty
    when not declared or without statistics consent.
    """

    class Kind(models.TextChoices):
        USE = "use", _("Machine use")
        TRAINING = "training", _("Training")
        WORKSHOP = "workshop", _("Workshop")

    subject = models.ForeignKey(Subject, on_delete=models.PROTECT, related_name="+")
    lab = models.ForeignKey("labs.Lab", on_delete=models.PROTECT, related_name="+")
    machine = models.ForeignKey(
        "labs.Machine", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    day = models.DateField()
    kind = models.CharField(max_length=10, choices=Kind.choices)
    #: The initiative the activity belonged to (its workshop, training session or series), if any.
    initiative = models.ForeignKey(
        "trainings.Initiative", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    #: For a training attended: which training, and whether attending it granted the certification (P6, P7).
    training = models.ForeignKey(
        "members.Training", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    certified = models.BooleanField(default=False)
    used_h = models.FloatField(default=0)
    gender = models.CharField(max_length=12, blank=True)
    age_band = models.CharField(max_length=8, blank=True)
    user_category = models.CharField(max_length=16, blank=True)
    #: Ids of the initiatives the member declared taking part in, on that day.
    declared_initiatives = models.JSONField(default=list, blank=True)

    # The rollup replaces a day's rows as a whole (rollup.rebuild_day), so rows with an empty machine or
    # initiative, which the unique constraint lets through, are never duplicated.
    class Meta:
        verbose_name = _("member day")
        verbose_name_plural = _("member days")
        constraints = [
            models.UniqueConstraint(
                fields=["subject", "lab", "machine", "day", "kind", "initiative", "training"],
                name="one_rollup_per_member_day",
            )
        ]
        indexes = [models.Index(fields=["day", "lab"]), models.Index(fields=["subject", "day"])]

    def __str__(self) -> str:
        return f"{self.subject_id} {self.kind} {self.day}"


class ExportLog(models.Model):
    """Who downloaded or opened which report, when, in which format (disclosure rule 10)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    at = models.DateTimeField(auto_now_add=True)
    fmt = models.CharField(max_length=8)
    period = models.CharField(max_length=10)
    level = models.CharField(max_length=16)
    lab = models.CharField(max_length=63, blank=True)
    via = models.CharField(max_length=8, default="web")
    rows = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-at"]
        verbose_name = _("report export")
        verbose_name_plural = _("report exports")

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.fmt} {self.period} {self.level} {self.lab}"
