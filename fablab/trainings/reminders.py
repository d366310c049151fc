"""The scheduler's training step: the day-before reminder and the 30-day renewal reminder.

:func:`scheduled_pass` is one step of ``devices.scheduler`` (any number of schedulers may run it at
once). Each reminder is claimed before it is sent, so it goes out once:

* a session's reminder by the conditional ``UPDATE … SET reminded_at = now WHERE reminded_at IS NULL``
  (exactly one pass sees one row updated);
* a certification's renewal reminder by inserting its :class:`~fablab.trainings.models.RenewalReminder`
  (one per certification, a unique key: a second insert fails and that pass skips it).

A claimed reminder whose email fails is not retried (the mail outage is logged by
``send_member_email``): a duplicate is worse than a missing reminder the member can live without.
"""

from __future__ import annotations

import datetime as dt

from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone
from django.utils.translation import gettext as _

from fablab.booking.emails import send_member_email
from fablab.labs.models import Lab
from fablab.members.models import Certification

from . import notify
from .models import Registration, RenewalReminder, TrainingSession

#: How long before a session its reminder goes out.
SESSION_NOTICE = dt.timedelta(days=1)
#: How long before a certification expires its renewal reminder goes out.
RENEWAL_NOTICE = dt.timedelta(days=30)


def scheduled_pass(now: dt.datetime | None = None) -> int:
    """Send the reminders due at ``now``; returns how many emails were sent."""
    now = now or timezone.now()
    return session_reminders(now) + renewal_reminders(now)


def session_reminders(now: dt.datetime) -> int:
    sent = 0
    due = TrainingSession.objects.filter(
        reminded_at__isnull=True, cancelled_at__isnull=True, start__gt=now, start__lte=now + SESSION_NOTICE
    ).values_list("pk", flat=True)
    for pk in list(due):
        if TrainingSession.objects.filter(pk=pk, reminded_at__isnull=True).update(reminded_at=now) != 1:
            continue  # another pass claimed it
        registrations = Registration.objects.filter(
            session_id=pk, status=Registration.Status.REGISTERED
        ).select_related("member", "session__lab", "session__training")
        sent += sum(notify.send(registration, "reminder") for registration in registrations)
    return sent


def renewal_reminders(now: dt.datetime) -> int:
    """Certifications expiring within :data:`RENEWAL_NOTICE` whose member holds no later one for the training."""
    later = Certification.objects.filter(
        member=OuterRef("member"), training=OuterRef("training"), revoked_at__isnull=True
    ).filter(Q(expires_at__isnull=True) | Q(expires_at__gt=OuterRef("expires_at")))
    due = (
        Certification.objects.filter(
            revoked_at__isnull=True,
            expires_at__gt=now,
            expires_at__lte=now + RENEWAL_NOTICE,
            renewal_reminder=None,
        )
        .exclude(Exists(later))
        .select_related("member", "training", "training__lab")
    )
    sent = 0
    for certification in due:
        try:
            with transaction.atomic():
                RenewalReminder.objects.create(certification=certification, sent_at=now)
        except IntegrityError:
            continue  # another pass claimed it
        sent += _send_renewal(certification, now)
    return sent


def _send_renewal(certification: Certification, now: dt.datetime) -> bool:
    sessions = list(
        TrainingSession.objects.filter(
            training=certification.training, cancelled_at__isnull=True, start__gt=now
        )
        .select_related("lab")
        .order_by("start")[:3]
    )
    lab = certification.training.lab or (sessions[0].lab if sessions else None)
    if lab is None:
        lab = (
            Lab.objects.filter(machines__required_training=certification.training).first()
            or Lab.objects.first()
        )
    if lab is None:
        return False
    return send_member_email(
        certification.member,
        lab=lab,
        template="trainings/email/renewal.txt",
        subject=lambda: (
            _("Your certification expires soon: %(training)s") % {"training": certification.training.name}
        ),
        context={"certification": certification, "sessions": sessions},
        what=f"the renewal reminder for certification {certification.pk}",
    )
