"""Account pages: the login page, API token revocation, joining a lab, and the managers' pages
for guardians' consent and lab approval (docs/accounts.md)."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Exists, OuterRef
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from fablab.labs.models import Lab

from . import accounts, roles
from .forms import ExactMemberField
from .models import CONSENT_AGE, GuardianConsent, LabMembership, MemberProfile


class LoginView(auth_views.LoginView):
    """Django's login page with :class:`~fablab.members.accounts.LoginForm`; throttled: 429 + Retry-After."""

    authentication_form = accounts.LoginForm

    def get_default_redirect_url(self):
        """Without a ``next``: a programme officer lands on their reports, everyone else on the labs."""
        from fablab.reports.views import landing_url

        return landing_url(self.request.user) or super().get_default_redirect_url()

    def form_invalid(self, form):
        response = super().form_invalid(form)
        throttled = getattr(form, "throttled", None)
        if throttled is not None:
            response.status_code = 429
            response["Retry-After"] = str(throttled.retry_after)
        return response


@login_required
@require_POST
def revoke_token(request):
    """Revoke one of the member's API tokens (``digest``), or all of them (``all``)."""
    if "all" in request.POST:
        count = accounts.revoke_tokens(request.user)
    else:
        count = accounts.revoke_tokens(request.user, digest=request.POST.get("digest", ""))
    if count:
        messages.success(
            request,
            _("API token revoked; it no longer works.")
            if count == 1
            else _("Your API tokens have been revoked; they no longer work."),
        )
    else:
        messages.error(request, _("No such API token: it had already expired or been revoked."))
    return redirect("members:profile")


@login_required
@require_POST
def join_lab(request, lab: str):
    """Ask to join a lab that approves new members; its managers see the request."""
    lab_obj = get_object_or_404(Lab, slug=lab)
    if not lab_obj.new_members_need_approval or accounts.membership_approved(request.user, lab_obj):
        messages.info(request, _("You can already book in this lab."))
    else:
        accounts.request_membership(lab=lab_obj, member=request.user)
        messages.success(request, _("Your request has been sent to the lab's managers."))
    return redirect("labs:detail", lab_obj.slug)


@login_required
def lab_members(request, lab: str):
    """A manager's list of the lab's pending members, each approved by one button (audited by the row)."""
    lab_obj = get_object_or_404(Lab, slug=lab)
    if not roles.manages_lab(request.user, lab_obj):
        raise PermissionDenied
    if request.method == "POST":
        membership = get_object_or_404(LabMembership, pk=request.POST.get("membership") or 0, lab=lab_obj)
        if accounts.approve_membership(membership=membership, by=request.user):
            messages.success(
                request, _("%(member)s can now book in this lab.") % {"member": membership.member}
            )
        else:
            messages.info(request, _("This member had already been approved."))
        return redirect("members:lab_members", lab_obj.slug)
    memberships = LabMembership.objects.filter(lab=lab_obj).select_related("member", "approved_by")
    context = {
        "lab": lab_obj,
        "pending": [m for m in memberships if not m.approved],
        "approved": [m for m in memberships if m.approved],
    }
    return render(request, "members/lab_members.html", context)


class GuardianConsentForm(forms.Form):
    member = ExactMemberField(label=gettext_lazy("Member"))
    guardian_name = forms.CharField(label=gettext_lazy("Guardian's name"), max_length=200)
    guardian_email = forms.EmailField(label=gettext_lazy("Guardian's email address"), required=False)
    method = forms.ChoiceField(
        label=gettext_lazy("How consent was given"), choices=GuardianConsent.Method.choices
    )


@login_required
def guardian_consent(request):
    """Any lab manager records a guardian's consent for a member under 13; lists who still needs one."""
    if not roles.managed_labs(request.user).exists():
        raise PermissionDenied
    form = GuardianConsentForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        member = form.cleaned_data["member"]
        accounts.record_guardian_consent(
            member=member,
            guardian_name=form.cleaned_data["guardian_name"],
            guardian_email=form.cleaned_data["guardian_email"],
            method=form.cleaned_data["method"],
            by=request.user,
        )
        messages.success(request, _("Consent recorded: %(member)s can now book.") % {"member": member})
        return redirect("members:guardian_consent")
    today = timezone.localdate()
    cutoff = (
        today.replace(year=today.year - CONSENT_AGE)
        if not (today.month == 2 and today.day == 29)
        else (today.replace(year=today.year - CONSENT_AGE, day=28))
    )
    waiting = (
        MemberProfile.objects.filter(birth_date__gt=cutoff, user__is_active=True)
        .annotate(consented=Exists(GuardianConsent.objects.filter(member=OuterRef("user"))))
        .filter(consented=False)
        .select_related("user")
        .order_by("user__username")
    )
    recent = GuardianConsent.objects.select_related("member", "recorded_by")[:50]
    context = {"form": form, "waiting": waiting, "recent": recent, "consent_age": CONSENT_AGE}
    return render(request, "members/guardian_consent.html", context, status=400 if form.errors else 200)
