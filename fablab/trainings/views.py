"""Training pages: upcoming sessions (public), a session (register, cancel, waitlist position), and
for a lab's managers and trainers scheduling, editing, cancelling and the phone-width attendance page.
Managers give and remove the trainer role; members opt in and out of initiatives."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from fablab.booking.errors import BookingError
from fablab.labs.models import Lab
from fablab.members import roles

from . import access, attendance, selectors, services
from .forms import SessionForm, TrainerForm
from .models import Initiative, Registration, Trainer, TrainingSession


def _session(pk: int) -> TrainingSession:
    return get_object_or_404(
        TrainingSession.objects.select_related("lab", "training", "initiative").prefetch_related(
            "machines", "prerequisites"
        ),
        pk=pk,
    )


def session_list(request):
    """Upcoming sessions, everyone's to see; ``?lab=<slug>`` narrows to one lab."""
    lab = None
    if request.GET.get("lab"):
        lab = get_object_or_404(Lab, slug=request.GET["lab"])
    sessions = selectors.upcoming(lab=lab, now=timezone.now())
    context = {"sessions": sessions, "lab": lab, "run_labs": access.run_labs(request.user)}
    return render(request, "trainings/session_list.html", context)


def session_detail(request, pk: int):
    session = _session(pk)
    registration = None
    if request.user.is_authenticated:
        registration = (
            session.registrations.filter(member=request.user)
            .exclude(status=Registration.Status.CANCELLED)
            .first()
        )
    runs = access.may_run(request.user, session.lab)
    context = {
        "session": session,
        "registration": registration,
        "position": services.waitlist_position(registration) if registration else None,
        "seats_left": selectors.seats_left(session),
        "runs": runs,
        "now": timezone.now(),
        "registrations": session.registrations.exclude(status=Registration.Status.CANCELLED).select_related(
            "member"
        )
        if runs
        else None,
    }
    with timezone.override(session.lab.tz):
        return render(request, "trainings/session_detail.html", context)


@login_required
@require_POST
def register(request, pk: int):
    session = _session(pk)
    try:
        registration = services.register(session=session, member=request.user)
    except BookingError as exc:
        messages.error(request, exc.detail)
    else:
        if registration.status == Registration.Status.REGISTERED:
            messages.success(request, _("You are registered for this session."))
        else:
            messages.info(request, _("The session is full: you are on its waitlist."))
    next_url = request.POST.get("next", "")
    if next_url and url_has_allowed_host_and_scheme(next_url, {request.get_host()}, request.is_secure()):
        return redirect(next_url)
    return redirect("trainings:detail", pk)


@login_required
@require_POST
def unregister(request, pk: int):
    registration = get_object_or_404(
        Registration.objects.exclude(status=Registration.Status.CANCELLED), session_id=pk, member=request.user
    )
    try:
        services.cancel_registration(registration=registration, by=request.user)
    except BookingError as exc:
        messages.error(request, exc.detail)
    else:
        messages.success(request, _("Your registration has been cancelled."))
    return redirect("trainings:detail", pk)


def _edit_page(request, *, lab: Lab, session: TrainingSession | None):
    if not access.may_run(request.user, lab):
        raise PermissionDenied
    form = SessionForm(request.POST or None, instance=session, lab=lab, user=request.user)
    with timezone.override(lab.tz):
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            fields = {
                "machines": list(data["machines"]),
                "start": data["start"],
                "end": data["end"],
                "seats": data["seats"],
                "language": data["language"],
                "initiative": data["initiative"],
                "prerequisites": list(data["prerequisites"]),
                "outside_opening_hours": data.get("outside_opening_hours", False),
            }
            try:
                if session is None:
                    session = services.session_create(
                        training=data["training"], lab=lab, by=request.user, **fields
                    )
                    messages.success(request, _("The session is scheduled; its machines are held."))
                else:
                    if "outside_opening_hours" not in form.fields:
                        fields.pop("outside_opening_hours")
                    services.session_update(session=session, by=request.user, **fields)
                    messages.success(request, _("The session has been changed."))
            except BookingError as exc:
                form.add_error(None, exc.detail)
            else:
                return redirect("trainings:detail", session.pk)
        return render(request, "trainings/session_form.html", {"form": form, "lab": lab, "session": session})


@login_required
def schedule(request, lab: str):
    return _edit_page(request, lab=get_object_or_404(Lab, slug=lab), session=None)


@login_required
def edit(request, pk: int):
    session = _session(pk)
    return _edit_page(request, lab=session.lab, session=session)


@login_required
@require_POST
def cancel(request, pk: int):
    session = _session(pk)
    if not access.may_run(request.user, session.lab):
        raise PermissionDenied
    try:
        services.session_cancel(session=session, by=request.user)
    except BookingError as exc:
        messages.error(request, exc.detail)
    else:
        messages.success(request, _("The session is cancelled; its members have been told."))
    return redirect("trainings:detail", pk)


@login_required
def attendance_page(request, pk: int):
    """Phone width: one present and one absent button per member holding a seat."""
    session = _session(pk)
    if not access.may_run(request.user, session.lab):
        raise PermissionDenied
    if request.method == "POST":
        registration = get_object_or_404(
            Registration.objects.select_related("member"),
            session=session,
            pk=request.POST.get("registration") or 0,
        )
        try:
            attendance.mark(
                session=session,
                member=registration.member,
                present=request.POST.get("present") == "1",
                by=request.user,
            )
        except BookingError as exc:
            messages.error(request, exc.detail)
        return redirect("trainings:attendance", pk)
    registrations = session.registrations.filter(status=Registration.Status.REGISTERED).select_related(
        "member"
    )
    with timezone.override(session.lab.tz):
        return render(
            request,
            "trainings/attendance.html",
            {"session": session, "registrations": registrations, "started": session.start <= timezone.now()},
        )


@login_required
def trainers(request, lab: str):
    """A lab manager gives and removes the trainer role for their lab."""
    lab = get_object_or_404(Lab, slug=lab)
    if not roles.manages_lab(request.user, lab):
        raise PermissionDenied
    form = TrainerForm(request.POST or None)
    if request.method == "POST":
        if "remove" in request.POST:
            trainer = get_object_or_404(Trainer, lab=lab, pk=request.POST["remove"])
            services.trainer_remove(lab=lab, member=trainer.member, by=request.user)
            messages.success(request, _("The trainer role has been removed."))
            return redirect("trainings:trainers", lab.slug)
        if form.is_valid():
            services.trainer_give(lab=lab, member=form.cleaned_data["member"], by=request.user)
            messages.success(request, _("The member is now a trainer of this lab."))
            return redirect("trainings:trainers", lab.slug)
    context = {"lab": lab, "form": form, "trainers": lab.trainers.select_related("member", "granted_by")}
    return render(request, "trainings/trainers.html", context)


@login_required
@require_POST
def initiative(request, slug: str):
    """Opt in to (``join``) or out of an initiative, from the profile page."""
    chosen = get_object_or_404(Initiative, slug=slug)
    if request.POST.get("action") == "join":
        services.initiative_join(member=request.user, initiative=chosen)
        messages.success(request, _("You take part in %(initiative)s.") % {"initiative": chosen.name})
    else:
        services.initiative_leave(member=request.user, initiative=chosen)
        messages.success(
            request, _("You no longer take part in %(initiative)s.") % {"initiative": chosen.name}
        )
    return redirect("members:profile")
