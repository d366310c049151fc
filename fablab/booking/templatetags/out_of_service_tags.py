"""``{% load out_of_service_tags %}``: whether a machine is out of service now, for the public pages.

``{% out_of_service_now machine as window %}`` gives the window under way (the one ending last),
or None; ``{% lab_out_of_service lab as windows %}`` every window under way in a lab, by machine.
A window under way refuses every booking in it (``machine_out_of_service``), whatever its kind.
"""

from __future__ import annotations

from django import template
from django.utils import timezone

from fablab.labs.models import MaintenanceWindow

register = template.Library()


@register.simple_tag
def out_of_service_now(machine) -> MaintenanceWindow | None:
    now = timezone.now()
    return (
        MaintenanceWindow.objects.filter(machine_id=machine.pk, start__lte=now, end__gt=now)
        .order_by("-end")
        .first()
    )


@register.simple_tag
def lab_out_of_service(lab) -> list[MaintenanceWindow]:
    now = timezone.now()
    return list(
        MaintenanceWindow.objects.filter(machine__lab_id=lab.pk, start__lte=now, end__gt=now)
        .select_related("machine")
        .order_by("machine__name", "-end")
    )
