"""Member pages: book a slot, my bookings, one booking (with its check-in), cancel.

Every write goes through services or :mod:`fablab.booking.lifecycle`.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.formats import date_format, number_format
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from django.views.decorators.http import require_http_methods, require_POST

from fablab.labs.models import Machine
from fablab.members import roles
from fablab.members.models import Certification, profile_for

from . import lifecycle, selectors, services, strikes, waitlist
from .errors import BookingError
from .finish_forms import FinishForm
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
    needs_training = machine.required_training_id is not None and not (
        Certification.objects.filter(member=request.user, training_id=machine.required_training_id)
        .active()
        .exists()
    )
    with timezone.override(lab.tz):
        form = BookingForm(request.POST or None, machine=machine, start=start, now=now)
        if request.method == "POST" and form.is_valid():
            try:
                if form.cleaned_data.get("repeat_until"):
                    booking = _book_series(request, machine, start, form)
                else:
                    booking = services.booking_create(
                        machine=machine,
                        member=request.user,
                        start=start,
                        end=form.end_moment,
                        purpose=form.cleaned_data["purpose"],
                    )
            except BookingError as exc:
                if not (needs_training and exc.code == "not_certified"):  # the page's note already says so
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
        context = {
            "form": form,
            "machine": machine,
            "lab": lab,
            "start": start,
            "week_url": f"{week_url}?week={timezone.localtime(start).date().isoformat()}",
            "needs_training": needs_training,
        }
        return render(request, "booking/book.html", context)


def _book_series(request, machine: Machine, start, form) -> Booking:
    """A weekly series from the booking form; the weeks refused are said, the first booking returned."""
    from .series import create_member_series

    _series, extension = create_member_series(
        member=request.user,
        machine=machine,
        start=start,
        duration=form.end_moment - start,
        until=form.cleaned_data["repeat_until"],
        purpose=form.cleaned_data["purpose"],
    )
    for moment, error in extension.refused:
        messages.warning(
            request,
            _("Not booked on %(when)s: %(reason)s")
            % {"when": date_format(timezone.localtime(moment), "DATETIME_FORMAT"), "reason": error.detail},
        )
    return extension.created[0]


@login_required
def my_bookings(request):
    now = timezone.now()
    upcoming, past = selectors.upcoming_and_past(request.user, now)
    profile = profile_for(request.user)
    context = {
        "upcoming": upcoming,
        "past": past,
        "now": now,
        "waitlist": waitlist.my_waitlist(request.user, now),
        "blocks": strikes.blocks_for(request.user, now),
        "calendar_url": absolute_feed_url(member_calendar_path(profile.calendar_token)),
    }
    return render(request, "booking/my_bookings.html", context)


def member_calendar_path(token: str) -> str:
    try:
        return reverse("calendar:member", kwargs={"token": token})
    except NoReverseMatch:
        # The feed views live in booking.calendar_urls; this is their documented path.
        return f"/calendar/member/{token}.ics"


def _next_url(request, default: str) -> str:
    """The ``next`` the form carried when it points back into this site, else ``default``."""
    next_url = request.POST.get("next") or request.GET.get("next") or ""
    if not url_has_allowed_host_and_scheme(next_url, {request.get_host()}, request.is_secure()):
        next_url = ""
    return next_url or default


def _own_or_managed(request, pk: int) -> Booking:
    """The booking ``pk`` if the user booked it or manages its lab; 404 for anyone else.

    Someone else's booking is not even confirmed to exist.
    """
    booking = get_object_or_404(
        Booking.objects.select_related("machine", "machine__lab", "machine__machine_type", "member"), pk=pk
    )
    if booking.member_id != request.user.pk and not roles.manages_lab(request.user, booking.machine.lab_id):
        raise Http404
    return booking


@login_required
@require_http_methods(["GET", "POST"])
def cancel(request, pk: int):
    booking = _own_or_managed(request, pk)
    is_member = booking.member_id == request.user.pk
    next_url = _next_url(request, reverse("booking:mine"))
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


#: Booking states whose machine is worth watching live.


def _at(moment, now) -> str:
    """``moment`` in the active (lab) time zone: its time alone when it falls on today, else date and time."""
    local = timezone.localtime(moment)
    if local.date() == timezone.localtime(now).date():
        return date_format(local, "TIME_FORMAT")
    return date_format(local, "DATETIME_FORMAT")


def status_sentence(booking: Booking, now) -> str:
    """Where the booking stands, in one translated sentence (times in the active time zone).

    Empty for a plain confirmed booking, whose status label says enough.
    """
    Status = Booking.Status
    if booking.status == Status.PENDING:
        return _("Awaiting a lab manager's approval.")
    if booking.status == Status.CONFIRMED and booking.unavailable:
        return _(
            "%(reason)s: this is not a no-show, and check-in stays open until the end of the booking."
        ) % {"reason": booking.get_unavailable_display()}
    if booking.status == Status.CONFIRMED:
        return ""  # the status badge says it all
    if booking.status == Status.CHECKED_IN:
        return _("Checked in at %(time)s (%(via)s).") % {
            "time": _at(booking.checked_in_at, now),
            "via": booking.get_check_in_via_display(),
        }
    if booking.status == Status.NO_SHOW:
        return _("No-show: nobody checked in, so the machine was released at %(time)s.") % {
            "time": _at(booking.released_at or lifecycle.no_show_deadline(booking), now)
        }
    if booking.status == Status.COMPLETED:
        return _("Completed at %(time)s.") % {"time": _at(booking.completed_at or booking.end, now)}
    return str(booking.get_cancel_reason_display()) if booking.cancel_reason else _("Cancelled.")


def check_in_state(booking: Booking, now) -> tuple[bool, str]:
    """``(open, note)``: whether the check-in button shows now, and what to say when it does not.

    The button shows for a confirmed member booking from :func:`~fablab.booking.lifecycle.check_in_opens`
    until :func:`~fablab.booking.lifecycle.check_in_closes`; the note says when
    check-in opens or why it is closed. Nothing to say (``""``) once the booking is checked in or over:
    the status sentence says it.
    """
    if not booking.is_member_booking:
        return False, _("%(kind)s: no check-in needed.") % {"kind": booking.get_kind_display()}
    if booking.status == Booking.Status.PENDING:
        return False, _("Check-in opens once a lab manager approves this booking.")
    if booking.status != Booking.Status.CONFIRMED:
        return False, ""
    opens, closes = lifecycle.check_in_opens(booking), lifecycle.check_in_closes(booking)
    if now < opens:
        return False, _("Check-in opens at %(time)s.") % {"time": _at(opens, now)}
    if now >= closes:
        return False, _("Check-in closed at %(time)s.") % {"time": _at(closes, now)}
    deadline = {"time": _at(closes, now)}
    if booking.unavailable:
        return True, _("Check in by %(time)s.") % deadline
    return True, _("Check in by %(time)s, or the machine is released for others.") % deadline


def usage_facts(booking: Booking) -> list[tuple[str, str]] | None:
    """The usage attributed to the booking from the machine's sessions, as (label, value); None before any."""
    if not (
        booking.used_minutes
        or booking.overrun_minutes
        or booking.energy_wh is not None
        or booking.job_outcome
    ):
        return None
    facts = [(_("Time used"), _minutes(booking.used_minutes))]
    if booking.overrun_minutes:
        facts.append((_("Past the end"), _minutes(booking.overrun_minutes)))
    if booking.energy_wh is not None:
        facts.append((_("Energy"), _energy(booking.energy_wh)))
    if booking.job_outcome:
        facts.append((_("Job outcome"), str(JOB_OUTCOMES.get(booking.job_outcome, booking.job_outcome))))
    return facts


#: The outcomes the machine's sessions report (``devices.models.UsageSession.Outcome``), in words.
JOB_OUTCOMES = {
    "running": gettext_lazy("Running"),
    "finished": gettext_lazy("Finished"),
    "failed": gettext_lazy("Failed"),
    "cancelled": gettext_lazy("Cancelled"),
    "interrupted": gettext_lazy("Interrupted"),
}


def _minutes(value: float) -> str:
    count = round(value)
    return ngettext("%(count)s minute", "%(count)s minutes", count) % {"count": count}


def _energy(wh: float) -> str:
    if wh >= 1000:
        return _("%(kwh)s kWh") % {"kwh": number_format(wh / 1000, 2)}
    return _("%(wh)s Wh") % {"wh": number_format(wh, 0)}


def live_strings() -> dict[str, object]:
    """Everything booking_live.js writes, translated here.

    The machine states use the floor board's own msgids, so they read the same on both pages.
    """
    return {
        "states": {
            "offline": _("Offline"),
            "idle": _("Idle"),
            "running": _("Running"),
            "paused": _("Paused"),
            "error": _("Error"),
        },
        "enabled": _("Enabled"),
        "locked": _("Locked"),
        "unknown": _("Unknown"),
        "starts_in": _("Starts in %(time)s"),
        "left": _("%(time)s left"),
        "ended": _("The booking has ended."),
        "hours_minutes": _("%(hours)s h %(minutes)s min"),
        "minutes": _("%(minutes)s min"),
        "reconnecting": _("Connection lost, reconnecting…"),
        "closed": _("Live updates are not available: please log in again."),
        "live": _("Live"),
    }


@login_required
def detail(request, pk: int, *, finish_form=None, status: int = 200):
    """One booking, phone first: its machine, times, status in words, check-in, usage and cancelling.

    Only its member and the managers of its lab may open it (404 for anyone else). Everything but
    the live machine state is rendered here and works without JavaScript.

    The live machine state (idle/running/…, enabled or locked, time left) comes from the lab's
    WebSocket feed, read in the browser by ``booking/booking_live.js``: that feed already decides
    what each viewer may see (a maker sees their own machine, never another member's name) and
    pushes every change, while this app must not import ``devices``. A second view of the same
    status in ``devices`` would duplicate those rights and still need the socket to stay live.
    """
    booking = _own_or_managed(request, pk)
    lab = booking.machine.lab
    now = timezone.now()
    with timezone.override(lab.tz):
        can_check_in, check_in_note = check_in_state(booking, now)
        context = {
            "booking": booking,
            "machine": booking.machine,
            "lab": lab,
            "now": now,
            "is_member": booking.member_id == request.user.pk,
            "status_sentence": status_sentence(booking, now),
            "can_check_in": can_check_in,
            "check_in_note": check_in_note,
            "can_cancel": booking.is_cancellable and booking.start > now,
            "can_cancel_series": booking.series_id is not None
            and booking.kind == Booking.Kind.MEMBER
            and booking.is_cancellable
            and booking.start > now,
            "usage": usage_facts(booking),
            "live": booking.status in Booking.HOLDING and booking.end > now,
            "can_finish": booking.status == Booking.Status.CHECKED_IN,
            "finish_effect": lifecycle.finish_effect(booking.machine),
            "finish_form": finish_form or FinishForm(auto_id="finish_%s"),
            "live_config": {
                "ws_path": f"/ws/labs/{lab.slug}/",
                "machine": booking.machine.slug,
                "start": booking.start.isoformat(),
                "end": booking.end.isoformat(),
                "status": booking.status,
                "status_url": reverse("api:booking", args=[booking.pk]),
                "opens": lifecycle.check_in_opens(booking).isoformat(),
                "closes": lifecycle.check_in_closes(booking).isoformat(),
                "strings": live_strings(),
            },
        }
        return render(request, "booking/booking_detail.html", context, status=status)


@login_required
@require_POST
def check_in(request, pk: int):
    """Check the booking in (its member: ``via="page"``; a manager for someone else: ``"manager"``).

    The answer is a redirect to ``next`` (when it stays on this site) or the booking's page, with a
    message: done, or the rule that refused it.
    """
    booking = _own_or_managed(request, pk)
    via = Booking.CheckInVia.PAGE if booking.member_id == request.user.pk else Booking.CheckInVia.MANAGER
    try:
        lifecycle.check_in(booking=booking, by=request.user, via=via)
    except BookingError as exc:
        messages.error(request, exc.detail)
    else:
        messages.success(request, _("Checked in. Enjoy the machine!"))
    return redirect(_next_url(request, reverse("booking:detail", args=[booking.pk])))


@login_required
@require_POST
def finish(request, pk: int):
    """Finish the checked-in booking early ("I'm done"), with an optional one-line fault report.

    Its member (``via="page"``) or a manager of its lab (``"manager"``); anyone else gets 404. A fault
    line that is too long shows the booking page again with the line as typed and the error (400):
    nothing typed is lost. Otherwise a redirect to ``next`` or the booking's page, with a message.
    """
    booking = _own_or_managed(request, pk)
    form = FinishForm(request.POST, auto_id="finish_%s")
    if not form.is_valid():
        return detail(request, pk, finish_form=form, status=400)
    via = Booking.CheckInVia.PAGE if booking.member_id == request.user.pk else Booking.CheckInVia.MANAGER
    fault = form.cleaned_data["fault"]
    try:
        lifecycle.finish(booking=booking, by=request.user, via=via, fault=fault)
    except BookingError as exc:
        messages.error(request, exc.detail)
    else:
        messages.success(request, _("Done. The rest of the booking is free for other makers again."))
        if fault:
            messages.info(request, _("Thank you for reporting the fault: the lab's managers have been told."))
    return redirect(_next_url(request, reverse("booking:detail", args=[booking.pk])))
