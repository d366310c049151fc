"""Error reports (Django's debug page, the admins' error mail) that never show a credential.

Django's own filter hides settings whose *name* looks secret (``PASSWORD``, ``TOKEN``, ``KEY``…),
but this project keeps its credentials inside URLs: ``MQTT_URL`` carries the hub's password,
``DATABASE_URL`` and ``REDIS_URL`` theirs, and ``CHANNEL_LAYERS`` repeats the Redis URL under a
key called ``address``. Under ``runserver`` the process environment is also part of
``request.META``. Two layers, the second catching what the first cannot see:

* :class:`CredentialMaskingFilter` hides every setting and ``META`` key ending in ``_URL``, on top
  of Django's names, and strips the password of any ``scheme://user:password@`` found in any
  other setting or ``META`` value, nested ones included;
* :class:`CredentialMaskingReporter` then takes the rendered report (HTML or text) and masks
  every URL password and every known secret value — the passwords inside the configured URLs,
  ``SECRET_KEY``, ``INFLUX_TOKEN``, the databases' passwords — wherever it still appears: an
  exception message that quotes a URL, a frame's local variables, the ``repr`` of an object
  that holds a password.

Settings: ``DEFAULT_EXCEPTION_REPORTER_FILTER`` and ``DEFAULT_EXCEPTION_REPORTER``.
"""

from __future__ import annotations

import contextlib
import html
import re
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import unquote, urlsplit

from django.conf import settings
from django.utils.safestring import SafeString, mark_safe
from django.views.debug import ExceptionReporter, SafeExceptionReporterFilter

SUBSTITUTE = SafeExceptionReporterFilter.cleansed_substitute

# `scheme://user:password@` — the password is group 2; an empty user (`redis://:pw@host`) counts.
_URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/?#@\s]*:)([^@/?#\s]+)(?=@)", re.IGNORECASE)

#: A shorter secret value is not searched for on its own (it would garble the report);
#: inside a URL it is still masked by the pattern above.
MIN_SECRET_LENGTH = 4


def mask_url_credentials(text: str) -> str:
    """Replace the password of every ``scheme://user:password@host`` in ``text`` with stars."""
    return _URL_PASSWORD.sub(lambda m: m.group(1) + SUBSTITUTE, text)


def _walk_strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _walk_strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _walk_strings(item)


def known_secrets() -> set[str]:
    """The secret values the settings hold: passwords inside URLs, keys, tokens, database passwords."""
    found: set[str] = set()
    for name in dir(settings):
        if not name.isupper():
            continue
        value = getattr(settings, name, None)
        if name in ("SECRET_KEY", "INFLUX_TOKEN") and isinstance(value, str):
            found.add(value)
        if name == "SECRET_KEY_FALLBACKS":
            found.update(v for v in value or () if isinstance(v, str))
        if name == "DATABASES":
            found.update(str(db.get("PASSWORD") or "") for db in value.values())
        # Every URL anywhere in the settings (MQTT_URL, REDIS_URL, CHANNEL_LAYERS' hosts…).
        for text in _walk_strings(value):
            if "://" in text:
                with contextlib.suppress(ValueError):  # urlsplit refuses e.g. a bad port
                    password = urlsplit(text).password
                    if password:
                        found.update((password, unquote(password)))
    return {s for s in found if len(s) >= MIN_SECRET_LENGTH}


def mask_secrets(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every URL password and every given secret (raw or HTML-escaped) replaced by stars."""
    text = mask_url_credentials(text)
    # Longest first, so that a secret containing another is masked whole.
    for secret in sorted(secrets, key=len, reverse=True):
        for form in {secret, html.escape(secret)}:
            text = text.replace(form, SUBSTITUTE)
    return text


class CredentialMaskingFilter(SafeExceptionReporterFilter):
    """Django's filter, plus every ``*_URL`` name and every URL password in any value."""

    hidden_settings = re.compile(
        SafeExceptionReporterFilter.hidden_settings.pattern + r"|_URL$", flags=re.IGNORECASE
    )

    def cleanse_setting(self, key: Any, value: Any) -> Any:
        cleansed = super().cleanse_setting(key, value)
        if isinstance(cleansed, str) and cleansed != self.cleansed_substitute:
            return mask_url_credentials(cleansed)
        return cleansed


class CredentialMaskingReporter(ExceptionReporter):
    """Django's reporter, with every known secret value masked in the rendered report."""

    def get_traceback_html(self) -> SafeString:
        # Replacing text with stars adds no markup, so the page stays as safe as Django made it.
        return mark_safe(mask_secrets(super().get_traceback_html(), known_secrets()))  # noqa: S308

    def get_traceback_text(self) -> str:
        return mask_secrets(super().get_traceback_text(), known_secrets())
