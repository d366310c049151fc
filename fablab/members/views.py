"""Member pages: profile (language, opt-in statistics, calendar link, kiosk PIN, a copy of their data,
erasure) and the language switcher."""

from __future__ import annotations

import json

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth.decorators import login_required
from django.contrib.auth.hashers import make_password
from django.http import HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST
from knox.models import AuthToken

from . import privacy
from .forms import DeleteAccountForm, KioskPinForm, ProfileForm
from .models import MemberProfile, profile_for


@login_required
def profile(request):
    member = profile_for(request.user)
    form = ProfileForm(request.POST or None, instance=member)
    if request.method == "POST" and form.is_valid():
        form.save()
        translation.activate(member.language)
        response = redirect("members:profile")
        _remember_language(response, member.language)
        messages.success(request, _("Your profile has been saved."))
        return response
    return _profile_page(request, member, form=form)


def _profile_page(
    request, member: MemberProfile, *, form=None, pin_form=None, delete_form=None, status: int = 200
):
    from fablab.booking.ical import absolute_feed_url
    from fablab.booking.views import member_calendar_path

    context = {
        "form": form if form is not None else ProfileForm(instance=member),
        # The site's scheme and host (SITE_URL), not the request's: behind a proxy that is https.
        "calendar_url": absolute_feed_url(member_calendar_path(member.calendar_token)),
        "member": member,
        "pin_form": pin_form if pin_form is not None else KioskPinForm(),
        "api_tokens": AuthToken.objects.filter(user=request.user).order_by("-created"),
        "delete_form": delete_form if delete_form is not None else DeleteAccountForm(user=request.user),
    }
    return render(request, "members/profile.html", context, status=status)


@login_required
@require_POST
def kiosk_pin(request):
    """Set (or, with ``clear``, remove) the member's kiosk PIN; only its hash is stored."""
    member = profile_for(request.user)
    if "clear" in request.POST:
        MemberProfile.objects.filter(pk=member.pk).update(kiosk_pin="")
        messages.success(request, _("Your kiosk PIN has been removed. Kiosks no longer accept your number."))
        return redirect("members:profile")
    form = KioskPinForm(request.POST)
    if not form.is_valid():
        return _profile_page(request, member, pin_form=form, status=400)
    MemberProfile.objects.filter(pk=member.pk).update(kiosk_pin=make_password(form.cleaned_data["pin"]))
    messages.success(request, _("Your kiosk PIN has been saved."))
    return redirect("members:profile")


@login_required
@require_POST
def reset_calendar(request):
    profile_for(request.user).reset_calendar_token()
    messages.success(request, _("Your calendar link has been replaced. The old link no longer works."))
    return redirect("members:profile")


@login_required
@require_POST
def download_data(request):
    """Everything the platform holds about the member, as a JSON attachment (a POST: it is personal data,
    never to be fetched by a link or kept by a cache)."""
    data = privacy.export_member_data(request.user)
    response = HttpResponse(
        json.dumps(data, ensure_ascii=False, indent=2), content_type="application/json; charset=utf-8"
    )
    stamp = timezone.localdate().isoformat()
    response["Content-Disposition"] = f'attachment; filename="my-fablab-data-{stamp}.json"'
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_POST
def delete_account(request):
    """The member erases themselves (password and an explicit tick); they are signed out at once."""
    form = DeleteAccountForm(request.POST, user=request.user)
    if not form.is_valid():
        return _profile_page(request, profile_for(request.user), delete_form=form, status=400)
    user = request.user
    privacy.erase_member(user, by=user)
    logout(request)
    messages.success(request, _("Your account has been deleted. Your personal data is gone."))
    return redirect("labs:list")


@require_POST
def set_language(request):
    """Switch the page language; a signed-in member's choice is also saved in their profile."""
    code = request.POST.get("language", "")
    next_url = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(next_url, {request.get_host()}, request.is_secure()):
        next_url = reverse("labs:list")
    response = HttpResponseRedirect(next_url)
    if code not in dict(settings.LANGUAGES):
        return response
    if request.user.is_authenticated:
        MemberProfile.objects.update_or_create(user=request.user, defaults={"language": code})
    translation.activate(code)
    _remember_language(response, code)
    return response


def _remember_language(response, code: str) -> None:
    response.set_cookie(
        settings.LANGUAGE_COOKIE_NAME,
        code,
        max_age=settings.LANGUAGE_COOKIE_AGE or 365 * 24 * 3600,
        path=settings.LANGUAGE_COOKIE_PATH,
        domain=settings.LANGUAGE_COOKIE_DOMAIN,
        secure=settings.LANGUAGE_COOKIE_SECURE,
        httponly=settings.LANGUAGE_COOKIE_HTTPONLY,
        samesite=settings.LANGUAGE_COOKIE_SAMESITE,
    )
