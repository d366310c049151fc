"""The lab kiosk page (no login: an enrolled screen) and the manager's kiosk page.

The kiosk screen is shared, so every answer is rendered in the kiosk's current language (its own
language switcher), sent with ``Cache-Control: no-store``, and the result pages return to the
empty form by themselves after a few seconds: no member's data stays on screen or in the
browser's history. The security reasoning lives in :mod:`fablab.booking.kiosk`.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from fablab.labs.models import Lab
from fablab.members import roles
from fablab.members.models import Certification, MemberProfile

from . import kiosk as service
from .errors import BookingError
from .finish_forms import KioskFinishForm
from .kiosk_forms import BadgeForm, EnrolKioskForm, KioskLoginForm, KioskPickForm
from .models import Booking, Kiosk

#: The screen token's cookie; its path is the lab's kiosk URL, so it is sent to the kiosk pages only.
COOKIE = "fablab_kiosk"
#: Browsers cap cookies at 400 days; every visit of a valid kiosk renews it.
COOKIE_MAX_AGE = 400 * 24 * 3600
#: Seconds before a result page returns to the empty form.
DONE_SECONDS = 8
PICK_SECONDS = 60


def _set_token(response, request, lab: Lab, token: str) -> None:
    response.set_cookie(
        COOKIE,
        token,
        max_age=COOKIE_MAX_AGE,
        path=reverse("kiosk:screen", args=[lab.slug]),
        secure=request.is_secure(),
        httponly=True,
        samesite="Strict",
    )


def _screen(
    request, lab: Lab, template: str, context: dict, *, status: int = 200, kiosk: Kiosk | None = None
):
    """Render a kiosk page in the lab's time zone; renew the token cookie of a valid kiosk."""
    context = {"lab": lab, "home": reverse("kiosk:screen", args=[lab.slug]), **context}
    with timezone.override(lab.tz):
        response = render(request, template, context, status=status)
    if kiosk is not None and request.COOKIES.get(COOKIE):
        _set_token(response, request, lab, request.COOKIES[COOKIE])
    return response


def _kiosk_or_refusal(request, lab: Lab):
    try:
        return service.verify_token(request.COOKIES.get(COOKIE), lab), None
    except service.KioskRefused:
        return None, _screen(request, lab, "booking/kiosk_unenrolled.html", {}, status=403)


@never_cache
@require_http_methods(["GET", "POST"])
def screen(request, lab: str):
    """The kiosk: member number or badge and PIN; then check in, pick, or say why not."""
    lab = get_object_or_404(Lab, slug=lab)
    kiosk, refusal = _kiosk_or_refusal(request, lab)
    if refusal:
        return refusal
    form = KioskLoginForm(request.POST or None)
    if request.method != "POST":
        return _screen(request, lab, "booking/kiosk.html", {"form": form}, kiosk=kiosk)
    if not form.is_valid():
        return _screen(
            request,
            lab,
            "booking/kiosk.html",
            {
                "form": KioskLoginForm(),
                "error": _("Type your member number (or scan your badge) and your PIN."),
            },
            kiosk=kiosk,
        )
    try:
        member = service.attempt(
            kiosk=kiosk, number=form.cleaned_data["number"], pin=form.cleaned_data["pin"]
        )
    except service.KioskRefused as exc:
        # A fresh form: neither the number nor the PIN stays on the screen.
        status = 429 if exc.code == "kiosk_locked" else 200
        return _screen(
            request,
            lab,
            "booking/kiosk.html",
            {"form": KioskLoginForm(), "error": exc.detail},
            status=status,
            kiosk=kiosk,
        )
    found = service.bookings_now(member, lab)
    # One booking to check in and none to finish: check it in at once (the common case).
    if len(found.checkable) == 1 and not found.checked_in:
        return _check_in(request, lab, kiosk, member, found.checkable[0].pk)
    ticket = service.pick_ticket(kiosk, member) if found.checkable or found.checked_in else ""
    finishing = _finish_choices(found.checked_in, ticket)
    if found.checkable:
        context = {
            "bookings": found.checkable,
            "form": KioskPickForm(initial={"ticket": ticket}),
            "finishing": finishing,
            "seconds": PICK_SECONDS,
        }
        return _screen(request, lab, "booking/kiosk_pick.html", context, kiosk=kiosk)
    context = {"found": found, "finishing": finishing, "seconds": PICK_SECONDS if finishing else DONE_SECONDS}
    return _screen(request, lab, "booking/kiosk_nothing.html", context, kiosk=kiosk)


def _finish_choices(bookings: list[Booking], ticket: str) -> list[tuple[Booking, KioskFinishForm]]:
    """An "I'm done" form per checked-in booking, each with its own field ids (several on one page)."""
    return [
        (b, KioskFinishForm(auto_id=f"finish_{b.pk}_%s", initial={"ticket": ticket, "booking": b.pk}))
        for b in bookings
    ]


@never_cache
@require_POST
def pick(request, lab: str):
    """Check in the booking the member picked, on the strength of the ticket their PIN earned."""
    lab = get_object_or_404(Lab, slug=lab)
    kiosk, refusal = _kiosk_or_refusal(request, lab)
    if refusal:
        return refusal
    form = KioskPickForm(request.POST)
    try:
        if not form.is_valid():
            raise service.KioskRefused("expired", service.EXPIRED)
        member = service.member_from_ticket(form.cleaned_data["ticket"], kiosk)
    except service.KioskRefused as exc:
        return _screen(
            request, lab, "booking/kiosk.html", {"form": KioskLoginForm(), "error": exc.detail}, kiosk=kiosk
        )
    checkable = {b.pk for b in service.bookings_now(member, lab).checkable}
    if form.cleaned_data["booking"] not in checkable:
        context = {"error": _("This booking cannot be checked in now."), "seconds": DONE_SECONDS}
        return _screen(request, lab, "booking/kiosk_done.html", context, kiosk=kiosk)
    return _check_in(request, lab, kiosk, member, form.cleaned_data["booking"])


@never_cache
@require_POST
def finish(request, lab: str):
    """Finish early ("I'm done") a checked-in booking of the member whose PIN earned the ticket.

    A fault line that is too long shows the form again with the line as typed (and a fresh ticket):
    nothing typed is lost. A booking that is not the member's checked-in booking here is refused.
    """
    lab = get_object_or_404(Lab, slug=lab)
    kiosk, refusal = _kiosk_or_refusal(request, lab)
    if refusal:
        return refusal
    form = KioskFinishForm(request.POST)
    valid = form.is_valid()
    try:
        member = service.member_from_ticket(request.POST.get("ticket", ""), kiosk)
    except service.KioskRefused as exc:
        return _screen(
            request, lab, "booking/kiosk.html", {"form": KioskLoginForm(), "error": exc.detail}, kiosk=kiosk
        )
    checked_in = {b.pk: b for b in service.bookings_now(member, lab).checked_in}
    booking_id = _int(request.POST.get("booking"))
    if booking_id not in checked_in:
        context = {"error": _("This booking cannot be finished now."), "seconds": DONE_SECONDS}
        return _screen(request, lab, "booking/kiosk_done.html", context, kiosk=kiosk)
    if not valid:
        # Same page, the line as typed, a fresh ticket (the old one may be about to expire).
        data = form.data.copy()
        data["ticket"] = service.pick_ticket(kiosk, member)
        bound = KioskFinishForm(data, auto_id=f"finish_{booking_id}_%s")
        bound.is_valid()
        context = {"finishing": [(checked_in[booking_id], bound)], "seconds": PICK_SECONDS}
        return _screen(request, lab, "booking/kiosk_finish.html", context, status=400, kiosk=kiosk)
    try:
        booking = service.finish(
            member=member, booking_id=booking_id, lab=lab, fault=form.cleaned_data["fault"]
        )
    except BookingError as exc:
        context = {"error": exc.detail, "seconds": DONE_SECONDS}
    else:
        context = {"finished": booking, "seconds": DONE_SECONDS}
    return _screen(request, lab, "booking/kiosk_done.html", context, kiosk=kiosk)


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _check_in(request, lab: Lab, kiosk: Kiosk, member, booking_id: int):
    try:
        booking = service.check_in(member=member, booking_id=booking_id, lab=lab)
    except BookingError as exc:
        # exc.detail was translated when raised, in this request's (the kiosk's) language.
        context = {"error": exc.detail, "seconds": DONE_SECONDS}
    else:
        context = {"booking": booking, "seconds": DONE_SECONDS}
    return _screen(request, lab, "booking/kiosk_done.html", context, kiosk=kiosk)


# --- the manager's page -------------------------------------------------------------------------


def _managed_lab(request, slug: str) -> Lab:
    lab = get_object_or_404(Lab, slug=slug)
    if not roles.manages_lab(request.user, lab):
        raise PermissionDenied
    return lab


def _manage_page(request, lab: Lab, *, enrol_form=None, badge_form=None, status: int = 200):
    context = {
        "lab": lab,
        "kiosks": Kiosk.objects.filter(lab=lab)
        .select_related("enrolled_by", "revoked_by")
        .order_by("revoked_at", "name"),
        "enrol_form": enrol_form or EnrolKioskForm(),
        "badge_form": badge_form or BadgeForm(),
        "kiosk_url": request.build_absolute_uri(reverse("kiosk:screen", args=[lab.slug])),
    }
    with timezone.override(lab.tz):
        return render(request, "booking/manage/kiosks.html", context, status=status)


@login_required
def manage(request, lab: str):
    """A managed lab's kiosks (enrolled, last seen, revoked), enrolling this screen, badges."""
    return _manage_page(request, _managed_lab(request, lab))


@login_required
@require_POST
def enrol(request, lab: str):
    """Enrol the screen this request comes from: the kiosk's token goes into this browser's cookie."""
    lab = _managed_lab(request, lab)
    form = EnrolKioskForm(request.POST)
    if not form.is_valid():
        return _manage_page(request, lab, enrol_form=form, status=400)
    kiosk, token = service.enrol(lab=lab, name=form.cleaned_data["name"], by=request.user)
    messages.success(
        request,
        _("This screen is now the kiosk “%(name)s”. Log out, then open the kiosk page and leave it open.")
        % {"name": kiosk.name},
    )
    response = redirect("kiosk:manage", lab.slug)
    _set_token(response, request, lab, token)
    return response


@login_required
@require_POST
def revoke(request, lab: str, pk: int):
    lab = _managed_lab(request, lab)
    kiosk = get_object_or_404(Kiosk, pk=pk, lab=lab)
    if service.revoke(kiosk=kiosk, by=request.user):
        messages.success(
            request, _("Kiosk “%(name)s” revoked: that screen no longer works.") % {"name": kiosk.name}
        )
    else:
        messages.info(request, _("Kiosk “%(name)s” was already revoked.") % {"name": kiosk.name})
    return redirect("kiosk:manage", lab.slug)


@login_required
@require_POST
def badge(request, lab: str):
    """Set or clear the badge of a member of this lab: one with a booking here or a training its machines need."""
    lab = _managed_lab(request, lab)
    form = BadgeForm(request.POST)
    if not form.is_valid():
        return _manage_page(request, lab, badge_form=form, status=400)
    profile = (
        MemberProfile.objects.select_related("user")
        .filter(member_number=form.cleaned_data["member_number"])
        .first()
    )
    if profile is None or not _member_of_lab(profile.user, lab):
        form.add_error("member_number", _("No member of this lab has this member number."))
        return _manage_page(request, lab, badge_form=form, status=400)
    badge_number = form.cleaned_data["badge_number"]
    try:
        with transaction.atomic():
            MemberProfile.objects.filter(pk=profile.pk).update(badge_number=badge_number)
    except IntegrityError:
        form.add_error("badge_number", _("This badge is already assigned to another member."))
        return _manage_page(request, lab, badge_form=form, status=400)
    name = profile.user.get_full_name() or profile.user.username
    if badge_number:
        messages.success(request, _("Badge assigned to %(member)s.") % {"member": name})
    else:
        messages.success(request, _("Badge of %(member)s removed.") % {"member": name})
    return redirect("kiosk:manage", lab.slug)


def _member_of_lab(user, lab: Lab) -> bool:
    if Booking.objects.filter(member=user, machine__lab=lab).exists():
        return True
    trainings = lab.machines.exclude(required_training=None).values("required_training")
    return Certification.objects.filter(member=user, training__in=trainings).exists()
