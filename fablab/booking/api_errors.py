"""One error body for the whole API: ``{"code", "detail"}``, plus ``fields`` for field errors.

This is the DRF ``EXCEPTION_HANDLER`` (see settings). Every 4xx the API
returns goes through it: booking rules (:class:`~fablab.booking.errors.BookingError`,
with the rule's own status and code), invalid input, authentication and
permission failures, unknown objects, wrong methods, unparsable bodies and
throttling. Anything else is a bug and stays a 500.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from django.utils import translation
from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler as drf_exception_handler

from .errors import RULES, BookingError

#: Codes the API itself uses, next to the booking rules of ``errors.RULES``: code -> (status, meaning).
API_CODES: dict[str, tuple[int, str]] = {
    "invalid": (400, "The request body or query string is invalid; see `fields`."),
    "invalid_credentials": (400, "The username or password is wrong (token endpoint)."),
    "parse_error": (400, "The body is not valid JSON (or form data)."),
    "not_authenticated": (401, "No credentials were given."),
    "authentication_failed": (401, "The token or session is not valid."),
    "permission_denied": (403, "You may not use this endpoint."),
    "not_found": (404, "No such object, or not one you may see."),
    "idempotency_key_reused": (409, "This `Idempotency-Key` was already used with another request body."),
    "idempotency_key_in_flight": (
        409,
        "A request with this `Idempotency-Key` is still being handled; retry in a moment.",
    ),
    "method_not_allowed": (405, "The endpoint does not accept this HTTP method."),
    "not_acceptable": (406, "The `Accept` header asks for a format the API cannot give."),
    "unsupported_media_type": (415, "The `Content-Type` of the body is not supported."),
    "throttled": (429, "Too many requests; retry after `Retry-After` seconds."),
    # Programme reports (fablab.reports.service).
    "report_period_invalid": (
        400,
        "`period` is not a calendar year, quarter or month (`2026`, `2026-Q3`, `2026-07`) up to this year.",
    ),
    "report_level_invalid": (400, "`level` is not one of network, lab, machine_type, machine."),
    "report_lab_not_found": (404, "No such lab among the labs you may see."),
}


class InvalidCredentials(exceptions.APIException):
    status_code = 400
    default_detail = _("Unable to sign in with this username and password.")
    default_code = "invalid_credentials"


class IdempotencyKeyReused(exceptions.APIException):
    status_code = 409
    default_detail = _("This Idempotency-Key was already used for a different booking request.")
    default_code = "idempotency_key_reused"


class IdempotencyKeyInFlight(exceptions.APIException):
    status_code = 409
    default_detail = _("A request with this Idempotency-Key is still being handled; retry in a moment.")
    default_code = "idempotency_key_in_flight"


def exception_handler(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, BookingError):
        return Response({"code": exc.code, "detail": exc.detail}, status=exc.status)
    # Django's own exceptions, without their messages: a 404's text could name the model.
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    response.data = error_body(exc)
    return response


def error_body(exc: exceptions.APIException) -> dict[str, Any]:
    """The ``{"code", "detail"[, "fields"]}`` body for a DRF exception."""
    if isinstance(exc, exceptions.ValidationError):
        return _validation_body(exc.detail)
    codes = exc.get_codes()
    code = codes if isinstance(codes, str) else exc.default_code
    messages = _messages(exc.detail)
    return {"code": code, "detail": " ".join(messages) or str(exc.default_detail)}


def _validation_body(detail: Any) -> dict[str, Any]:
    non_field_key = api_settings.NON_FIELD_ERRORS_KEY
    if isinstance(detail, dict):
        general = _messages(detail.get(non_field_key, []))
        fields = {str(name): _messages(value) for name, value in detail.items() if name != non_field_key}
    else:
        general, fields = _messages(detail), {}
    body: dict[str, Any] = {
        "code": "invalid",
        "detail": general[0] if general else str(_("Some fields are invalid.")),
    }
    if fields:
        body["fields"] = fields
    return body


def _messages(value: Any, prefix: str = "") -> list[str]:
    """Flatten DRF's nested error details into a list of strings."""
    if isinstance(value, dict):
        return [m for key, item in value.items() for m in _messages(item, f"{prefix}{key}: ")]
    if isinstance(value, list | tuple):
        return [m for item in value for m in _messages(item, prefix)]
    return [f"{prefix}{value}"]


def all_codes() -> dict[str, int]:
    """Every code a 4xx body may carry, with its HTTP status."""
    codes = {code: status for code, (status, _meaning) in API_CODES.items()}
    codes.update({code: status for code, (status, _message) in RULES.items()})
    return codes


def codes_markdown_table() -> str:
    """The table of error codes for docs/api.md (a test keeps the file in step with it)."""
    lines = ["| HTTP | code | meaning |", "|---|---|---|"]
    rows = [(status, code, meaning) for code, (status, meaning) in API_CODES.items()]
    with translation.override("en"):
        rows += [(status, code, str(message)) for code, (status, message) in RULES.items()]
    for status, code, meaning in sorted(rows, key=lambda r: (r[0], r[1])):
        lines.append(f"| {status} | `{code}` | {meaning} |")
    return "\n".join(lines) + "\n"


def describe_codes(*codes: str) -> str:
    """One line per code for an OpenAPI response description."""
    table = all_codes()
    return "Codes: " + ", ".join(f"`{code}` ({table[code]})" for code in codes) + "."
