"""Member pages of the waitlist: join (from a taken slot of the week view), accept or decline an offer,
leave. Every write goes through :mod:`fablab.booking.waitlist`; the offers and entries themselves are
listed on the member's bookings page (``views.my_bookings``)."""

from __future__ import annotations

import datetime as dt

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from fablab.labs.models import Machine

from . import waitlist
from .errors import BookingError
from .forms import parse_moment
from .models import WaitlistEntry, WaitlistOffer
from .waitlist_forms import WaitlistJoinForm


@login_required
@require_http_methods(["GET", "POST"])
def join(request, machine_id: int):
    """The join form, its window prefilled from the taken slot clicked (``?start=``): from the slot's
    start, for the machine's minimum duration (at least one slot). A refusal shows the form again
    with what was typed and the rule's message."""
    machine = get_object_or_404(Machine.objects.select_related("lab", "machine_type"), pk=machine_id)
    lab = machine.lab
    week_url = reverse("labs:machine", args=[lab.slug, machine.slug])
    with timezone.override(lab.tz):
        initial = {}
        start = parse_moment(request.GET.get("start"), lab.tz)
        if start is not None:
            length = dt.timedelta(minutes=max(machine.slot_minutes, machine.min_duration_minutes))
            initial = {"start": timezone.localtime(start), "end": timezone.localtime(start + length)}
            week_url += f"?week={timezone.localtime(start).date().isoformat()}"
        form = WaitlistJoinForm(request.POST or None, machine=machine, initial=initial)
        if request.method == "POST" and form.is_valid():
            by_type = form.cleaned_data["target"] == WaitlistJoinForm.TYPE
            try:
                entry = waitlist.join(
                    member=request.user,
                    lab=lab,
                    machine=None if by_type else machine,
                    machine_type=machine.machine_type if by_type else None,
                    start=form.cleaned_data["start"],
                    end=form.cleaned_data["end"],
                )
            except BookingError as exc:
                form.add_error(None, exc.detail)
            else:
                messages.success(
                    request,
                    _(
                        "You are on the waitlist from %(start)s to %(end)s. If time frees up, you will get an email."
                    )
                    % {
                        "start": date_format(timezone.localtime(entry.start), "DATETIME_FORMAT"),
                        "end": date_format(timezone.localtime(entry.end), "DATETIME_FORMAT"),
                    },
                )
                return redirect("booking:mine")
        context = {"form": form, "machine": machine, "lab": lab, "week_url": week_url}
        return render(request, "booking/waitlist_join.html", context)


def _own_offer(request, pk: int) -> WaitlistOffer:
    """The offer ``pk`` if it was made to the user; 404 for anyone else's."""
    return get_object_or_404(
        WaitlistOffer.objects.select_related("machine__lab"), pk=pk, entry__member=request.user
    )


@login_required
@require_POST
def accept(request, pk: int):
    offer = _own_offer(request, pk)
    try:
        booking = waitlist.accept(offer, by=request.user)
    except BookingError as exc:
        messages.error(request, exc.detail)
        return redirect("booking:mine")
    when = date_format(timezone.localtime(booking.start, offer.machine.lab.tz), "DATETIME_FORMAT")
    messages.success(
        request, _("%(machine)s booked for %(when)s.") % {"machine": offer.machine.name, "when": when}
    )
    return redirect("booking:detail", pk=booking.pk)


@login_required
@require_POST
def decline(request, pk: int):
    offer = _own_offer(request, pk)
    try:
        waitlist.decline(offer, by=request.user)
    except BookingError as exc:
        messages.error(request, exc.detail)
    else:
        messages.success(
            request, _("Offer declined: the time goes to the next member. You stay on the waitlist.")
        )
    return redirect("booking:mine")


@login_required
@require_POST
def leave(request, pk: int):
    entry = get_object_or_404(WaitlistEntry, pk=pk, member=request.user)
    waitlist.leave(entry, by=request.user)
    messages.success(request, _("You have left the waitlist."))
    return redirect("booking:mine")
