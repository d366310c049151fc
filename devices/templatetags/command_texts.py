"""Template helpers for commands: the explanation of an ack code a manager reads before the bridge's words."""

from __future__ import annotations

from typing import Any

from django import template

from devices import capabilities

register = template.Library()


@register.filter
def ack_text(code: Any) -> str:
    """The translated explanation of a command's ``error_code`` (see :mod:`devices.capabilities`)."""
    return capabilities.ack_explanation(code)
