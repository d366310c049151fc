"""Login throttling: failed logins counted per account and per client address, in the shared cache.

Every way in with a password goes through it: the login page (:mod:`fablab.members.forms`),
allauth's own authentications (:class:`fablab.members.accounts.AccountAdapter`) and the API token
endpoint (``POST /api/v1/auth/token/``). Each calls :func:`check` *before* looking at the password,
so a throttled client learns nothing about it; failures are counted by the ``user_login_failed``
signal that ``django.contrib.auth.authenticate`` sends (:func:`_on_login_failed`), so no way in can
forget to count; a successful login clears its account's count (:func:`note_success`), never the
address's (else an attacker could reset it by logging into an account of their own).

Counters are fixed windows in ``settings.CACHES["default"]`` (Redis in production, so every web
process shares them): ``cache.add`` starts a window and ``cache.incr`` counts atomically, so two
processes failing at once both count. A window is ``LOGIN_THROTTLE_*`` = (failures, seconds); one
that is full refuses until its end, which ``Retry-After`` gives.

The client address is :func:`client_address`: ``REMOTE_ADDR``, or, behind ``TRUSTED_PROXY_COUNT``
proxies of ours, the address the outermost of them saw. A forged ``X-Forwarded-For`` only adds
entries further left, which are never read.

The account key is the user's primary key when the name or email address typed is a known one
(so "ada" and "ada@example.org" share one count), else the name typed, lower-cased.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_login_failed
from django.core.cache import cache
from django.db.models import Q
from django.dispatch import receiver
from django.utils import timezone
from django.utils.translation import gettext as _


class Throttled(Exception):
    """Too many failed logins; ``retry_after`` is whole seconds until the window ends."""

    def __init__(self, retry_after: int) -> None:
        self.retry_after = max(1, retry_after)
        super().__init__(self.message())

    def message(self) -> str:
        minutes = math.ceil(self.retry_after / 60)
        return _("Too many failed logins. Try again in %(minutes)d minute(s), or reset your password.") % {
            "minutes": minutes
        }


def client_address(request) -> str:
    """The client's address, as far as this site can trust it (see the module docstring)."""
    remote = request.META.get("REMOTE_ADDR", "") or ""
    proxies = settings.TRUSTED_PROXY_COUNT
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if proxies <= 0 or not forwarded:
        return remote
    entries = [entry.strip() for entry in forwarded.split(",") if entry.strip()]
    if not entries:
        return remote
    # Our proxies appended the last `proxies` entries; the leftmost of those is the client they saw.
    return entries[-min(proxies, len(entries))]


def account_key(identifier: str) -> str:
    """One key per account whatever the member typed (name or email), else the text typed."""
    identifier = (identifier or "").strip()
    if identifier:
        User = get_user_model()
        pk = (
            User.objects.filter(Q(username__iexact=identifier) | Q(email__iexact=identifier))
            .order_by("pk")
            .values_list("pk", flat=True)
            .first()
        )
        if pk is not None:
            return f"user:{pk}"
    return "name:" + hashlib.sha256(identifier.lower().encode()).hexdigest()[:32]


def _buckets(request, identifier: str) -> list[tuple[str, int, int]]:
    account_max, account_s = settings.LOGIN_THROTTLE_ACCOUNT
    address_max, address_s = settings.LOGIN_THROTTLE_ADDRESS
    address = hashlib.sha256(client_address(request).encode()).hexdigest()[:32]
    return [
        (f"login-fail:account:{account_key(identifier)}", account_max, account_s),
        (f"login-fail:address:{address}", address_max, address_s),
    ]


def _window(key: str, seconds: int, now: dt.datetime) -> tuple[str, int]:
    """The cache key of the window ``now`` falls in, and the seconds left in it."""
    epoch = int(now.timestamp())
    return f"{key}:{epoch // seconds}", seconds - epoch % seconds


def check(request, identifier: str, *, now: dt.datetime | None = None) -> None:
    """Raise :class:`Throttled` if the account or the client address has used up its failures."""
    now = now or timezone.now()
    waits = []
    for key, limit, seconds in _buckets(request, identifier):
        window, left = _window(key, seconds, now)
        if (cache.get(window) or 0) >= limit:
            waits.append(left)
    if waits:
        raise Throttled(max(waits))


def note_failure(request, identifier: str, *, now: dt.datetime | None = None) -> None:
    """Count one failed login against the account and the client address."""
    now = now or timezone.now()
    for key, _limit, seconds in _buckets(request, identifier):
        window, left = _window(key, seconds, now)
        cache.add(window, 0, timeout=left + 5)
        try:
            cache.incr(window)
        except ValueError:  # expired between add and incr: this failure starts the next window
            cache.add(window, 1, timeout=left + 5)


def note_success(request, identifier: str, *, now: dt.datetime | None = None) -> None:
    """A right password clears its account's count (not the address's)."""
    now = now or timezone.now()
    key, _limit, seconds = _buckets(request, identifier)[0]
    cache.delete(_window(key, seconds, now)[0])


def identifier_of(credentials: dict) -> str:
    return str(credentials.get("username") or credentials.get("email") or credentials.get("login") or "")


@receiver(user_login_failed, dispatch_uid="fablab.members.throttle.count_failure")
def _on_login_failed(sender, credentials, request=None, **kwargs) -> None:
    # Without a request (the test client's login(), a management command) there is no client to slow.
    if request is not None:
        note_failure(request, identifier_of(credentials))
