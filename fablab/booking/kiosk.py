"""The lab kiosk: an enrolled screen where makers check in and finish with their number (or badge) and PIN.

Security model
--------------
*The screen.* A manager enrols a screen once (:func:`enrol`). The screen keeps a token in a cookie:
``django.core.signing`` over the kiosk's id and a random 256-bit secret. The database keeps only the
secret's SHA-256, so neither a database dump nor a leaked ``SECRET_KEY`` alone yields a working token:
forging one needs both. :func:`verify_token` checks, in order, the signature, that the row exists,
that it is not revoked, the secret (``hmac.compare_digest``), and that the kiosk belongs to the lab
in the URL. Revoking the row (:func:`revoke`) makes the token worthless at once; there is no
expiry otherwise. The token is no one's session: holding it lets a screen do exactly one thing,
check in a member who proves themselves with their PIN.

*The member.* A maker types their member number (or a USB reader types their badge number) and
their PIN (:func:`attempt`). A 4-digit PIN has only 10,000 values, so the hash (``make_password``)
protects it from casual reading only; what protects it is throttling, with
:class:`~fablab.booking.models.KioskPinFailure` rows:

* :data:`MEMBER_FAILURES` wrong tries for one member within :data:`WINDOW`, at any kiosk, lock that
  member at every kiosk until the count falls below the limit (a try while locked is refused
  without looking at the PIN, and counts again);
* :data:`KIOSK_FAILURES` failures at one kiosk within :data:`WINDOW` (wrong PINs *and* unknown
  numbers) lock that kiosk for :data:`KIOSK_LOCK` after each further failure: a slow trickle at
  most, so nobody can sweep member numbers from one screen;
* a number that matches no member, a member without a PIN, a wrong PIN and a locked member all get
  the same answer (:data:`WRONG`), after the same hashing work, so the kiosk never tells whether a
  number exists.

*Several bookings.* A member with several bookings open for check-in gets a pick page carrying a
ticket signed for this kiosk and member (:func:`pick_ticket`), valid :data:`PICK_MAX_AGE`: picking
needs no second PIN. Within that time the ticket can check in only that member's own bookings
open now, at this kiosk; the page is ``no-store`` and returns to the empty form before it expires.
The same ticket lets a member with a checked-in booking here say "I'm done" (:func:`finish`), with
an optional one-line fault report: it finishes only that member's own checked-in bookings of this lab.

Every attempt runs in one transaction that first locks the kiosk row (and then the member's
profile row), so parallel requests cannot slip past a limit between counting and recording.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from django.contrib.auth.hashers import check_password, make_password
from django.core import signing
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from fablab.labs.models import Lab
from fablab.members.models import MemberProfile

from . import lifecycle
from .errors import BookingError
from .models import Booking, Kiosk, KioskPinFailure

#: ``django.core.signing`` salt of the screen token; a token signed for any other purpose never passes.
TOKEN_SALT = "fablab.kiosk"  # noqa: S105 (a salt, not a secret)
#: Salt of the short-lived ticket that lets a member who gave their PIN pick one of several bookings.
PICK_SALT = "fablab.kiosk.pick"
#: How long the pick ticket is valid: the pick page returns to the empty form sooner.
PICK_MAX_AGE = dt.timedelta(minutes=2)

WINDOW = dt.timedelta(minutes=15)
MEMBER_FAILURES = 5
KIOSK_FAILURES = 20
KIOSK_LOCK = dt.timedelta(minutes=2)
#: Failure rows older than this serve no limit and are pruned.
KEEP_FAILURES = dt.timedelta(days=1)

WRONG = _("Member number or PIN wrong. After 5 wrong tries a number is blocked for 15 minutes.")
KIOSK_LOCKED = _("Too many wrong tries at this kiosk. Please try again in a few minutes.")
NOT_ENROLLED = _("This screen is not enrolled as a kiosk of this lab.")
EXPIRED = _("This screen timed out. Please type your number and PIN again.")

# Hashed once: an unknown number or a member without a PIN costs the same hashing work as a real PIN.
_DUMMY_PIN_HASH: str | None = None


class KioskRefused(Exception):
    """A kiosk request is refused; ``detail`` is the translated text to show on the screen."""

    def __init__(self, code: str, detail) -> None:
        self.code = code
        self.detail = str(detail)
        super().__init__(f"{code}: {self.detail}")


# --- the screen -------------------------------------------------------------------------------


def _secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def enrol(*, lab: Lab, name: str, by, now: dt.datetime | None = None) -> tuple[Kiosk, str]:
    """Create a kiosk of ``lab`` enrolled by ``by``; return it and its token (shown to no one but the cookie).

    The caller checks that ``by`` manages ``lab``. The secret exists only inside the returned token.
    """
    secret = secrets.token_urlsafe(32)
    kiosk = Kiosk.objects.create(
        lab=lab,
        name=name,
        secret_hash=_secret_hash(secret),
        enrolled_by=by,
        enrolled_at=now or timezone.now(),
    )
    token = signing.dumps({"k": kiosk.pk, "s": secret}, salt=TOKEN_SALT, compress=False)
    return kiosk, token


def verify_token(token: str | None, lab: Lab, *, now: dt.datetime | None = None) -> Kiosk:
    """The enrolled, unrevoked kiosk of ``lab`` that ``token`` names; raises :class:`KioskRefused` (``not_enrolled``).

    Every failure (no token, bad signature, unknown or revoked kiosk, wrong secret, other lab) raises
    the same refusal. Records ``last_seen_at`` at most once a minute.
    """
    refused = KioskRefused("not_enrolled", NOT_ENROLLED)
    if not token:
        raise refused
    try:
        payload = signing.loads(token, salt=TOKEN_SALT)
    except signing.BadSignature:
        raise refused from None
    if (
        not isinstance(payload, dict)
        or not isinstance(payload.get("k"), int)
        or not isinstance(payload.get("s"), str)
    ):
        raise refused
    kiosk = Kiosk.objects.filter(pk=payload["k"]).first()
    if kiosk is None or kiosk.revoked_at is not None:
        raise refused
    if not hmac.compare_digest(_secret_hash(payload["s"]), kiosk.secret_hash):
        raise refused
    if kiosk.lab_id != lab.pk:
        raise refused
    now = now or timezone.now()
    if kiosk.last_seen_at is None or now - kiosk.last_seen_at >= dt.timedelta(minutes=1):
        Kiosk.objects.filter(pk=kiosk.pk).update(last_seen_at=now)
        kiosk.last_seen_at = now
    return kiosk


def revoke(*, kiosk: Kiosk, by, now: dt.datetime | None = None) -> bool:
    """Revoke ``kiosk`` (audited by ``revoked_by``/``revoked_at``); True when this call revoked it."""
    return bool(
        Kiosk.objects.filter(pk=kiosk.pk, revoked_at__isnull=True).update(
            revoked_at=now or timezone.now(), revoked_by=by
        )
    )


# --- the member -------------------------------------------------------------------------------


def normalise_number(value: str) -> str:
    """What the member typed, stripped; a short all-digit number is padded like member numbers ("42" → "00042")."""
    value = (value or "").strip()
    if value.isdigit() and len(value) < 5:
        value = value.zfill(5)
    return value


def find_profile(number: str) -> MemberProfile | None:
    """The active member whose member number, else whose badge number, is ``number``; None otherwise.

    A badge number is matched exactly as the reader typed it; a member number also without its
    leading zeros.

    The member number wins: a badge number equal to another member's number never shadows it.
    """
    raw = (number or "").strip()
    if not raw:
        return None
    profiles = MemberProfile.objects.select_related("user").filter(user__is_active=True)
    return (
        profiles.filter(member_number=normalise_number(raw)).first()
        or profiles.filter(badge_number=raw).first()
    )


def member_locked(member, now: dt.datetime) -> bool:
    """Whether ``member`` has had :data:`MEMBER_FAILURES` wrong tries, at any kiosk, within :data:`WINDOW`."""
    return KioskPinFailure.objects.filter(member=member, at__gt=now - WINDOW).count() >= MEMBER_FAILURES


def kiosk_locked(kiosk: Kiosk, now: dt.datetime) -> bool:
    """Whether ``kiosk`` has had :data:`KIOSK_FAILURES` failures within :data:`WINDOW`, the last within :data:`KIOSK_LOCK`."""
    recent = KioskPinFailure.objects.filter(kiosk=kiosk, at__gt=now - WINDOW)
    if recent.count() < KIOSK_FAILURES:
        return False
    return recent.filter(at__gt=now - KIOSK_LOCK).exists()


def _dummy_check(pin: str) -> None:
    global _DUMMY_PIN_HASH
    if _DUMMY_PIN_HASH is None:
        _DUMMY_PIN_HASH = make_password(secrets.token_hex(8))
    check_password(pin, _DUMMY_PIN_HASH)


def _fail(kiosk: Kiosk, member, now: dt.datetime) -> None:
    KioskPinFailure.objects.create(kiosk=kiosk, member=member, at=now)
    KioskPinFailure.objects.filter(kiosk=kiosk, at__lt=now - KEEP_FAILURES).delete()


def attempt(*, kiosk: Kiosk, number: str, pin: str, now: dt.datetime | None = None):
    """The member who typed ``number`` and ``pin`` at ``kiosk``; raises :class:`KioskRefused`.

    Codes: ``kiosk_locked`` (:data:`KIOSK_LOCKED`) and ``wrong`` (:data:`WRONG`, whatever the reason:
    unknown number, no PIN set, member locked, wrong PIN). A success clears the member's failures.
    """
    now = now or timezone.now()
    with transaction.atomic():
        # Serialises the attempts at one kiosk: counting and recording cannot interleave.
        Kiosk.objects.select_for_update().filter(pk=kiosk.pk).first()
        if kiosk_locked(kiosk, now):
            # Nothing recorded, nothing hashed: a locked kiosk is not a place to guess.
            locked = True
            member = None
        else:
            locked = False
            member = _check(kiosk, number, pin, now)
    # Raised after the block: an exception inside it would roll the failure row back.
    if locked:
        raise KioskRefused("kiosk_locked", KIOSK_LOCKED)
    if member is None:
        raise KioskRefused("wrong", WRONG)
    return member


def _check(kiosk: Kiosk, number: str, pin: str, now: dt.datetime):
    """The member, or None after recording a failure. Runs inside :func:`attempt`'s transaction."""
    profile = find_profile(number)
    if profile is None:
        _dummy_check(pin)
        _fail(kiosk, None, now)
        return None
    # Serialises one member's attempts across kiosks (always after the kiosk row: no deadlock).
    MemberProfile.objects.select_for_update().filter(pk=profile.pk).first()
    member = profile.user
    if member_locked(member, now) or not profile.kiosk_pin:
        _dummy_check(pin)
        _fail(kiosk, member, now)
        return None
    if not check_password(pin, profile.kiosk_pin):
        _fail(kiosk, member, now)
        return None
    KioskPinFailure.objects.filter(member=member).delete()
    return member


# --- the member's bookings --------------------------------------------------------------------


@dataclass(frozen=True)
class Bookings:
    """What a member who gave their PIN can do at this lab's kiosk now."""

    #: Confirmed bookings whose check-in is open now, by start.
    checkable: list[Booking]
    #: Bookings already checked in and not over yet.
    checked_in: list[Booking]
    #: The next booking later today (lab time) whose check-in has not opened yet, if any.
    next_today: Booking | None

    @property
    def next_opens(self) -> dt.datetime | None:
        """When check-in opens for :attr:`next_today`."""
        return lifecycle.check_in_opens(self.next_today) if self.next_today else None


def bookings_now(member, lab: Lab, now: dt.datetime | None = None) -> Bookings:
    """``member``'s bookings on ``lab``'s machines that matter at the kiosk at ``now``.

    Checkable means :func:`fablab.booking.lifecycle.check_in_open` (the window, machine by machine).
    """
    now = now or timezone.now()
    local = timezone.localtime(now, lab.tz)
    end_of_day = dt.datetime.combine(local.date() + dt.timedelta(days=1), dt.time(0), tzinfo=lab.tz)
    rows = list(
        Booking.objects.filter(
            member=member,
            kind=Booking.Kind.MEMBER,
            machine__lab=lab,
            status__in=(Booking.Status.CONFIRMED, Booking.Status.CHECKED_IN),
            end__gt=now,
            # Tomorrow's first hours too: shortly before midnight, a booking starting just after it
            # may already be open for check-in (its window opens before its start).
            start__lt=end_of_day + dt.timedelta(days=1),
        )
        .select_related("machine__lab")
        .order_by("start", "machine__name")
    )
    checkable, checked_in, later = [], [], []
    for booking in rows:
        if booking.status == Booking.Status.CHECKED_IN:
            checked_in.append(booking)
        elif lifecycle.check_in_open(booking, now):
            checkable.append(booking)
        elif now < lifecycle.check_in_opens(booking) and booking.start < end_of_day:
            later.append(booking)
    return Bookings(checkable=checkable, checked_in=checked_in, next_today=later[0] if later else None)


def check_in(*, member, booking_id: int, lab: Lab, now: dt.datetime | None = None) -> Booking:
    """Check in ``member``'s booking ``booking_id`` on a machine of ``lab``, through the kiosk.

    Only the member's own booking in this lab: anything else raises ``BookingError("forbidden")``.
    The rules (window, certification) are :func:`fablab.booking.lifecycle.check_in`'s.
    """
    booking = Booking.objects.filter(pk=booking_id, member=member, machine__lab=lab).first()
    if booking is None:
        raise BookingError("forbidden")
    return lifecycle.check_in(booking=booking, by=member, via=Booking.CheckInVia.KIOSK, now=now)


def finish(*, member, booking_id: int, lab: Lab, fault: str = "", now: dt.datetime | None = None) -> Booking:
    """Finish early ("I'm done") at the kiosk: ``member``'s checked-in booking ``booking_id`` in ``lab``.

    Like :func:`check_in`, only the member's own booking in this lab (else ``forbidden``); the rules
    are :func:`fablab.booking.lifecycle.finish`'s (``not_checked_in``; a second finish changes nothing).
    """
    booking = Booking.objects.filter(pk=booking_id, member=member, machine__lab=lab).first()
    if booking is None:
        raise BookingError("forbidden")
    return lifecycle.finish(booking=booking, by=member, via=Booking.CheckInVia.KIOSK, fault=fault, now=now)


def pick_ticket(kiosk: Kiosk, member) -> str:
    """A signed ticket letting ``member`` pick a booking at ``kiosk`` for :data:`PICK_MAX_AGE` without a new PIN."""
    return signing.dumps({"k": kiosk.pk, "m": member.pk}, salt=PICK_SALT, compress=False)


def member_from_ticket(ticket: str, kiosk: Kiosk):
    """The active member a :func:`pick_ticket` of this kiosk names; raises :class:`KioskRefused` (``expired``)."""
    from django.contrib.auth import get_user_model

    refused = KioskRefused("expired", EXPIRED)
    try:
        payload = signing.loads(ticket or "", salt=PICK_SALT, max_age=PICK_MAX_AGE)
    except signing.BadSignature:  # SignatureExpired is one
        raise refused from None
    if not isinstance(payload, dict) or payload.get("k") != kiosk.pk:
        raise refused
    member = get_user_model().objects.filter(pk=payload.get("m"), is_active=True).first()
    if member is None:
        raise refused
    return member
