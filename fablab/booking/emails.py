"""Booking emails, written in the member's own language and lab-local time."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.mail import send_mail
from django.template.loader import render_to_string
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from fablab.members.models import profile_for

from .models import Booking

logger = logging.getLogger(__name__)

KINDS = ("confirmed", "requested", "approved", "declined", "cancelled", "no_show")


def subject_for(kind: str, booking: Booking) -> str:
    subjects = {
        "confirmed": _("Booking confirmed: %(machine)s"),
        "requested": _("Booking awaiting approval: %(machine)s"),
        "approved": _("Booking approved: %(machine)s"),
        "declined": _("Booking declined: %(machine)s"),
        "cancelled": _("Booking cancelled: %(machine)s"),
        "no_show": _("Missed booking released: %(machine)s"),
    }
    return subjects[kind] % {"machine": booking.machine.name}


def send_booking_email(booking: Booking, kind: str) -> None:
    """Tell the member what happened to their booking. Never raises: a mail outage must not undo a booking."""
    if kind not in KINDS:
        raise ValueError(kind)
    member = booking.member
    if member is None or not member.email:
        return
    language = profile_for(member).language
    try:
        with translation.override(language), timezone.override(booking.machine.lab.tz):
            context = {
                "booking": booking,
                "kind": kind,
                "member": member,
                "lab": booking.machine.lab,
                "site_url": settings.SITE_URL,
            }
            body = render_to_string("booking/email/booking.txt", context)
            send_mail(subject_for(kind, booking), body, None, [member.email])
    except Exception:
        logger.exception("could not send the %s email for booking %s", kind, booking.pk)
