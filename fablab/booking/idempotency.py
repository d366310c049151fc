"""Safe retries of ``POST /api/v1/bookings/``: the ``Idempotency-Key`` store, in the database.

Every server process sees the same keys (a per-process store let a retry that
reached another worker book twice or hear ``slot_taken``). The unique
(member, key) constraint is the arbiter between concurrent requests with one
key: exactly one insert succeeds and that request makes the booking; the
others replay its booking once it is recorded, or get
``409 idempotency_key_in_flight`` while it is still being made.

A request that is refused by a booking rule, or fails, gives its key back
(:func:`abandon`), so a retry is judged afresh. A claim whose request died
without either is taken over after :data:`IN_FLIGHT_TIMEOUT`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json

from django.db import IntegrityError, transaction
from django.utils import timezone

from .api_errors import IdempotencyKeyInFlight, IdempotencyKeyReused
from .models import Booking, IdempotencyKey

#: How long a key is remembered after its first use.
TTL = dt.timedelta(days=1)
#: A claim without a booking older than this belongs to a request that died; a retry may take it over.
#: Far longer than any booking request (SQLite writers queue for at most 20 s).
IN_FLIGHT_TIMEOUT = dt.timedelta(minutes=2)


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def fingerprint(payload: list) -> str:
    """A stable hash of the request body's meaning (not its spelling)."""
    return _hash(json.dumps(payload, sort_keys=True, separators=(",", ":")))


def begin(member, key: str, body_fingerprint: str, now: dt.datetime | None = None) -> Booking | None:
    """Claim ``key`` for ``member``'s request, or find what the key already answered.

    Returns ``None`` when this request now holds the key and must make the booking (then call
    :func:`finish` or :func:`abandon`), or the booking an earlier request with this key made.
    Raises :class:`IdempotencyKeyReused` if the key came with another body, and
    :class:`IdempotencyKeyInFlight` while another request with the key is still running.
    """
    now = now or timezone.now()
    key_hash = _hash(key)
    # Forgetting expired keys here keeps the table at about one day of keys, with no cron job.
    IdempotencyKey.objects.filter(expires_at__lte=now).delete()
    for _attempt in range(3):
        try:
            with transaction.atomic():
                IdempotencyKey.objects.create(
                    member=member,
                    key_hash=key_hash,
                    fingerprint=body_fingerprint,
                    claimed_at=now,
                    expires_at=now + TTL,
                )
            return None
        except IntegrityError:
            pass
        row = (
            IdempotencyKey.objects.filter(member=member, key_hash=key_hash)
            .select_related("booking__machine__lab", "booking__member")
            .first()
        )
        if row is None:
            continue  # given back or expired between our insert and this read: claim it again
        if row.fingerprint != body_fingerprint:
            raise IdempotencyKeyReused()
        if row.booking is not None:
            return row.booking
        if row.claimed_at <= now - IN_FLIGHT_TIMEOUT:
            # The claimant died. A conditional update lets only one retry take the claim over.
            taken = IdempotencyKey.objects.filter(pk=row.pk, booking=None, claimed_at=row.claimed_at).update(
                claimed_at=now, expires_at=now + TTL
            )
            if taken:
                return None
        raise IdempotencyKeyInFlight()
    raise IdempotencyKeyInFlight()


def finish(member, key: str, booking: Booking) -> None:
    """Record the booking the request holding ``key`` made (or found): later retries replay it."""
    IdempotencyKey.objects.filter(member=member, key_hash=_hash(key)).update(booking=booking)


def abandon(member, key: str) -> None:
    """Give ``key`` back after a refused or failed request, so that a retry is judged afresh."""
    IdempotencyKey.objects.filter(member=member, key_hash=_hash(key), booking=None).delete()
