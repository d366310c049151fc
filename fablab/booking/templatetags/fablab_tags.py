"""Small template helpers for the booking pages."""

from __future__ import annotations

from django import template
from django.utils.translation import gettext as _

from fablab.booking.services import user_manages_lab

register = template.Library()


@register.simple_tag
def manages_any_lab(user) -> bool:
    """Whether ``user`` sees the lab manager pages (manager of a lab, or superuser)."""
    if not getattr(user, "is_authenticated", False):
        return False
    return user.is_superuser or user.managed_labs.exists()


@register.simple_tag
def manages_lab(user, lab) -> bool:
    return user_manages_lab(user, lab.pk)


@register.filter
def duration(minutes) -> str:
    """``90`` → ``1 h 30 min``, translated."""
    try:
        minutes = int(minutes)
    except (TypeError, ValueError):
        return ""
    hours, rest = divmod(minutes, 60)
    if hours and rest:
        return _("%(hours)d h %(minutes)d min") % {"hours": hours, "minutes": rest}
    if hours:
        return _("%(hours)d h") % {"hours": hours}
    return _("%(minutes)d min") % {"minutes": rest}
