"""Lab manager pages: approvals, certifications, maintenance windows, the day's bookings,
a lab's settings and quota policies, and booking a machine for a member.

Managers see names here; nobody else gets past ``_require_manager`` (403).
Who manages what is decided by :mod:`fablab.members.roles` only.
"""

from __future__ import annotations

import datetime as dt

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from fablab.labs.models import Closure, Lab, Machine, MaintenanceWindow, OpeningHours
from fablab.members import roles
from fablab.members.forms import GrantCertificationForm, MemberLookupForm, RevokeCertificationForm
from fablab.members.models import Certification, CertificationAudit
from fablab.members.services import CertificationError, certification_grant, certification_revoke

from . import lifecycle, out_of_service, out_of_service_views, selectors, services
from .errors import BookingError
from .forms import MaintenanceWindowForm
from .manage_forms import (
    ClosureForm,
    MachinePolicyForm,
    ManagerBookingForm,
    OpeningHoursForm,
    QuotaPolicyForm,
)
from .models import Booking, QuotaPolicy

#: Rows of the certification list and of its audit shown at once.
CERTIFICATION_ROWS = 200
AUDIT_ROWS = 50


def _require_manager(user) -> None:
    if not roles.manages_any_lab(user):
        raise PermissionDenied


def _require_lab(user, lab: Lab) -> None:
    if not roles.manages_lab(user, lab):
        raise PermissionDenied


@login_required
def overview(request):
    _require_manager(request.user)
    labs = roles.managed_labs(request.user).prefetch_related("machines")
    context = {
        "labs": labs,
        "pending_count": selectors.pending_for_manager(request.user).count(),
    }
    return render(request, "booking/manage/overview.html", context)


@login_required
def approvals(request):
    _require_manager(request.user)
    pending = list(selectors.pending_for_manager(request.user))
    return render(request, "booking/manage/approvals.html", {"pending": pending})


@login_required
@require_POST
def decide(request, pk: int, decision: str):
    _require_manager(request.user)
    booking = get_object_or_404(Booking.objects.select_related("machine"), pk=pk)
    _require_lab(request.user, booking.machine.lab)
    action = services.booking_approve if decision == "approve" else services.booking_decline
    try:
        action(booking=booking, by=request.user)
    except BookingError as exc:
        messages.error(request, exc.detail)
    else:
        if decision == "approve":
            messages.success(request, _("Booking approved; the member has been told."))
        else:
            messages.success(request, _("Booking declined; the member has been told."))
    return redirect("booking:approvals")


@login_required
def certifications(request):
    """Grant a training this manager's labs need; list, revoke and audit those trainings' certifications.

    Members are named exactly (username or email address, see
    :class:`GrantCertificationForm`); there is no search by part of a name or address.
    """
    _require_manager(request.user)
    trainings = roles.grantable_trainings(request.user)
    form = GrantCertificationForm(request.POST or None, trainings=trainings)
    if request.method == "POST" and form.is_valid():
        try:
            cert = certification_grant(
                member=form.cleaned_data["member"],
                training=form.cleaned_data["training"],
                by=request.user,
                expires_at=form.expires_at(timezone.now()),
                reason=form.cleaned_data["reason"],
            )
        except CertificationError as exc:
            form.add_error(None, exc.detail)
        else:
            messages.success(
                request,
                _("%(member)s is now certified for %(training)s.")
                % {"member": _display_name(cert.member), "training": cert.training.name},
            )
            return redirect("booking:certifications")
    lookup = MemberLookupForm(request.GET if "member" in request.GET else None, auto_id="lookup_%s")
    certs = Certification.objects.filter(revoked_at=None, training__in=trainings).select_related(
        "member", "training", "granted_by"
    )
    audit = CertificationAudit.objects.filter(training__in=trainings).select_related(
        "actor", "member", "training"
    )
    member = lookup.cleaned_data["member"] if lookup.is_bound and lookup.is_valid() else None
    if member is not None:
        certs = certs.filter(member=member)
        audit = audit.filter(member=member)
    context = {
        "form": form,
        "lookup": lookup,
        "member": member,
        "certs": certs.order_by("member__username", "training__name")[:CERTIFICATION_ROWS],
        "audit": audit[:AUDIT_ROWS],
        "has_trainings": trainings.exists(),
        "reason_max": RevokeCertificationForm.base_fields["reason"].max_length,
    }
    return render(request, "booking/manage/certifications.html", context)


@login_required
@require_POST
def revoke_certification(request, pk: int):
    _require_manager(request.user)
    cert = get_object_or_404(Certification.objects.select_related("member", "training"), pk=pk)
    if not roles.may_grant_training(request.user, cert.training):
        raise PermissionDenied
    form = RevokeCertificationForm(request.POST)
    reason = form.cleaned_data["reason"] if form.is_valid() else ""
    try:
        certification_revoke(certification=cert, by=request.user, reason=reason)
    except CertificationError as exc:
        if exc.code == "already_revoked":
            messages.info(request, exc.detail)
        else:
            messages.error(request, exc.detail)
    else:
        messages.success(
            request,
            _("Certification of %(member)s for %(training)s revoked.")
            % {"member": _display_name(cert.member), "training": cert.training.name},
        )
    return redirect("booking:certifications")


@login_required
def maintenance(request, machine_id: int):
    """Plan a maintenance window; the bookings it hits are cancelled (once the manager confirms) and
    their members told (:func:`fablab.booking.out_of_service.schedule_maintenance`)."""
    machine = get_object_or_404(Machine.objects.select_related("lab"), pk=machine_id)
    lab = machine.lab
    _require_lab(request.user, lab)
    with timezone.override(lab.tz):
        form = MaintenanceWindowForm(
            request.POST or None, instance=MaintenanceWindow(machine=machine, created_by=request.user)
        )
        if request.method == "POST" and form.is_valid():
            start, end, now = form.cleaned_data["start"], form.cleaned_data["end"], timezone.now()
            hits = out_of_service.bookings_hit(machine=machine, start=start, end=end, now=now)
            if (hits.cancelled or hits.sessions) and "confirm" not in request.POST:
                return out_of_service_views.render_page(request, machine, plan_form=form, confirm_plan=hits)
            try:
                result = out_of_service.schedule_maintenance(
                    machine=machine,
                    start=start,
                    end=end,
                    reason=form.cleaned_data["reason"],
                    by=request.user,
                    now=now,
                )
            except BookingError as exc:
                form.add_error(None, exc.detail)
            else:
                messages.success(request, _("Maintenance window planned."))
                out_of_service_views.report(request, result.hits)
                return redirect("booking:maintenance", machine_id=machine.pk)
    return out_of_service_views.render_page(request, machine, plan_form=form)


@login_required
@require_POST
def delete_maintenance(request, pk: int):
    """Delete a window that has not started; its time is given back to the waitlist."""
    window = get_object_or_404(MaintenanceWindow.objects.select_related("machine__lab"), pk=pk)
    _require_lab(request.user, window.machine.lab)
    try:
        out_of_service.remove_maintenance(window=window, by=request.user)
    except BookingError as exc:
        messages.error(request, exc.detail)
    else:
        messages.success(request, _("Maintenance window deleted."))
    return redirect("booking:maintenance", machine_id=window.machine_id)


@login_required
def day(request, lab: str):
    lab = get_object_or_404(Lab, slug=lab)
    _require_lab(request.user, lab)
    today = timezone.localtime(timezone.now(), lab.tz).date()
    try:
        chosen = dt.date.fromisoformat(request.GET.get("date", ""))
    except ValueError:
        chosen = today
    if abs((chosen - today).days) > 3660:
        chosen = today
    start = dt.datetime.combine(chosen, dt.time(0), tzinfo=lab.tz)
    end = dt.datetime.combine(chosen + dt.timedelta(days=1), dt.time(0), tzinfo=lab.tz)
    bookings = list(
        Booking.objects.filter(machine__lab=lab, start__lt=end, end__gt=start)
        .select_related("machine", "member")
        .order_by("start", "machine__name")
    )
    now = timezone.now()
    for booking in bookings:
        # The same window the member's own page offers: the manager checks them in for them.
        booking.check_in_open = lifecycle.check_in_open(booking, now)
    context = {
        "lab": lab,
        "date": chosen,
        "previous_day": chosen - dt.timedelta(days=1),
        "next_day": chosen + dt.timedelta(days=1),
        "today": today,
        "bookings": bookings,
        "now": now,
        "machines": lab.machines.order_by("name"),
    }
    with timezone.override(lab.tz):
        return render(request, "booking/manage/day.html", context)


def _display_name(user) -> str:
    return user.get_full_name() or user.username


@login_required
def lab_settings(request, lab: str):
    """A managed lab's opening hours and closures (add, delete), and links to its machines' policies."""
    lab = get_object_or_404(Lab, slug=lab)
    _require_lab(request.user, lab)
    which = request.POST.get("form") if request.method == "POST" else None
    hours_form = OpeningHoursForm(
        request.POST if which == "hours" else None, instance=OpeningHours(lab=lab), prefix="hours"
    )
    closure_form = ClosureForm(
        request.POST if which == "closure" else None, instance=Closure(lab=lab), prefix="closure"
    )
    quota_form = QuotaPolicyForm(request.POST if which == "quota" else None, lab=lab, prefix="quota")
    bound = {"hours": hours_form, "closure": closure_form, "quota": quota_form}.get(which)
    if bound is not None and bound.is_valid() and _save(bound):
        done = {
            "hours": _("Opening hours added."),
            "closure": _("Closure added."),
            "quota": _("Quota policy added."),
        }
        messages.success(request, done[which])
        return redirect("booking:lab_settings", lab=lab.slug)
    context = {
        "lab": lab,
        "hours_form": hours_form,
        "closure_form": closure_form,
        "quota_form": quota_form,
        "quotas": lab.quota_policies.select_related("machine_type").order_by("machine_type__name"),
        "network_quotas": _network_quotas(lab),
        "hours": lab.opening_hours.order_by("weekday", "opens"),
        "closures": lab.closures.filter(ends_on__gte=timezone.localtime(timezone.now(), lab.tz).date()),
        "machines": lab.machines.order_by("name"),
    }
    return render(request, "booking/manage/lab_settings.html", context)


def _save(form) -> bool:
    """Save a valid model form; a unique constraint lost to a concurrent request becomes a form error."""
    try:
        with transaction.atomic():
            form.save()
    except IntegrityError:
        form.add_error(None, _("This was changed at the same time by someone else; please try again."))
        return False
    return True


def _network_quotas(lab: Lab) -> list[dict]:
    """The network-wide quota policies (read-only here), each marked if this lab's own policy replaces it."""
    own = set(lab.quota_policies.values_list("machine_type_id", flat=True))
    return [
        {"policy": policy, "replaced": policy.machine_type_id in own}
        for policy in QuotaPolicy.objects.filter(lab=None)
        .select_related("machine_type")
        .order_by("machine_type__name")
    ]


@login_required
@require_http_methods(["GET", "POST"])
def edit_quota(request, lab: str, pk: int):
    """Change a quota policy of a managed lab. Network-wide policies (no lab) are not found here."""
    policy = get_object_or_404(
        QuotaPolicy.objects.select_related("lab", "machine_type"), pk=pk, lab__slug=lab
    )
    _require_lab(request.user, policy.lab)
    form = QuotaPolicyForm(request.POST or None, instance=policy, lab=policy.lab)
    if request.method == "POST" and form.is_valid() and _save(form):
        messages.success(request, _("Quota policy saved."))
        return redirect("booking:lab_settings", lab=policy.lab.slug)
    return render(request, "booking/manage/quota.html", {"lab": policy.lab, "policy": policy, "form": form})


def _delete_lab_row(request, model, lab: str, pk: int, done: str):
    """Delete one of a managed lab's rows (found through the lab in the address), then go back."""
    row = get_object_or_404(model.objects.select_related("lab"), pk=pk, lab__slug=lab)
    _require_lab(request.user, row.lab)
    row.delete()
    messages.success(request, done)
    return redirect("booking:lab_settings", lab=lab)


@login_required
@require_POST
def delete_quota(request, lab: str, pk: int):
    return _delete_lab_row(request, QuotaPolicy, lab, pk, _("Quota policy deleted."))


@login_required
@require_POST
def delete_opening_hours(request, lab: str, pk: int):
    return _delete_lab_row(request, OpeningHours, lab, pk, _("Opening hours deleted."))


@login_required
@require_POST
def delete_closure(request, lab: str, pk: int):
    return _delete_lab_row(request, Closure, lab, pk, _("Closure deleted."))


@login_required
def machine_settings(request, machine_id: int):
    """A managed machine's booking policy; its identity and required training stay with the admins."""
    machine = get_object_or_404(Machine.objects.select_related("lab"), pk=machine_id)
    _require_lab(request.user, machine.lab)
    form = MachinePolicyForm(request.POST or None, instance=machine)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, _("Booking policy of %(machine)s saved.") % {"machine": machine.name})
        return redirect("booking:lab_settings", lab=machine.lab.slug)
    return render(request, "booking/manage/machine_settings.html", {"machine": machine, "form": form})


@login_required
@require_http_methods(["GET", "POST"])
def book_for_member(request, machine_id: int):
    """A manager of the machine's lab books it for a member (the admin's old "add booking").

    The booking goes through :func:`~fablab.booking.services.booking_create` like every
    other: the member's certification, quotas, opening hours, notice, overlap and the
    integrity guarantee all apply, and the member gets the usual email. A refusal
    shows the rule's message and its code.
    """
    machine = get_object_or_404(Machine.objects.select_related("lab"), pk=machine_id)
    lab = machine.lab
    _require_lab(request.user, lab)
    with timezone.override(lab.tz):
        today = timezone.localdate()
        try:
            day = dt.date.fromisoformat(request.GET.get("date", ""))
        except ValueError:
            day = today
        if abs((day - today).days) > 3660:
            day = today
        initial = {}
        first_opening = ManagerBookingForm.initial_start(lab, day)
        if first_opening is not None:
            initial["start"] = first_opening
            initial["end"] = first_opening + dt.timedelta(
                minutes=max(machine.min_duration_minutes, machine.slot_minutes)
            )
        form = ManagerBookingForm(request.POST or None, initial=initial)
        if request.method == "POST" and form.is_valid():
            member = form.cleaned_data["member"]
            try:
                booking = services.booking_create(
                    machine=machine,
                    member=member,
                    start=form.cleaned_data["start"],
                    end=form.cleaned_data["end"],
                    purpose=form.cleaned_data["purpose"],
                )
            except BookingError as exc:
                form.add_error(
                    None,
                    _("The booking rules refused this booking (%(code)s): %(detail)s")
                    % {"code": exc.code, "detail": exc.detail},
                )
            else:
                local_start = timezone.localtime(booking.start)
                values = {
                    "machine": machine.name,
                    "member": _display_name(member),
                    "when": date_format(local_start, "DATETIME_FORMAT"),
                }
                if booking.status == Booking.Status.PENDING:
                    text = _("%(machine)s requested for %(member)s on %(when)s; it awaits approval.") % values
                else:
                    text = _("%(machine)s booked for %(member)s on %(when)s.") % values
                messages.success(request, text)
                return redirect(
                    f"{reverse('booking:day', args=[lab.slug])}?date={local_start.date().isoformat()}"
                )
        day_start = dt.datetime.combine(day, dt.time(0), tzinfo=lab.tz)
        day_end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tzinfo=lab.tz)
        booked = (
            Booking.objects.filter(
                machine=machine, status__in=Booking.ACTIVE, start__lt=day_end, blocked_until__gt=day_start
            )
            .select_related("member")
            .order_by("start")
        )
        context = {"machine": machine, "lab": lab, "form": form, "date": day, "booked": booked}
        return render(request, "booking/manage/book_for_member.html", context)
