"""Certification writes: grant and revoke. Every path (manager pages, anything later) goes through these.

Each write follows lock → check → write in one transaction, like
:mod:`fablab.booking.services`:

* the member's row (grant) or the certification's row (revoke) is locked with
  ``SELECT … FOR UPDATE``, so two managers acting at once are serialised;
* the rules are checked and the first broken one raises :class:`CertificationError`:
  only a manager of a lab whose machines need the training may act
  (:func:`fablab.members.roles.may_grant_training`), never on their own
  certification — a network administrator neither;
* the certification is written together with its :class:`CertificationAudit`
  row, so there is no grant or revocation without its audit entry.
"""

from __future__ import annotations

import datetime as dt

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from . import roles
from .models import Certification, CertificationAudit, Training

#: code -> translated message
ERRORS: dict[str, object] = {
    "forbidden": _("Only managers of a lab whose machines need this training may grant or revoke it."),
    "own_certification": _("You cannot grant or revoke your own certification; ask another manager."),
    "inactive_member": _("This member's account is not active."),
    "expiry_in_past": _("The expiry date has already passed."),
    "already_revoked": _("This certification was already revoked."),
}

#: Longest reason kept in the audit (the model's field length).
REASON_MAX = 300


class CertificationError(Exception):
    """A certification rule was broken; ``code`` names it (see :data:`ERRORS`)."""

    def __init__(self, code: str) -> None:
        if code not in ERRORS:
            raise ValueError(f"unknown certification error code {code!r}")
        self.code = code
        self.detail = str(ERRORS[code])
        super().__init__(f"{code}: {self.detail}")


def _check_rights(by, member_id: int, training: Training, rights=None) -> None:
    allowed = rights(by, training) if rights is not None else roles.may_grant_training(by, training)
    if not allowed:
        raise CertificationError("forbidden")
    if member_id == by.pk:
        raise CertificationError("own_certification")


def certification_grant(
    *,
    member,
    training: Training,
    by,
    expires_at: dt.datetime | None = None,
    reason: str = "",
    now: dt.datetime | None = None,
    rights=None,
) -> Certification:
    """``by`` certifies ``member`` for ``training`` until ``expires_at`` (None: never).

    Returns the new certification; raises :class:`CertificationError` (and
    writes nothing) if ``by`` may not grant this training, grants it to
    themselves, the member is inactive or the expiry has passed.

    ``rights``: a callable ``(by, training) -> bool`` deciding who may grant, in place of
    :func:`fablab.members.roles.may_grant_training`; :mod:`fablab.trainings.attendance` passes the
    trainer's right on the session's lab. The other rules (own certification, inactive member) stand.
    """
    now = now or timezone.now()
    with transaction.atomic():
        locked = get_user_model().objects.select_for_update().filter(pk=member.pk).first()
        _check_rights(by, member.pk, training, rights)
        if locked is None or not locked.is_active:
            raise CertificationError("inactive_member")
        if expires_at is not None and expires_at <= now:
            raise CertificationError("expiry_in_past")
        certification = Certification.objects.create(
            member=locked, training=training, granted_by=by, granted_at=now, expires_at=expires_at
        )
        CertificationAudit.objects.create(
            actor=by,
            member=locked,
            training=training,
            certification=certification,
            action=CertificationAudit.Action.GRANT,
            at=now,
            expires_at=expires_at,
            reason=reason.strip()[:REASON_MAX],
        )
    return certification


def certification_revoke(
    *, certification: Certification, by, reason: str = "", now: dt.datetime | None = None, rights=None
) -> Certification:
    """``by`` revokes ``certification``; returns it, revoked (``rights``: as for :func:`certification_grant`).

    Raises :class:`CertificationError` (and writes nothing) if ``by`` may not
    revoke this training, it is their own certification, or it was already
    revoked (the first revocation stays).
    """
    now = now or timezone.now()
    with transaction.atomic():
        certification = (
            Certification.objects.select_for_update(of=("self",))
            .select_related("training")
            .get(pk=certification.pk)
        )
        _check_rights(by, certification.member_id, certification.training, rights)
        if certification.revoked_at is not None:
            raise CertificationError("already_revoked")
        certification.revoked_at = now
        certification.revoked_by = by
        certification.save(update_fields=["revoked_at", "revoked_by"])
        CertificationAudit.objects.create(
            actor=by,
            member_id=certification.member_id,
            training=certification.training,
            certification=certification,
            action=CertificationAudit.Action.REVOKE,
            at=now,
            expires_at=certification.expires_at,
            reason=reason.strip()[:REASON_MAX],
        )
    return certification
