"""Template helpers for the programme reports (the navigation's "Reports" link)."""

from __future__ import annotations

from django import template

from fablab.reports import service

register = template.Library()


@register.simple_tag
def may_see_reports(user) -> bool:
    """Whether ``user`` sees any programme report: an officer, a lab manager or a network administrator."""
    if not getattr(user, "is_authenticated", False):
        return False
    return service.may_see_reports(user)
