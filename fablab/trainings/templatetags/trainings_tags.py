"""Template tags other apps' pages use to show sessions without their views knowing this app."""

from __future__ import annotations

from django import template
from django.utils import timezone

from .. import selectors
from ..models import Initiative, Registration

register = template.Library()

#: How many sessions a machine page and a lab page show.
SHOWN = 3
LAB_SHOWN = 10


@register.simple_tag
def next_sessions(training, user=None, limit: int = SHOWN):
    """The next sessions of ``training`` (any lab), soonest first; each with ``mine``: ``user``'s live
    registration status there (``registered``, ``waitlisted``) or empty, so a seat is not offered twice."""
    if training is None:
        return []
    sessions = list(selectors.upcoming(training=training, now=timezone.now(), limit=limit))
    mine = {}
    if user is not None and user.is_authenticated and sessions:
        mine = dict(
            Registration.objects.filter(member=user, session__in=sessions)
            .exclude(status=Registration.Status.CANCELLED)
            .values_list("session_id", "status")
        )
    for session in sessions:
        session.mine = mine.get(session.pk, "")
    return sessions


@register.simple_tag
def lab_sessions(lab, limit: int = LAB_SHOWN):
    """``lab``'s upcoming sessions, soonest first."""
    return list(selectors.upcoming(lab=lab, now=timezone.now(), limit=limit))


@register.simple_tag
def initiatives_for(user):
    """Every initiative, each with ``joined`` (whether ``user`` opted in)."""
    joined = set()
    if user.is_authenticated:
        joined = set(user.initiatives.values_list("initiative_id", flat=True))
    items = list(Initiative.objects.select_related("programme"))
    for item in items:
        item.joined = item.pk in joined
    return items
