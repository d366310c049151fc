"""Member pages: book a slot, my bookings, cancel. Every write goes through services."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods

from fablab.labs.models import Machine
from fablab.members import roles
from fablab.members.models import Certification, profile_for

from . import selectors, services
from .errors import BookingError
from .forms import BookingForm, parse_moment
from .ical import absolute_feed_url
from .models import Booking


@login_required
@require_http_methods(["GET", "POST"])
def book(request, machine_id: int):
    machine = get_object_or_404(
        Machine.objects.select_related("lab", "machine_type", "required_training"), pk=machine_id
    )
    lab = machine.lab
    week_url = reverse("labs:machine", args=[lab.slug, machine.slug])
    raw_start = request.POST.get("start") if request.method == "POST" else request.GET.get("start")
    start = parse_moment(raw_start, lab.tz)
    if start is None:
        messages.error(request, _("Pick a free time in the week view."))
        return redirect(week_url)
    now = timezone.now()
    with timezone.override(lab.tz):
        form = BookingForm(request.POST or None, machine=machine, start=start, now=now)
        if request.method == "POST" and form.is_valid():
            try:
                booking = services.booking_create(
                    machine=machine,
                    member=request.user,
                    start=start,
                    end=form.end_moment,
                    purpose=form.cleaned_data["purpose"],
                )
            except BookingError as exc:
                form.add_error(None, exc.detail)
            else:
                when = date_format(timezone.localtime(booking.start), "DATETIME_FORMAT")
                if booking.status == Booking.Status.PENDING:
                    messages.success(
                        request,
                        _("%(machine)s requested for %(when)s. A lab manager will approve or decline it.")
                        % {"machine": machine.name, "when": when},
                    )
                else:
                    messages.success(
                        request,
                        _("%(machine)s booked for %(when)s.") % {"machine": machine.name, "when": when},
                    )
                return redirect("booking:mine")
        needs_training = machine.required_training_id is not None and not (
            Certification.objects.filter(member=request.user, training_id=machine.required_training_id)
            .active()
            .exists()
        )
        context = {
            "form": form,
            "machine": machine,
            "lab": lab,
            "start": start,
            "week_url": f"{week_url}?week={timezone.localtime(start).date().isoformat()}",
            "needs_training": needs_training,
        }
        return render(request, "booking/book.html", context)


@login_required
def my_bookings(request):
    upcoming, past = selectors.upcoming_and_past(request.user)
    profile = profile_for(request.user)
    context = {
        "upcoming": upcoming,
        "past": past,
        "now": timezone.now(),
        "calendar_url": absolute_feed_url(member_calendar_path(profile.calendar_token)),
    }
    return render(request, "booking/my_bookings.html", context)


def member_calendar_path(token: str) -> str:
    try:
        return reverse("calendar:member", kwargs={"token": token})
    except NoReverseMatch:
        # The feed views live in booking.calendar_urls; this is their documented path.
        return f"/calendar/member/{token}.ics"


@login_required
@require_http_methods(["GET", "POST"])
def cancel(request, pk: int):
    booking = get_object_or_404(Booking.objects.select_related("machine", "machine__lab"), pk=pk)
    is_member = booking.member_id == request.user.pk
    if not is_member and not roles.manages_lab(request.user, booking.machine.lab_id):
        # Someone else's booking: do not even confirm it exists.
        raise Http404
    next_url = request.POST.get("next") or request.GET.get("next") or ""
    if not url_has_allowed_host_and_scheme(next_url, {request.get_host()}, request.is_secure()):
        next_url = ""
    next_url = next_url or reverse("booking:mine")
    if request.method == "POST":
        try:
            services.booking_cancel(booking=booking, by=request.user)
        except BookingError as exc:
            messages.error(request, exc.detail)
        else:
            messages.success(request, _("The booking has been cancelled."))
        return redirect(next_url)
    with timezone.override(booking.machine.lab.tz):
        return render(
            request,
            "booking/cancel.html",
            {"booking": booking, "next": next_url, "is_member": is_member, "now": timezone.now()},
        )
