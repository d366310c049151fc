"""The machines' server side: which bridge serves which machine, MQTT
credentials, live status, state history, usage sessions, alerts and commands.

The hub (``manage.py run_hub``) is the only writer of the live tables
(``MachineStatus``, ``StateChange``, ``UsageSession``, ``Alert``,
``ProcessedEvent``); the pages, the API and the system write ``Command`` rows, which the hub publishes.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext_lazy as _

from fablab.labs.models import Lab, Machine, slug_validator

from .mqtt_names import hub_username, validate_mqtt_name, validate_mqtt_topic
from .plug_topics import plug_topic_conflict

STATE_CHOICES = [
    ("offline", _("Offline")),
    ("idle", _("Idle")),
    ("running", _("Running")),
    ("paused", _("Paused")),
    ("error", _("Error")),
]


class Bridge(models.Model):
    """One bridge program in a lab. Its MQTT username is its ``slug`` (the bridge id)."""

    slug = models.CharField(_("bridge id"), max_length=63, unique=True, validators=[slug_validator])
    lab = models.ForeignKey(Lab, on_delete=models.PROTECT, related_name="bridges", verbose_name=_("lab"))
    name = models.CharField(_("name"), max_length=200, blank=True)
    #: Mosquitto password hash (``$7$…``); the password itself is shown once and never stored.
    mqtt_password_hash = models.CharField(max_length=255, blank=True, editable=False)
    online = models.BooleanField(_("online"), default=False)
    online_changed_at = models.DateTimeField(_("online since / offline since"), null=True, blank=True)

    class Meta:
        ordering = ["slug"]
        verbose_name = _("bridge")
        verbose_name_plural = _("bridges")

    def __str__(self) -> str:
        return self.slug

    def clean(self) -> None:
        """The bridge id is its broker user name: it may not be the hub's or a plug's.

        A bridge only serves machines of its own lab, so its lab may not change
        while it serves machines of another.
        """
        errors: dict[str, list[ValidationError]] = {}
        if self.slug:
            problem = username_taken(self.slug, bridge=self)
            if problem:
                errors["slug"] = [problem]
        if self.pk and self.lab_id:
            foreign = [
                str(link.machine)
                for link in self.links.exclude(machine__lab_id=self.lab_id).select_related("machine__lab")
            ]
            if foreign:
                errors.setdefault("lab", []).append(
                    ValidationError(
                        _("This bridge serves machines of another lab (%(machines)s): unlink them first."),
                        code="bridge_lab",
                        params={"machines": ", ".join(foreign)},
                    )
                )
        if errors:
            raise ValidationError(errors)


class MachineLink(models.Model):
    """Which bridge and adapter serve a machine, and how often it should report."""

    class Adapter(models.TextChoices):
        OCTOPRINT = "octoprint", "OctoPrint"
        GRBL = "grbl", "GRBL 1.1"
        TASMOTA = "tasmota", "Tasmota"
        SHELLY = "shelly", "Shelly"

    machine = models.OneToOneField(
        Machine, on_delete=models.CASCADE, related_name="link", verbose_name=_("machine")
    )
    bridge = models.ForeignKey(
        Bridge, on_delete=models.PROTECT, related_name="links", verbose_name=_("bridge")
    )
    adapter = models.CharField(_("adapter"), max_length=20, choices=Adapter.choices)
    interlock = models.BooleanField(_("interlock"), default=False)
    telemetry_interval_s = models.PositiveIntegerField(
        _("expected telemetry interval (seconds)"),
        default=10,
        help_text=_("An alert is raised when the machine stays silent for three times this long."),
    )

    class Meta:
        verbose_name = _("machine link")
        verbose_name_plural = _("machine links")

    def __str__(self) -> str:
        return f"{self.machine} via {self.bridge} ({self.adapter})"

    def clean(self) -> None:
        """A bridge only serves machines of its own lab: the broker's ACL follows the links."""
        if self.bridge_id and self.machine_id and self.bridge.lab_id != self.machine.lab_id:
            raise ValidationError(
                {
                    "bridge": ValidationError(
                        _(
                            "%(machine)s is in lab %(machine_lab)s, but bridge %(bridge)s serves lab "
                            "%(bridge_lab)s: a bridge only serves machines of its own lab."
                        ),
                        code="cross_lab_link",
                        params={
                            "machine": self.machine.name,
                            "machine_lab": self.machine.lab.slug,
                            "bridge": self.bridge.slug,
                            "bridge_lab": self.bridge.lab.slug,
                        },
                    )
                }
            )


class PowerPlug(models.Model):
    """A Tasmota or Shelly plug that connects to the broker with its own credentials."""

    class Kind(models.TextChoices):
        TASMOTA = "tasmota", "Tasmota"
        SHELLY = "shelly", "Shelly"

    machine = models.OneToOneField(
        Machine, on_delete=models.CASCADE, related_name="power_plug", verbose_name=_("machine")
    )
    kind = models.CharField(_("kind"), max_length=10, choices=Kind.choices)
    #: Tasmota's %topic% (one level) or Shelly's topic prefix (one or more levels).
    topic = models.CharField(_("plug topic"), max_length=100, validators=[validate_mqtt_topic])
    mqtt_username = models.CharField(
        _("MQTT user name"), max_length=100, unique=True, validators=[validate_mqtt_name]
    )
    mqtt_password_hash = models.CharField(max_length=255, blank=True, editable=False)

    class Meta:
        verbose_name = _("power plug")
        verbose_name_plural = _("power plugs")

    def __str__(self) -> str:
        return f"{self.kind} {self.topic}"

    def clean(self) -> None:
        """The user name is not the hub's or a bridge's; the topics are the plug's alone.

        A Tasmota topic is one level. The topics the broker's ACL grants for this
        plug (:func:`firmware_bridge.protocol.plug_acl`) may not overlap another plug's, nor the
        MQTT contract's ``fablab/v1/#``: a Shelly prefix ``tele`` would otherwise
        hand this plug every Tasmota plug's telemetry.
        """
        errors: dict[str, list[ValidationError]] = {}
        if self.mqtt_username and validate_quietly(validate_mqtt_name, self.mqtt_username):
            problem = username_taken(self.mqtt_username, plug=self)
            if problem:
                errors["mqtt_username"] = [problem]
        if self.kind and self.topic and validate_quietly(validate_mqtt_topic, self.topic):
            if self.kind == self.Kind.TASMOTA and "/" in self.topic:
                errors["topic"] = [
                    ValidationError(
                        _("A Tasmota topic is a single level, without “/”."), code="tasmota_topic"
                    )
                ]
            else:
                others = PowerPlug.objects.exclude(pk=self.pk).select_related("machine").order_by("pk")
                conflict = plug_topic_conflict(self.kind, self.topic, others)
                if conflict is not None:
                    errors["topic"] = [conflict]
        if errors:
            raise ValidationError(errors)


def validate_quietly(validator, value: str) -> bool:
    """Whether ``value`` passes ``validator`` (its own error is reported by the field)."""
    try:
        validator(value)
    except ValidationError:
        return False
    return True


def username_taken(
    name: str, *, bridge: Bridge | None = None, plug: PowerPlug | None = None
) -> ValidationError | None:
    """Why ``name`` cannot be a broker user name for ``bridge`` or ``plug``, or None.

    Bridges (by slug), power plugs (by ``mqtt_username``) and the hub (the user of
    ``MQTT_URL``) share Mosquitto's one user name space: one name, one account.
    """
    if name == hub_username():
        return ValidationError(
            _("The hub logs in to the broker as “%(name)s” (MQTT_URL): choose another name."),
            code="username_hub",
            params={"name": name},
        )
    bridges = Bridge.objects.filter(slug=name)
    if bridge is not None and bridge.pk:
        bridges = bridges.exclude(pk=bridge.pk)
    if plug is not None and bridges.exists():
        return ValidationError(
            _("Bridge “%(name)s” already logs in to the broker with this name: choose another."),
            code="username_bridge",
            params={"name": name},
        )
    plugs = PowerPlug.objects.filter(mqtt_username=name).select_related("machine")
    if plug is not None and plug.pk:
        plugs = plugs.exclude(pk=plug.pk)
    other = plugs.first() if bridge is not None else None
    if other is not None:
        return ValidationError(
            _("The power plug of %(machine)s already logs in to the broker as “%(name)s”: choose another."),
            code="username_plug",
            params={"name": name, "machine": other.machine.name},
        )
    return None


class MachineStatus(models.Model):
    """The machine's live status, as the hub last saw it."""

    machine = models.OneToOneField(Machine, on_delete=models.CASCADE, primary_key=True, related_name="live")
    state = models.CharField(_("state"), max_length=10, choices=STATE_CHOICES, default="offline")
    since = models.DateTimeField(_("since"), null=True, blank=True)
    online = models.BooleanField(_("online"), default=False)
    enabled = models.BooleanField(_("enabled"), null=True, blank=True)
    adapter = models.CharField(_("adapter"), max_length=20, blank=True)
    job_id = models.CharField(max_length=128, blank=True)
    job_name = models.CharField(_("job"), max_length=255, blank=True)
    job_started_at = models.DateTimeField(null=True, blank=True)
    progress_pct = models.FloatField(_("progress"), null=True, blank=True)
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.CharField(max_length=500, blank=True)
    #: The latest value of every telemetry name, and when it was read.
    last_reading = models.JSONField(default=dict, blank=True)
    last_reading_at = models.DateTimeField(null=True, blank=True)
    #: Source ``ts`` (epoch ms) of the newest status applied: older ones are ignored.
    status_ts = models.BigIntegerField(default=0)
    #: The actions the bridge declared in that status (``status.capabilities``), in the contract's
    #: order; null when it declared none (a bridge older than the field): then
    #: :func:`devices.capabilities.offered` falls back on the adapter's and the link's.
    capabilities = models.JSONField(_("capabilities"), null=True, blank=True)
    last_message_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("live status")
        verbose_name_plural = _("live statuses")

    def __str__(self) -> str:
        return f"{self.machine}: {self.state}"


class StateChange(models.Model):
    machine = models.ForeignKey(Machine, on_delete=models.CASCADE, related_name="state_changes")
    state = models.CharField(max_length=10, choices=STATE_CHOICES)
    previous_state = models.CharField(max_length=10, choices=STATE_CHOICES, blank=True)
    at = models.DateTimeField(help_text=_("When it happened, from the bridge's clock."))
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["machine", "at"]
        indexes = [models.Index(fields=["machine", "at"])]

    def __str__(self) -> str:
        return f"{self.machine}: {self.previous_state} -> {self.state} at {self.at}"


class UsageSession(models.Model):
    """The machine ran from ``started_at`` to ``ended_at`` (open while running)."""

    class Outcome(models.TextChoices):
        RUNNING = "running", _("Running")
        FINISHED = "finished", _("Finished")
        FAILED = "failed", _("Failed")
        CANCELLED = "cancelled", _("Cancelled")
        INTERRUPTED = "interrupted", _("Interrupted")

    machine = models.ForeignKey(Machine, on_delete=models.CASCADE, related_name="usage_sessions")
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    job_id = models.CharField(max_length=128, blank=True)
    job_name = models.CharField(max_length=255, blank=True)
    outcome = models.CharField(max_length=12, choices=Outcome.choices, default=Outcome.RUNNING)
    energy_wh_start = models.FloatField(null=True, blank=True)
    energy_wh = models.FloatField(_("energy (Wh)"), null=True, blank=True)
    #: The checked-in booking of the machine the session overlaps (devices.attribution), else empty.
    booking = models.ForeignKey(
        "booking.Booking", on_delete=models.SET_NULL, null=True, blank=True, related_name="usage_sessions"
    )
    #: True once attributed to no booking: the machine ran without a checked-in booking.
    walk_in = models.BooleanField(_("walk-in"), default=False)

    class Meta:
        ordering = ["machine", "started_at"]
        indexes = [models.Index(fields=["machine", "started_at"])]
        constraints = [
            models.UniqueConstraint(
                fields=["machine"],
                condition=models.Q(ended_at__isnull=True),
                name="one_open_session_per_machine",
            )
        ]

    def __str__(self) -> str:
        return f"{self.machine} {self.started_at}–{self.ended_at or '…'}"


class Alert(models.Model):
    class Kind(models.TextChoices):
        OFFLINE = "offline", _("Machine offline")
        ERROR = "error", _("Error or alarm")
        JOB_FAILED = "job_failed", _("Job failed")
        SILENT = "silent", _("No telemetry")
        UNBOOKED_USE = "unbooked", _("Running without a booking")
        OVERRUN = "overrun", _("Running into the next booking")
        BOOKED_OFFLINE = "booked_offline", _("Booked machine offline at the start")
        INTERLOCK = "interlock", _("Interlock not in its wanted state")
        SERVICE_DUE = "service_due", _("Service due")
        FAULT_REPORTED = "fault_reported", _("Fault reported by a member")

    machine = models.ForeignKey(Machine, on_delete=models.CASCADE, related_name="alerts")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    #: The booking the alert is about, when there is one (overrun, booked machine offline).
    booking = models.ForeignKey(
        "booking.Booking", on_delete=models.SET_NULL, null=True, blank=True, related_name="alerts"
    )
    message = models.CharField(max_length=500, blank=True)
    raised_at = models.DateTimeField()
    cleared_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-raised_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["machine", "kind"],
                condition=models.Q(cleared_at__isnull=True),
                name="one_open_alert_per_kind",
            )
        ]

    def __str__(self) -> str:
        return f"{self.machine}: {self.kind}"


class ProcessedEvent(models.Model):
    """Events already applied, so a replayed event (same sid and seq) changes nothing."""

    machine = models.ForeignKey(Machine, on_delete=models.CASCADE, related_name="+")
    sid = models.CharField(max_length=64)
    seq = models.BigIntegerField()
    type = models.CharField(max_length=64)
    at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["machine", "sid", "seq"], name="event_once")]

    def __str__(self) -> str:
        return f"{self.machine_id} {self.sid}:{self.seq} {self.type}"


class Command(models.Model):
    """A command to a machine: a row written by whoever issues it, published by the hub.

    Two things are tracked apart. ``state`` is the delivery: ``pending`` (written,
    not yet taken by a hub), ``claimed`` (a hub took it at ``claimed_at`` and is
    publishing it; a claim older than the hub's claim timeout without ``published``
    is taken again, so delivery is at least once and the bridge de-duplicates by
    ``id``), ``published`` (the broker acknowledged it) or ``expired`` (its
    lifetime ran out before any hub published it: never sent). ``result`` is the
    machine's answer: ``sent`` until the bridge acks, then ``ok`` or ``failed``,
    or ``no_answer`` well after expiry.

    ``issued_by`` is nullable so that erasing a member keeps the audit trail
    (``source`` still says a member issued it).
    """

    class Result(models.TextChoices):
        SENT = "sent", _("Sent")
        OK = "ok", _("Done")
        FAILED = "failed", _("Refused")
        NO_ANSWER = "no_answer", _("No answer")

    class State(models.TextChoices):
        PENDING = "pending", _("Waiting for the hub")
        CLAIMED = "claimed", _("Being sent")
        PUBLISHED = "published", _("Delivered to the broker")
        EXPIRED = "expired", _("Expired before sending")

    class Source(models.TextChoices):
        MEMBER = "member", _("Member")
        SYSTEM = "system", _("System")
        SCHEDULER = "scheduler", _("Scheduler")

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    machine = models.ForeignKey(Machine, on_delete=models.CASCADE, related_name="commands")
    action = models.CharField(max_length=10)
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.MEMBER)
    issued_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    booking = models.ForeignKey(
        "booking.Booking", on_delete=models.SET_NULL, null=True, blank=True, related_name="commands"
    )
    issued_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    #: The hub that holds the claim (its MQTT client id), and when it took it.
    claimed_by = models.CharField(max_length=64, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    published_at = models.DateTimeField(null=True, blank=True)
    #: How many times a hub claimed it (more than one: a hub died or lost the broker mid-send).
    attempts = models.PositiveSmallIntegerField(default=0)
    result = models.CharField(max_length=10, choices=Result.choices, default=Result.SENT)
    error_code = models.CharField(max_length=20, blank=True)
    error_message = models.CharField(max_length=500, blank=True)
    answered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-issued_at"]
        indexes = [
            # The hub's claim query: rows not yet published, oldest first. Partial, so
            # it stays as small as the backlog however long the audit grows.
            models.Index(
                fields=["issued_at"],
                name="command_unsent",
                condition=models.Q(state__in=["pending", "claimed"]),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.machine} ({self.state}, {self.result})"


class Interlock(models.Model):
    """What the server wants an interlocked machine's lock to be, and what it last did about it.

    ``wanted`` is computed from the bookings (devices.interlock); ``wanted_since`` moves only when it
    changes, so a scheduler pass that finds nothing new writes nothing. ``mismatch_since`` is when the
    reported ``MachineStatus.enabled`` first disagreed with ``wanted``; 30 s later an alert is raised.
    """

    machine = models.OneToOneField(
        Machine, on_delete=models.CASCADE, primary_key=True, related_name="interlock"
    )
    wanted = models.BooleanField(_("wanted enabled"), default=False)
    wanted_since = models.DateTimeField(null=True, blank=True)
    #: Why: ``booking``, ``override``, ``finishing`` (a job may end first), or ``idle``.
    reason = models.CharField(max_length=12, blank=True)
    booking = models.ForeignKey(
        "booking.Booking", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    last_command = models.ForeignKey(
        "devices.Command", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    last_command_at = models.DateTimeField(null=True, blank=True)
    mismatch_since = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.machine}: {'enabled' if self.wanted else 'disabled'}"


class InterlockOverride(models.Model):
    """A manager's hand on the lock: enabled or disabled until ``until``, with a reason (audited)."""

    machine = models.ForeignKey(Machine, on_delete=models.CASCADE, related_name="interlock_overrides")
    enabled = models.BooleanField(_("enabled"))
    reason = models.CharField(_("reason"), max_length=300)
    starts_at = models.DateTimeField(_("from"))
    until = models.DateTimeField(_("until"))
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    ended_at = models.DateTimeField(_("ended early at"), null=True, blank=True)
    ended_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["-starts_at"]
        verbose_name = _("interlock override")
        verbose_name_plural = _("interlock overrides")
        indexes = [models.Index(fields=["machine", "until"])]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(until__gt=models.F("starts_at")), name="override_order"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.machine}: {'enabled' if self.enabled else 'disabled'} until {self.until}"


class ServiceInterval(models.Model):
    """A maintenance task due every so many hours of real use (e.g. the laser tube every 1,000 h).

    Hours count from the last :class:`ServiceRecord` (or from ``counted_from`` when there is none):
    run hours from the machine's usage sessions, or laser-on hours where GRBL reports laser power
    (:mod:`devices.care`).
    """

    class Basis(models.TextChoices):
        RUN = "run", _("Run hours")
        LASER = "laser", _("Laser-on hours")

    machine = models.ForeignKey(
        Machine, on_delete=models.CASCADE, related_name="service_intervals", verbose_name=_("machine")
    )
    name = models.CharField(_("task"), max_length=100)
    every_hours = models.PositiveIntegerField(_("every (hours)"))
    basis = models.CharField(_("counted in"), max_length=5, choices=Basis.choices, default=Basis.RUN)
    #: Hours before the first service count from here (the machine's installation, or when it was added).
    counted_from = models.DateTimeField(_("counted from"))

    class Meta:
        ordering = ["machine", "name"]
        verbose_name = _("service interval")
        verbose_name_plural = _("service intervals")
        constraints = [
            models.UniqueConstraint(fields=["machine", "name"], name="one_service_interval_per_task"),
            models.CheckConstraint(condition=models.Q(every_hours__gt=0), name="service_interval_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.machine}: {self.name}"


class ServiceRecord(models.Model):
    """A service done: resets its interval's counter. Never edited."""

    interval = models.ForeignKey(ServiceInterval, on_delete=models.CASCADE, related_name="records")
    at = models.DateTimeField(_("done at"))
    by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+", verbose_name=_("by")
    )
    note = models.CharField(_("note"), max_length=300, blank=True)
    #: The hours counted since the previous service when this one was done (for the history).
    hours = models.FloatField(_("hours since the previous service"), null=True, blank=True)

    class Meta:
        ordering = ["-at"]
        verbose_name = _("service record")
        verbose_name_plural = _("service records")

    def __str__(self) -> str:
        return f"{self.interval}: {self.at:%Y-%m-%d}"
