"""The live floor board, a machine's live page with its telemetry charts, and remote commands.

Thin views: what a card shows comes from :mod:`devices.board`, commands go
through :func:`devices.commands.issue_command` (rows the hub publishes), telemetry comes from the hub's
store (:class:`devices.influx.InfluxStore`).
"""

from __future__ import annotations

import datetime as dt
import logging

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from django.views.decorators.http import require_POST

from fablab.labs.models import Lab, Machine
from fablab.members import roles

from . import board, capabilities, charts, commands
from .live import command_frame
from .models import STATE_CHOICES, Alert, Command

logger = logging.getLogger(__name__)

#: The remote commands, in the order the buttons show them.
ACTIONS = {
    "pause": gettext_lazy("Pause"),
    "resume": gettext_lazy("Resume"),
    "cancel": gettext_lazy("Cancel job"),
    "enable": gettext_lazy("Enable"),
    "disable": gettext_lazy("Disable"),
}
#: Actions that stop someone's work: the browser asks before sending them.
CONFIRM = {"cancel", "disable"}
#: The periods a machine page's charts may show, in minutes.
PERIODS = (15, 60, 180, 1440)
DEFAULT_MINUTES = 60
AUDIT_ROWS = 50


def _client_strings() -> dict[str, object]:
    """Everything board.js writes on the page, translated here (no JavaScript catalogue needed)."""
    from django.utils.formats import get_format

    return {
        "states": {key: str(label) for key, label in _state_labels().items()},
        "readings": {key: charts.label(key) for key in charts.LABELS},
        "units": {name: charts.unit_of(name)[0] for name in charts.LABELS},
        "actions": {key: str(value) for key, value in ACTIONS.items()},
        "results": {key: str(label) for key, label in Command.Result.choices},
        "alerts": {key: str(label) for key, label in Alert.Kind.choices},
        "confirm": {
            "cancel": _("Cancel the job running on %(machine)s?"),
            "disable": _("Disable %(machine)s? Whoever is using it will be stopped."),
        },
        "booked": _("Booked"),
        "you": _("You"),
        "pending": _("awaiting approval"),
        "free": _("Free"),
        "none": _("None"),
        "since": _("since %(time)s"),
        "until": _("until %(time)s"),
        "next": _("Next booking"),
        "now": _("Current booking"),
        "job": _("Job"),
        "hidden_job": _("a job"),
        "progress": _("%(pct)s %% done"),
        "sending": _("Sending %(action)s…"),
        "sent": _("%(action)s sent, waiting for the machine…"),
        "done": _("%(action)s: done."),
        "refused": _("%(action)s refused: %(message)s"),
        "no_answer": _("%(action)s: the machine did not answer."),
        "failed_to_send": _("%(action)s could not be sent: %(message)s"),
        "ack_codes": capabilities.ack_strings(),
        "live": _("Live"),
        "reconnecting": _("Connection lost, reconnecting…"),
        "closed": _("Live updates are not available: please log in again."),
        "offline": _("offline"),
        "disabled": _("Disabled"),
        "decimal_separator": get_format("DECIMAL_SEPARATOR"),
        "booking": board.client_strings(),
    }


def _state_labels() -> dict[str, object]:
    return dict(STATE_CHOICES)


def _ws_path(lab: Lab) -> str:
    return f"/ws/labs/{lab.slug}/"


def lab_states(request, lab):
    """``{"machines": {<slug>: <state>}, "labels": {<state>: <label>}}``: the lab page's live states.

    Public (the lab page is): state words only, no names, no jobs, no alerts.
    """
    lab = get_object_or_404(Lab, slug=lab)
    return JsonResponse(
        {"machines": board.public_states(lab), "labels": {k: str(v) for k, v in STATE_CHOICES}}
    )


@login_required
def lab_board(request, lab):
    lab = get_object_or_404(Lab, slug=lab)
    viewer = board.viewer_for(request.user, lab)
    cards = board.lab_cards(lab, viewer)
    context = {
        "lab": lab,
        "cards": cards,
        "manager": viewer.manager,
        "actions": ACTIONS.items(),
        "states": STATE_CHOICES,
        "confirm": CONFIRM,
        "ws_path": _ws_path(lab),
        "client": _client_strings(),
        "time_zone": str(lab.tz),
    }
    with timezone.override(lab.tz):
        return render(request, "devices/board.html", context)


#: About this many points per series on a chart, whatever the period.
CHART_POINTS = 300


def telemetry_series(machine: Machine, start: dt.datetime, end: dt.datetime) -> dict[str, list]:
    """``{field: [(epoch ms, mean), ...]}`` of the machine from ``start`` to ``end``, from the hub's store.

    The query is the store's (:meth:`devices.influx.InfluxStore.chart_series`, about
    :data:`CHART_POINTS` averaged points a series). Raises :class:`LookupError` when no
    store is configured, anything else when the store does not answer.
    """
    try:
        from .influx import InfluxStore
    except ImportError as exc:
        raise LookupError("no telemetry store") from exc
    try:
        store = InfluxStore.from_settings()
    except ValueError as exc:  # a missing database name or v2 settings
        raise LookupError(str(exc)) from exc
    try:
        return store.chart_series(machine.lab.slug, machine.slug, start, end, points=CHART_POINTS)
    finally:
        store.close()


def _telemetry(
    machine: Machine, start: dt.datetime, end: dt.datetime, live: dict
) -> tuple[list[charts.Chart], str, bool]:
    """``(charts, note, store answered)``: the machine's charts, or none and a sentence why.

    ``live``: the machine's live readings (the card's numbers), the legend's "now".
    """
    try:
        series = telemetry_series(machine, start, end)
    except LookupError:
        return [], _("No telemetry store is configured, so there are no charts."), False
    except Exception:
        # The charts are a convenience: a store that is down must not take the page with it.
        logger.warning(
            "telemetry store query failed for %s/%s", machine.lab.slug, machine.slug, exc_info=True
        )
        return [], _("The telemetry store did not answer; the charts will be back when it does."), False
    built = charts.build_charts(series, now=live)
    if not built:
        return [], _("No telemetry in this period."), True
    return built, "", True


def _period(request) -> int:
    """The chosen period in minutes (``?minutes=``; the old ``?hours=`` links still work)."""
    raw = request.GET.get("minutes")
    factor = 1
    if raw is None and "hours" in request.GET:
        raw, factor = request.GET["hours"], 60
    try:
        minutes = int(raw) * factor if raw is not None else DEFAULT_MINUTES
    except ValueError:
        return DEFAULT_MINUTES
    return minutes if minutes in PERIODS else DEFAULT_MINUTES


def _period_choices(current: int) -> list[dict[str, object]]:
    """The period links: minutes, their label and whether it is the one shown."""
    out = []
    for minutes in PERIODS:
        if minutes < 60:
            text = ngettext("Last minute", "Last %(counter)s minutes", minutes) % {"counter": minutes}
        else:
            hours = minutes // 60
            # The same msgids as the template's former {% blocktranslate count %}.
            text = ngettext("Last hour", "Last %(counter)s hours", hours) % {"counter": hours}
        out.append({"minutes": minutes, "label": text, "current": minutes == current})
    return out


def _chart_client(
    chart_list: list[charts.Chart], live: dict, minutes: int, lab: Lab, *, store_ok: bool
) -> dict[str, object]:
    """What charts.js needs: the charts, the vocabulary for live series, the translated strings.

    ``live`` (charts.js may start charts from the live frames) is off when the store did not answer:
    a page that says there are no charts must not grow some.
    """
    return {
        "live": store_ok,
        "charts": [c.to_json() for c in chart_list],
        "names": charts.vocabulary(list(live)),
        "period_ms": minutes * 60_000,
        "time_zone": str(lab.tz),
        "palette": charts.PALETTE,
        "strings": {
            # The same msgid as charts.legend_text: one translation for the server's text and the live one.
            "legend": _("now %(last)s %(unit)s (lowest %(low)s, highest %(high)s)"),
        },
    }


@login_required
def machine_live(request, lab, machine, *, care_forms=None):
    """The machine's card, charts and, for its lab's managers, commands and care.

    ``care_forms``: the care section's forms as typed (:mod:`devices.care_views` renders the page again
    with their errors).
    """
    machine = get_object_or_404(
        Machine.objects.select_related("lab", "machine_type"), lab__slug=lab, slug=machine
    )
    lab = machine.lab
    viewer = board.viewer_for(request.user, lab)
    minutes = _period(request)
    end = timezone.now()
    start = end - dt.timedelta(minutes=minutes)
    with timezone.override(lab.tz):
        card = board.machine_card(machine, viewer)
        live = card["readings"] if isinstance(card.get("readings"), dict) else {}
        chart_list, telemetry_note, store_ok = _telemetry(machine, start, end, live)
        audit = []
        if viewer.manager:
            audit = list(Command.objects.filter(machine=machine).select_related("issued_by")[:AUDIT_ROWS])
            for command in audit:
                command.action_label = ACTIONS.get(command.action, command.action)
        care_section = care_context(machine, end, care_forms or {}) if viewer.manager else None
        context = {
            "care": care_section,
            "lab": lab,
            "machine": machine,
            "cards": [card],
            "manager": viewer.manager,
            "actions": ACTIONS.items(),
            "states": STATE_CHOICES,
            "confirm": CONFIRM,
            "charts": chart_list,
            "chart_client": _chart_client(chart_list, live, minutes, lab, store_ok=store_ok),
            "telemetry_note": telemetry_note,
            "minutes": minutes,
            "periods": _period_choices(minutes),
            "commands": audit,
            "ws_path": _ws_path(lab),
            "client": _client_strings(),
            "time_zone": str(lab.tz),
        }
        return render(request, "devices/machine_live.html", context)


def care_context(machine: Machine, now: dt.datetime, forms: dict) -> dict:
    """The care section (:func:`devices.care.summary`) with its forms; ``forms`` as typed, if any."""
    from . import care, care_forms

    section = care.summary(machine, now)
    service_pk, service_form = forms.get("service", (None, None))
    for s in section["statuses"]:
        s_form = service_form if s.interval.pk == service_pk else care_forms.ServiceForm()
        s.interval.service_form = s_form
    section["add_form"] = forms.get("add") or care_forms.IntervalForm(machine=machine)
    return section


def _wants_json(request) -> bool:
    return "application/json" in request.headers.get("Accept", "")


@login_required
@require_POST
def machine_command(request, lab, machine):
    """A lab manager sends ``action`` to the machine; the outcome arrives later on the board."""
    machine = get_object_or_404(Machine.objects.select_related("lab"), lab__slug=lab, slug=machine)
    if not roles.manages_lab(request.user, machine.lab_id):
        raise PermissionDenied(_("Only the lab's managers may send commands to its machines."))
    action = request.POST.get("action", "")
    back = request.POST.get("next") or reverse("devices:machine", args=[machine.lab.slug, machine.slug])
    if not back.startswith("/") or back.startswith("//"):
        back = reverse("devices:machine", args=[machine.lab.slug, machine.slug])
    if action not in ACTIONS:
        message = _("Unknown command.")
        if _wants_json(request):
            return JsonResponse({"error": {"code": "invalid", "message": message}}, status=400)
        messages.error(request, message)
        return redirect(back)
    # A row for the hub to publish: this process never speaks MQTT (it holds no broker credentials).
    try:
        command = commands.issue_command(machine=machine, action=action, issued_by=request.user)
    except capabilities.CommandRefused as refused:  # nothing written: the machine cannot do it
        if _wants_json(request):
            return JsonResponse({"error": {"code": refused.code, "message": refused.message}}, status=409)
        messages.error(request, refused.message)
        return redirect(back)
    if _wants_json(request):
        return JsonResponse(command_frame(command), status=202)
    messages.success(
        request,
        _("%(action)s sent to %(machine)s; its answer shows on this page.")
        % {"action": ACTIONS[action], "machine": machine.name},
    )
    return redirect(back)
