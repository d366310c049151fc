"""Small template helpers for the booking pages."""

from __future__ import annotations

from django import template
from django.utils.translation import gettext as _

from fablab.members import roles

register = template.Library()


@register.simple_tag
def manages_any_lab(user) -> bool:
    """Whether ``user`` sees the lab manager pages (:func:`fablab.members.roles.manages_any_lab`)."""
    return roles.manages_any_lab(user)


@register.simple_tag
def manages_lab(user, lab) -> bool:
    """Whether ``user`` manages ``lab`` (:func:`fablab.members.roles.manages_lab`)."""
    return roles.manages_lab(user, lab)


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
