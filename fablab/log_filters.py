"""Logging filters for the web process (see ``LOGGING`` in settings).

A refused request is not an error of ours: Django logs a ``PermissionDenied``
(403) with its whole traceback, which buries real errors in the log. These
filters keep the one warning line and drop the traceback.
"""

from __future__ import annotations

import logging

from django.core.exceptions import PermissionDenied


class ExpectedRefusalsWithoutTraceback(logging.Filter):
    """Strip the traceback from ``django.request``'s 403 lines raised as ``PermissionDenied``.

    The record itself is kept (one line: "Forbidden (Permission denied): /path").
    Every other record, and a 403 with any other exception, is left untouched.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "status_code", None) == 403 and record.exc_info:
            exc = record.exc_info[1]
            if isinstance(exc, PermissionDenied):
                record.exc_info = None
                record.exc_text = None
        return True
