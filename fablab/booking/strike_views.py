"""Manager pages of the no-show policy: a lab's members with strikes, one member's strikes, waiving
one (with a reason, audited), and the lab's policy form (shown on the lab settings page).

Only a manager of the lab gets past :func:`_managed_lab` (403; an unknown lab is 404). A member or
booking that is not this lab's is 404: ids reveal nothing about other labs. Every rule lives in
:mod:`fablab.booking.strikes`.
"""

from __future__ import annotations

import datetime as dt

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from fablab.labs.models import Lab
from fablab.members import roles

from . import strikes
from .errors import BookingError
from .manage_forms import LabPolicyForm
from .models import Booking
from .strike_forms import WaiveForm


def _managed_lab(request, slug: str) -> Lab:
    lab = get_object_or_404(Lab, slug=slug)
    if not roles.manages_lab(request.user, lab):
        raise PermissionDenied
    return lab


@login_required
def lab_strikes(request, lab: str):
    """The lab's members with strikes that still matter: how many in the window, blocked until when."""
    lab = _managed_lab(request, lab)
    now = timezone.now()
    context = {"lab": lab, "rows": strikes.members_with_strikes(lab, now), "now": now}
    with timezone.override(lab.tz):
        return render(request, "booking/manage/strikes.html", context)


def _member_page(request, lab: Lab, member, *, forms: dict | None = None, status: int = 200):
    now = timezone.now()
    found = sorted(strikes.strikes(member, lab, with_waived=True), key=lambda s: s.at, reverse=True)
    forms = forms or {}
    rows = [
        {
            "strike": s,
            "form": None
            if s.waiver
            else forms.get(s.booking.pk) or WaiveForm(auto_id=f"waive_{s.booking.pk}_%s"),
        }
        for s in found
    ]
    context = {
        "lab": lab,
        "member": member,
        "rows": rows,
        "blocked_until": strikes.blocked_until(member, lab, now),
        "counted": sum(
            1 for s in found if not s.waiver and now - dt.timedelta(days=lab.strike_window_days) < s.at <= now
        ),
    }
    with timezone.override(lab.tz):
        return render(request, "booking/manage/member_strikes.html", context, status=status)


def _member_of(lab: Lab, member_id: int):
    """The member, if they have a member booking in ``lab``; 404 otherwise."""
    member = get_user_model().objects.filter(pk=member_id).first()
    if member is None or not Booking.objects.filter(member=member, machine__lab=lab).exists():
        raise Http404
    return member


@login_required
def member_strikes(request, lab: str, member: int):
    """One member's strikes in the lab (waived ones too, with who waived them and why), newest first."""
    lab = _managed_lab(request, lab)
    return _member_page(request, lab, _member_of(lab, member))


@login_required
@require_POST
def waive(request, lab: str, pk: int):
    """Waive the strike of booking ``pk`` with a reason; a missing or too long reason shows the page
    again with the reason as typed (400)."""
    lab = _managed_lab(request, lab)
    booking = get_object_or_404(
        Booking.objects.select_related("member", "machine"), pk=pk, machine__lab=lab, kind=Booking.Kind.MEMBER
    )
    form = WaiveForm(request.POST, auto_id=f"waive_{booking.pk}_%s")
    if not form.is_valid():
        return _member_page(request, lab, booking.member, forms={booking.pk: form}, status=400)
    try:
        strikes.waive(booking=booking, by=request.user, reason=form.cleaned_data["reason"])
    except BookingError as exc:
        messages.error(request, exc.detail)
    else:
        messages.success(request, _("Strike waived."))
    return redirect("booking:member_strikes", lab=lab.slug, member=booking.member_id)


@login_required
@require_http_methods(["GET", "POST"])
def lab_policy(request, lab: str):
    """The lab's strike and waitlist policy: saved from the form on the lab settings page (or shown
    here with its errors)."""
    lab = _managed_lab(request, lab)
    form = LabPolicyForm(request.POST or None, instance=lab, prefix="policy")
    if request.method == "POST" and form.is_valid():
        # These fields only: a concurrent change of the lab's other settings is not overwritten.
        Lab.objects.filter(pk=lab.pk).update(**{f: form.cleaned_data[f] for f in LabPolicyForm.Meta.fields})
        messages.success(request, _("No-show and waitlist policy saved."))
        return redirect("booking:lab_settings", lab=lab.slug)
    status = 400 if request.method == "POST" else 200
    return render(request, "booking/manage/lab_policy.html", {"lab": lab, "policy_form": form}, status=status)
