"""Members' rights: a copy of everything the platform holds about a member, and erasure.

:func:`export_member_data` gathers, as plain JSON-ready data (dates and times ISO 8601, in UTC), the
member's account and profile (with their statistics answers), bookings, the machine sessions of those
bookings, training and workshop registrations, certifications, waitlist entries, strikes waived, the
machine commands they issued, initiatives, lab memberships and guardian consents. Other people's
names are never in it (who approved or marked something is left out).

:func:`erase_member` replaces the person with a *tombstone*, in place, in one transaction. The user row
stays (every booking, session, certification, registration and attendance keeps pointing at it, so
nothing cascades away and every report total stays the same), but it no longer names anybody: a random
username, no name, no e-mail, no usable password, inactive, no role. Their free texts are blanked,
their personal-only rows deleted, and their statistics answers withdrawn, also from the report
rollups already written. What they held from now on (upcoming bookings, seats) is cancelled first,
through the booking and training services, so the time and the seats go to the waitlists. The report
pseudonym (``reports.Subject``) stays tied to the tombstone: a rollup rebuilt later counts the
tombstone under the same pseudonym, so rebuilding changes nothing; the tombstone itself tells nobody
who it was.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from collections.abc import Callable
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from .models import MemberProfile, new_calendar_token, profile_for

#: What the other apps hold about a member, which this app may not import (the machine side: sessions of
#: their bookings, commands they issued, their lines in fault alerts). Each registers, from its
#: ``AppConfig.ready``, a part of the export ``(user, booking ids) -> {key: rows}``, its dates and times
#: written with :func:`iso`, and an eraser ``(user, booking ids) -> None`` that runs inside the
#: erasure's transaction.
_EXPORTERS: list[Callable[[Any, list[int]], dict]] = []
_ERASERS: list[Callable[[Any, list[int]], None]] = []


def register(*, export: Callable | None = None, erase: Callable | None = None) -> None:
    """Add another app's part of a member's data export and of their erasure (once per function)."""
    if export is not None and export not in _EXPORTERS:
        _EXPORTERS.append(export)
    if erase is not None and erase not in _ERASERS:
        _ERASERS.append(erase)


def iso(value) -> str | None:
    """A date or time as the export writes it: ISO 8601, a time in UTC; None stays None.

    Part of the :func:`register` contract: an export function of another app writes its dates and
    times with this, so that the whole export reads one way.
    """
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat()
    return value.isoformat()


log = logging.getLogger("fablab.members.privacy")

#: A tombstone's username starts with this.
TOMBSTONE_PREFIX = "erased-"


# --------------------------------------------------------------------------------------------- export


def export_member_data(user) -> dict:
    """Everything the platform holds about ``user``, ready for ``json.dumps``."""
    from allauth.account.models import EmailAddress

    from fablab.booking.models import Booking, StrikeWaiver, WaitlistEntry, WorkshopRegistration
    from fablab.trainings.models import InitiativeParticipation, Registration

    from .models import Certification, GuardianConsent, LabMembership

    profile = profile_for(user)
    bookings = list(
        Booking.objects.filter(member=user).select_related("machine__lab", "series").order_by("start", "pk")
    )
    booking_ids = [b.pk for b in bookings]
    data = {
        "format": "fablab-member-data/1",
        "exported_at": iso(timezone.now()),
        "account": {
            "username": user.get_username(),
            "first_name": user.first_name,
            "last_name": user.last_name,
            "email": user.email,
            "date_joined": iso(user.date_joined),
            "last_login": iso(user.last_login),
            "email_addresses": [
                {"email": e.email, "verified": e.verified, "primary": e.primary}
                for e in EmailAddress.objects.filter(user=user).order_by("pk")
            ],
        },
        "profile": _profile(profile),
        "bookings": [_booking(b) for b in bookings],
        "training_registrations": [
            {
                "training": r.session.training.name,
                "lab": r.session.lab.slug,
                "session_start": iso(r.session.start),
                "status": r.status,
                "registered_at": iso(r.created_at),
                "cancelled_at": iso(r.cancelled_at),
                "attended": r.attended,
            }
            for r in Registration.objects.filter(member=user)
            .select_related("session__training", "session__lab")
            .order_by("created_at", "pk")
        ],
        "workshop_registrations": [
            {
                "workshop": w.series.title,
                "lab": w.series.lab.slug,
                "occurrence_start": iso(w.occurrence_start),
                "status": w.status,
                "attended": w.attended,
                "registered_at": iso(w.registered_at),
            }
            for w in WorkshopRegistration.objects.filter(member=user)
            .select_related("series__lab")
            .order_by("occurrence_start", "pk")
        ],
        "certifications": [
            {
                "training": c.training.name,
                "granted_at": iso(c.granted_at),
                "expires_at": iso(c.expires_at),
                "revoked_at": iso(c.revoked_at),
            }
            for c in Certification.objects.filter(member=user)
            .select_related("training")
            .order_by("granted_at")
        ],
        "waitlist_entries": [
            {
                "lab": w.lab.slug,
                "machine": w.machine.slug if w.machine else None,
                "machine_type": w.machine_type.slug if w.machine_type else None,
                "from": iso(w.start),
                "until": iso(w.end),
                "status": w.status,
                "joined_at": iso(w.created_at),
            }
            for w in WaitlistEntry.objects.filter(member=user)
            .select_related("lab", "machine", "machine_type")
            .order_by("created_at", "pk")
        ],
        "strikes_waived": [
            {"booking": s.booking_id, "reason": s.reason, "waived_at": iso(s.at)}
            for s in StrikeWaiver.objects.filter(booking__member=user).order_by("at")
        ],
        "initiatives": [
            {"initiative": p.initiative.name, "joined_at": iso(p.joined_at)}
            for p in InitiativeParticipation.objects.filter(member=user)
            .select_related("initiative")
            .order_by("joined_at")
        ],
        "lab_memberships": [
            {"lab": m.lab.slug, "requested_at": iso(m.requested_at), "approved_at": iso(m.approved_at)}
            for m in LabMembership.objects.filter(member=user).select_related("lab")
        ],
        "guardian_consents": [
            {
                "guardian_name": g.guardian_name,
                "guardian_email": g.guardian_email,
                "method": g.method,
                "given_at": iso(g.given_at),
            }
            for g in GuardianConsent.objects.filter(member=user)
        ],
    }
    for export in _EXPORTERS:
        data.update(export(user, booking_ids))
    return data


def _profile(profile: MemberProfile) -> dict:
    return {
        "language": profile.language,
        "member_number": profile.member_number,
        "badge_number": profile.badge_number,
        "kiosk_pin_set": bool(profile.kiosk_pin),
        "birth_date": iso(profile.birth_date),
        "statistics_consent": profile.statistics_consent,
        "gender": profile.gender,
        "birth_year": profile.birth_year,
        "age_band": profile.age_band,
        "user_category": profile.user_category,
    }


def _booking(b) -> dict:
    return {
        "id": b.pk,
        "kind": b.kind,
        "lab": b.machine.lab.slug,
        "machine": b.machine.slug,
        "start": iso(b.start),
        "end": iso(b.end),
        "status": b.status,
        "purpose": b.purpose,
        "created_at": iso(b.created_at),
        "cancelled_at": iso(b.cancelled_at),
        "cancel_reason": b.cancel_reason,
        "checked_in_at": iso(b.checked_in_at),
        "check_in_via": b.check_in_via,
        "completed_at": iso(b.completed_at),
        "released_at": iso(b.released_at),
        "fault_report": b.fault_report,
        "used_minutes": b.used_minutes,
        "overrun_minutes": b.overrun_minutes,
        "energy_wh": b.energy_wh,
        "job_outcome": b.job_outcome,
        "series": b.series_id,
    }


# -------------------------------------------------------------------------------------------- erasure


def is_tombstone(user) -> bool:
    return user.get_username().startswith(TOMBSTONE_PREFIX) and not user.is_active


def erase_member(user, *, by=None, now: dt.datetime | None = None) -> bool:
    """Replace ``user`` with a tombstone everywhere (see the module's docstring).

    Returns False when the account was already erased (nothing changes a second time). ``by`` is who
    asked for it (an administrator, or the member themselves; None from the command line), for the
    audit log line.
    """
    User = get_user_model()
    with transaction.atomic():
        locked = User.objects.select_for_update().get(pk=user.pk)
        if is_tombstone(locked):
            return False
        _give_back_the_future(locked, now or timezone.now())
        _scrub_user(locked)
        _scrub_profile(locked)
        booking_ids = _blank_free_texts(locked)
        for erase in _ERASERS:
            erase(locked, booking_ids)
        _delete_personal_rows(locked)
        _withdraw_statistics(locked)
    log.warning(
        "member erased: user id %s replaced with a tombstone (by user id %s)",
        locked.pk,
        getattr(by, "pk", None),
    )
    user.refresh_from_db()
    return True


def _give_back_the_future(user, now: dt.datetime) -> None:
    """What the member holds from now on goes back, through the services that free it (the waitlists
    are offered the time and the seats), before the member is a tombstone: upcoming bookings and the
    rest of their recurring bookings, training seats and workshop seats. The past is left as it was."""
    from fablab.booking import series as series_service
    from fablab.booking import services as booking_services
    from fablab.booking.models import Booking, Series, WorkshopRegistration
    from fablab.trainings import services as training_services
    from fablab.trainings.models import Registration

    for series in Series.objects.filter(member=user, cancelled_at__isnull=True, until__gte=now.date()):
        series_service.cancel_series_from(series, now, user, now=now)
    for booking in Booking.objects.filter(member=user, status__in=Booking.CANCELLABLE, start__gt=now):
        booking_services.booking_cancel(booking=booking, by=user, now=now)
    for registration in Registration.objects.filter(member=user, session__start__gt=now).exclude(
        status=Registration.Status.CANCELLED
    ):
        training_services.cancel_registration(registration=registration, by=user, now=now)
    for seat in WorkshopRegistration.objects.filter(
        member=user, occurrence_start__gt=now, status=WorkshopRegistration.Status.REGISTERED
    ).select_related("series"):
        series_service.unregister(seat.series, seat.occurrence_start, user)


def _scrub_user(user) -> None:
    user.username = f"{TOMBSTONE_PREFIX}{secrets.token_hex(8)}"
    user.first_name = user.last_name = user.email = ""
    user.set_unusable_password()
    user.is_active = user.is_staff = user.is_superuser = False
    user.last_login = None
    user.save()
    user.groups.clear()
    user.user_permissions.clear()
    # Roles: no lab to manage, no programme to oversee.
    user.managed_labs.clear()
    user.programmes.clear()


def _scrub_profile(user) -> None:
    profile = profile_for(user)
    MemberProfile.objects.filter(pk=profile.pk).update(
        statistics_consent=False,
        gender="",
        birth_year=None,
        age_band="",
        user_category="",
        birth_date=None,
        badge_number=None,
        kiosk_pin="",
        calendar_token=new_calendar_token(),
    )


def _blank_free_texts(user) -> list[int]:
    """Blank what the member wrote on their bookings; returns the ids of their bookings."""
    from fablab.booking.models import Booking, Series, StrikeWaiver

    bookings = Booking.objects.filter(member=user)
    booking_ids = list(bookings.values_list("pk", flat=True))
    bookings.update(purpose="", fault_report="")
    Series.objects.filter(member=user).update(purpose="")
    # A manager's reason for waiving a strike is about the member.
    StrikeWaiver.objects.filter(booking_id__in=booking_ids).update(reason="")
    return booking_ids


def _delete_personal_rows(user) -> None:
    from allauth.account.models import EmailAddress
    from knox.models import AuthToken

    from fablab.booking.models import IdempotencyKey, KioskPinFailure, WaitlistEntry
    from fablab.trainings.models import InitiativeParticipation, Trainer

    from .models import GuardianConsent, LabMembership

    for model, field in [
        (AuthToken, "user"),
        (EmailAddress, "user"),
        (WaitlistEntry, "member"),
        (GuardianConsent, "member"),
        (KioskPinFailure, "member"),
        (IdempotencyKey, "member"),
        (InitiativeParticipation, "member"),
        (Trainer, "member"),
        # The tombstone books nowhere; the reports do not read memberships.
        (LabMembership, "member"),
    ]:
        model.objects.filter(**{field: user}).delete()
    # Sessions signed in elsewhere end by themselves: the unusable password changes the session hash.


def _withdraw_statistics(user) -> None:
    from fablab.reports.models import MemberDay, Subject

    subject = Subject.objects.filter(member=user).first()
    if subject is not None:
        MemberDay.objects.filter(subject=subject).update(
            gender="", age_band="", user_category="", declared_initiatives=[]
        )
