"""Labs, their machines, opening hours, closures and maintenance windows."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from functools import cached_property

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

# Slugs are shared with the MQTT contract (firmware_bridge.protocol), hence its pattern.
# "\Z", not "$": "$" also matches before a trailing newline, and a slug ends up on a line
# of Mosquitto's ACL file (devices/mqtt_names.py).
slug_validator = RegexValidator(
    r"\A[a-z0-9][a-z0-9-]{0,62}\Z",
    _("Use 1 to 63 lowercase letters, digits or hyphens, starting with a letter or digit."),
)


def validate_time_zone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(_("%(value)s is not a known time zone."), params={"value": value})


class Lab(models.Model):
    slug = models.CharField(_("slug"), max_length=63, unique=True, validators=[slug_validator])
    name = models.CharField(_("name"), max_length=200)
    address = models.TextField(_("address"), blank=True)
    time_zone = models.CharField(
        _("time zone"), max_length=64, default="Europe/Brussels", validators=[validate_time_zone]
    )
    managers = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="managed_labs", verbose_name=_("lab managers")
    )
    # The waitlist and the no-show policy (fablab.booking.waitlist, fablab.booking.strikes).
    waitlist_hold_minutes = models.PositiveSmallIntegerField(
        _("waitlist offer held for (minutes)"),
        default=15,
        validators=[MinValueValidator(1), MaxValueValidator(24 * 60)],
        help_text=_("How long a member offered freed time has to accept it before it goes to the next."),
    )
    strike_limit = models.PositiveSmallIntegerField(
        _("strikes before a block"),
        default=3,
        validators=[MaxValueValidator(100)],
        help_text=_("No-shows (and late cancellations, if counted) within the period below. 0: no blocks."),
    )
    strike_window_days = models.PositiveSmallIntegerField(
        _("strikes counted over (days)"),
        default=30,
        validators=[MinValueValidator(1), MaxValueValidator(366)],
    )
    strike_block_days = models.PositiveSmallIntegerField(
        _("block lasts (days)"), default=14, validators=[MinValueValidator(1), MaxValueValidator(366)]
    )
    new_members_need_approval = models.BooleanField(
        _("new members need a manager's approval"),
        default=False,
        help_text=_("A member asks to join and a manager approves them before their first booking here."),
    )
    late_cancel_hours = models.PositiveSmallIntegerField(
        _("a cancellation is late within (hours of the start)"),
        default=0,
        validators=[MaxValueValidator(168)],
        help_text=_("A member's cancellation this close to the start counts as a strike. 0: never."),
    )

    class Meta:
        ordering = ["name"]
        verbose_name = _("lab")
        verbose_name_plural = _("labs")

    def __str__(self) -> str:
        return self.name

    @cached_property
    def tz(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.time_zone)

    def opening_intervals(self, day: dt.date) -> list[tuple[dt.datetime, dt.datetime]]:
        """Opening intervals of one lab-local day as aware UTC datetimes, empty on a closure.

        Built from wall-clock times in the lab's zone, so a 09:00-17:00 day stays
        09:00-17:00 across a daylight-saving change (and lasts 8 hours of real time).
        """
        if any(c.starts_on <= day <= c.ends_on for c in self._closures()):
            return []
        result = []
        for hours in self._hours():
            if hours.weekday == day.weekday():
                start = dt.datetime.combine(day, hours.opens, tzinfo=self.tz)
                end = dt.datetime.combine(day, hours.closes, tzinfo=self.tz)
                # In UTC: Python subtracts and compares datetimes that share a
                # tzinfo on the wall clock, which is wrong across a DST change.
                result.append((start.astimezone(dt.UTC), end.astimezone(dt.UTC)))
        return sorted(result)

    def _hours(self) -> list[OpeningHours]:
        if not hasattr(self, "_hours_cache"):
            self._hours_cache = list(self.opening_hours.all())
        return self._hours_cache

    def _closures(self) -> list[Closure]:
        if not hasattr(self, "_closures_cache"):
            self._closures_cache = list(self.closures.all())
        return self._closures_cache


class OpeningHours(models.Model):
    class Weekday(models.IntegerChoices):
        MONDAY = 0, _("Monday")
        TUESDAY = 1, _("Tuesday")
        WEDNESDAY = 2, _("Wednesday")
        THURSDAY = 3, _("Thursday")
        FRIDAY = 4, _("Friday")
        SATURDAY = 5, _("Saturday")
        SUNDAY = 6, _("Sunday")

    lab = models.ForeignKey(
        Lab, on_delete=models.CASCADE, related_name="opening_hours", verbose_name=_("lab")
    )
    weekday = models.PositiveSmallIntegerField(_("weekday"), choices=Weekday.choices)
    opens = models.TimeField(_("opens"))
    closes = models.TimeField(_("closes"))

    class Meta:
        ordering = ["lab", "weekday", "opens"]
        verbose_name = _("opening hours")
        verbose_name_plural = _("opening hours")
        constraints = [
            models.CheckConstraint(
                condition=models.Q(closes__gt=models.F("opens")), name="opening_hours_order"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_weekday_display()} {self.opens:%H:%M}–{self.closes:%H:%M}"

    def clean(self) -> None:
        if self.opens and self.closes and self.closes <= self.opens:
            raise ValidationError(_("Closing time must be after opening time."))


class Closure(models.Model):
    """Days the whole lab is closed (holidays), inclusive."""

    lab = models.ForeignKey(Lab, on_delete=models.CASCADE, related_name="closures", verbose_name=_("lab"))
    starts_on = models.DateField(_("first day"))
    ends_on = models.DateField(_("last day"))
    reason = models.CharField(_("reason"), max_length=200, blank=True)

    class Meta:
        ordering = ["lab", "starts_on"]
        verbose_name = _("closure")
        verbose_name_plural = _("closures")
        constraints = [
            models.CheckConstraint(
                condition=models.Q(ends_on__gte=models.F("starts_on")), name="closure_order"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.lab}: {self.starts_on}–{self.ends_on}"


class EndAction(models.TextChoices):
    """What the end of a booking does to a job still running on an interlocked machine."""

    FINISH = "finish", _("Let the job finish, then lock")
    STOP = "stop", _("Lock at the end, stopping the job")


class MachineType(models.Model):
    slug = models.CharField(_("slug"), max_length=63, unique=True, validators=[slug_validator])
    name = models.CharField(_("name"), max_length=100)
    default_end_action = models.CharField(
        _("at the end of a booking, by default"),
        max_length=6,
        choices=EndAction.choices,
        default=EndAction.STOP,
        help_text=_("Printers usually let the job finish; lasers and CNC machines usually stop."),
    )

    class Meta:
        ordering = ["name"]
        verbose_name = _("machine type")
        verbose_name_plural = _("machine types")

    def __str__(self) -> str:
        return self.name


class Machine(models.Model):
    lab = models.ForeignKey(Lab, on_delete=models.PROTECT, related_name="machines", verbose_name=_("lab"))
    slug = models.CharField(_("slug"), max_length=63, validators=[slug_validator])
    name = models.CharField(_("name"), max_length=200)
    machine_type = models.ForeignKey(
        MachineType, on_delete=models.PROTECT, related_name="machines", verbose_name=_("type")
    )
    model = models.CharField(_("model"), max_length=200, blank=True)
    bookable = models.BooleanField(_("bookable"), default=True)
    required_training = models.ForeignKey(
        "members.Training",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="machines",
        verbose_name=_("required training"),
    )
    # Booking policy.
    slot_minutes = models.PositiveSmallIntegerField(
        _("slot granularity (minutes)"), default=30, validators=[MinValueValidator(5), MaxValueValidator(240)]
    )
    min_duration_minutes = models.PositiveIntegerField(_("minimum duration (minutes)"), default=30)
    max_duration_minutes = models.PositiveIntegerField(_("maximum duration (minutes)"), default=240)
    min_notice_minutes = models.PositiveIntegerField(_("minimum notice (minutes)"), default=0)
    max_days_ahead = models.PositiveSmallIntegerField(_("bookable days ahead"), default=28)
    buffer_minutes = models.PositiveSmallIntegerField(_("buffer between bookings (minutes)"), default=0)
    approval_required = models.BooleanField(_("approval required"), default=False)
    # Check-in, no-shows and the end of a booking (the interlock itself is a setting of the machine's link).
    check_in_window_minutes = models.PositiveSmallIntegerField(
        _("check-in opens (minutes before the start)"),
        default=15,
        validators=[MaxValueValidator(240)],
    )
    no_show_grace_minutes = models.PositiveSmallIntegerField(
        _("no-show after (minutes past the start)"),
        default=15,
        validators=[MinValueValidator(1), MaxValueValidator(240)],
        help_text=_(
            "Without a check-in or a job by then, the booking is a no-show and the rest of its time is freed."
        ),
    )
    end_grace_minutes = models.PositiveSmallIntegerField(
        _("stays unlocked after the end (minutes)"),
        default=5,
        validators=[MaxValueValidator(120)],
    )
    end_action = models.CharField(
        _("at the end of a booking"),
        max_length=6,
        choices=EndAction.choices,
        blank=True,
        help_text=_("Empty: the machine type's default."),
    )
    walk_ins_allowed = models.BooleanField(
        _("walk-ins allowed"),
        default=False,
        help_text=_(
            "Use without a checked-in booking is counted as walk-in; when not allowed it raises an alert."
        ),
    )
    #: Printers running overnight: bookings skip the opening hours (closures still apply), and the
    #: reports count the whole day as the machine's open hours.
    bookable_around_the_clock = models.BooleanField(
        _("bookable around the clock"),
        default=False,
        help_text=_(
            "Bookable at any hour, also outside the lab's opening hours (e.g. 3D printers running "
            "overnight); its open hours in the reports are the whole day."
        ),
    )

    class Meta:
        ordering = ["lab", "name"]
        verbose_name = _("machine")
        verbose_name_plural = _("machines")
        constraints = [
            models.UniqueConstraint(fields=["lab", "slug"], name="machine_slug_per_lab"),
            models.CheckConstraint(
                condition=models.Q(max_duration_minutes__gte=models.F("min_duration_minutes")),
                name="machine_duration_order",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.lab})"

    def clean(self) -> None:
        if self.max_duration_minutes < self.min_duration_minutes:
            raise ValidationError(_("The maximum duration must not be shorter than the minimum."))

    def bookable_intervals(self, day: dt.date) -> list[tuple[dt.datetime, dt.datetime]]:
        """The intervals of one lab-local day a booking of this machine may lie in, as aware UTC datetimes.

        The lab's opening intervals, or the whole local day (23 or 25 hours on a daylight-saving
        change) for a machine bookable around the clock; empty on a closure either way.
        """
        if not self.bookable_around_the_clock:
            return self.lab.opening_intervals(day)
        lab = self.lab
        if any(c.starts_on <= day <= c.ends_on for c in lab._closures()):
            return []
        start = dt.datetime.combine(day, dt.time(0), tzinfo=lab.tz)
        end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tzinfo=lab.tz)
        return [(start.astimezone(dt.UTC), end.astimezone(dt.UTC))]

    @property
    def buffer(self) -> dt.timedelta:
        return dt.timedelta(minutes=self.buffer_minutes)

    @property
    def effective_end_action(self) -> str:
        """``finish`` or ``stop``: the machine's own setting, else its type's default."""
        return self.end_action or self.machine_type.default_end_action


class MaintenanceWindow(models.Model):
    """A time a machine cannot be booked: planned maintenance, or out of service after a breakdown.

    A manager putting a machine out of service makes a window from now until a date
    (:mod:`fablab.booking.out_of_service`); the reports count ``planned`` windows as planned
    downtime and ``breakdown`` ones as unplanned.
    """

    class Kind(models.TextChoices):
        PLANNED = "planned", _("Planned maintenance")
        BREAKDOWN = "breakdown", _("Breakdown")

    machine = models.ForeignKey(
        Machine, on_delete=models.CASCADE, related_name="maintenance_windows", verbose_name=_("machine")
    )
    start = models.DateTimeField(_("start"))
    end = models.DateTimeField(_("end"))
    reason = models.CharField(_("reason"), max_length=200, blank=True)
    kind = models.CharField(_("kind"), max_length=10, choices=Kind.choices, default=Kind.PLANNED)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(_("created at"), null=True, blank=True, auto_now_add=True)

    class Meta:
        ordering = ["machine", "start"]
        verbose_name = _("maintenance window")
        verbose_name_plural = _("maintenance windows")
        constraints = [
            models.CheckConstraint(condition=models.Q(end__gt=models.F("start")), name="maintenance_order"),
        ]

    def __str__(self) -> str:
        return f"{self.machine}: {self.start:%Y-%m-%d %H:%M}–{self.end:%H:%M}"
