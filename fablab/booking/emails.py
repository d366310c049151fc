"""Booking emails, written in the member's own language and lab-local time."""

from __future__ import annotations

import logging
from collections.abc import Callable

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
    if booking.member is None:
        return
    send_member_email(
        booking.member,
        lab=booking.machine.lab,
        template="booking/email/booking.txt",
        subject=lambda: subject_for(kind, booking),
        context={"booking": booking, "kind": kind},
        what=f"the {kind} email for booking {booking.pk}",
    )


def send_member_email(
    member, *, lab, template: str, subject: Callable[[], str], context: dict, what: str
) -> bool:
    """Send ``template`` to ``member`` in their language, times in ``lab``'s zone; True when sent.

    ``subject`` is called inside the member's language. Never raises: a mail outage must not undo the
    change the email tells about (it is logged, naming ``what``).
    """
    if member is None or not member.email:
        return False
    language = profile_for(member).language
    try:
        with translation.override(language), timezone.override(lab.tz):
            body = render_to_string(
                template, {"member": member, "lab": lab, "site_url": settings.SITE_URL, **context}
            )
            send_mail(subject(), body, None, [member.email])
    except Exception:
        logger.exception("could not send %s", what)
        return False
    return True
