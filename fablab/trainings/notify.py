"""Training emails, in the member's language and the lab's time, sent after the commit."""

from __future__ import annotations

from django.db import transaction
from django.utils.translation import gettext as _

from fablab.booking.emails import send_member_email

KINDS = ("registered", "waitlisted", "promoted", "reminder", "session_cancelled")


def _subject(kind: str, session) -> str:
    subjects = {
        "registered": _("Registered: %(training)s"),
        "waitlisted": _("On the waitlist: %(training)s"),
        "promoted": _("A seat is yours: %(training)s"),
        "reminder": _("Tomorrow: %(training)s"),
        "session_cancelled": _("Session cancelled: %(training)s"),
    }
    return subjects[kind] % {"training": session.training.name}


def send(registration, kind: str) -> bool:
    """Email ``registration``'s member about ``kind``; True when sent. Never raises."""
    if kind not in KINDS:
        raise ValueError(kind)
    session = registration.session
    return send_member_email(
        registration.member,
        lab=session.lab,
        template="trainings/email/session.txt",
        subject=lambda: _subject(kind, session),
        context={"session": session, "registration": registration, "kind": kind},
        what=f"the {kind} email for registration {registration.pk}",
    )


def on_commit(registration, kind: str) -> None:
    transaction.on_commit(lambda: send(registration, kind))
