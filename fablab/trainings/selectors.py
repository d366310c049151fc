"""Reads for the training pages, the machine page and the lab page."""

from __future__ import annotations

import datetime as dt

from django.db.models import Count, F, Q, QuerySet

from .models import Registration, TrainingSession


def upcoming(
    *, now: dt.datetime, lab=None, training=None, limit: int | None = None
) -> QuerySet[TrainingSession]:
    """Sessions not cancelled that have not started, soonest first, with ``taken`` (seats held) and ``left``."""
    sessions = (
        TrainingSession.objects.filter(cancelled_at__isnull=True, start__gt=now)
        .select_related("lab", "training", "initiative")
        .annotate(
            taken=Count("registrations", filter=Q(registrations__status=Registration.Status.REGISTERED))
        )
        .annotate(left=F("seats") - F("taken"))
        .order_by("start", "pk")
    )
    if lab is not None:
        sessions = sessions.filter(lab=lab)
    if training is not None:
        sessions = sessions.filter(training=training)
    return sessions[:limit] if limit else sessions


def seats_left(session: TrainingSession) -> int:
    taken = session.registrations.filter(status=Registration.Status.REGISTERED).count()
    return max(0, session.seats - taken)
