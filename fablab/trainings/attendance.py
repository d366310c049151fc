"""Attendance: the trainer marks each registrant present or absent; presence grants the certification.

``mark`` locks the session row, then the registration, checks, writes, and grants (or, when a
"present" is corrected to "absent", revokes) the certification through
:mod:`fablab.members.services` — with its audit row, in the same transaction. The grant's right is
the trainer's on the session's lab, for that lab's own or a network-wide training only
(:func:`fablab.trainings.access.may_grant_by_attendance`): a lab A trainer cannot grant lab B's
training. The certification runs ``training.validity_days`` from the end of the session (never
expires when the training has no validity). Marking the same way twice changes nothing.
"""

from __future__ import annotations

import datetime as dt

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext

from fablab.booking.errors import BookingError
from fablab.members.services import CertificationError, certification_grant, certification_revoke

from . import access, services
from .models import Registration, TrainingSession


def mark(
    *, session: TrainingSession, member, present: bool, by, now: dt.datetime | None = None
) -> Registration:
    """Mark ``member`` present or absent in ``session``; returns the registration.

    Raises :class:`BookingError`: ``forbidden`` (not a manager or trainer of the lab, or the
    certification service refused, with its reason), ``session_cancelled``, ``session_not_started``,
    ``not_registered`` (only members holding a seat are marked).
    """
    now = now or timezone.now()
    with transaction.atomic():
        session = services.locked(session)
        if not access.may_run(by, session.lab):
            raise BookingError("forbidden")
        if session.cancelled_at is not None:
            raise BookingError("session_cancelled")
        if session.start > now:
            raise BookingError("session_not_started")
        registration = (
            Registration.objects.select_for_update(of=("self",))
            .select_related("certification")
            .filter(session=session, member_id=member.pk, status=Registration.Status.REGISTERED)
            .first()
        )
        if registration is None:
            raise BookingError("not_registered")
        if registration.attended is present:
            return registration

        def rights(user, training) -> bool:
            return access.may_grant_by_attendance(user, session)

        try:
            if present:
                validity = session.training.validity_days
                registration.certification = certification_grant(
                    member=registration.member,
                    training=session.training,
                    by=by,
                    expires_at=session.end + dt.timedelta(days=validity) if validity else None,
                    reason=gettext("Attended the session of %(start)s")
                    % {"start": timezone.localtime(session.start, session.lab.tz).strftime("%Y-%m-%d %H:%M")},
                    now=now,
                    rights=rights,
                )
            elif registration.certification is not None and registration.certification.revoked_at is None:
                certification_revoke(
                    certification=registration.certification,
                    by=by,
                    reason=gettext("Marked absent from the session"),
                    now=now,
                    rights=rights,
                )
        except CertificationError as exc:
            raise BookingError("forbidden", exc.detail) from exc
        registration.attended = present
        registration.marked_by = by
        registration.marked_at = now
        registration.save(update_fields=["attended", "marked_by", "marked_at", "certification"])
    return registration
