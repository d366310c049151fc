"""``{% lab_policy_form lab %}``: the lab's strike and waitlist policy form on the lab settings page.

The form posts to :func:`fablab.booking.strike_views.lab_policy`, which saves it (or shows its
errors on its own page): the settings view itself needs no change.
"""

from __future__ import annotations

from django import template

from fablab.booking.manage_forms import LabPolicyForm

register = template.Library()


@register.inclusion_tag("booking/manage/_lab_policy_form.html", takes_context=True)
def lab_policy_form(context, lab):
    return {
        "lab": lab,
        "policy_form": LabPolicyForm(instance=lab, prefix="policy"),
        "csrf_token": context.get("csrf_token"),
    }
