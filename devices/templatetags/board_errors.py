"""Template helpers for machine errors: the explanation a maker reads instead of the bridge's message."""

from __future__ import annotations

from typing import Any

from django import template

from devices import machine_errors

register = template.Library()


@register.filter
def machine_error_text(code: Any) -> str:
    """The translated explanation of an error kind or code (see :mod:`devices.machine_errors`)."""
    return machine_errors.explanation(code)


@register.simple_tag
def machine_error_strings() -> dict[str, str]:
    """Every explanation, translated, for board.js (``json_script``)."""
    return machine_errors.client_strings()
