"""What each machine can be told to do, and why a command came to nothing, in the user's language.

Capabilities are the actions a machine's bridge declares in its status
(``status.capabilities``, stored in :attr:`devices.models.MachineStatus.capabilities`):
its adapter's job actions, plus ``enable``/``disable`` when the machine is
configured with an interlock. :func:`offered` is the one rule the board, the
machine page, the pages' command view and the API follow; :func:`check` refuses
(:class:`CommandRefused`, with a translated reason) a command the machine cannot
carry out before anything is written, and :func:`devices.commands.issue_command`
calls it for every caller.

A bridge older than the field declares nothing (``None``). It then gets a
fallback (documented in ``hardware_docs/mqtt-contract.md``): the job actions its
adapter could do before the field existed (``protocol.LEGACY_CAPABILITIES``, none
for an adapter it does not list), and the interlock's actions when the machine's
link says *interlock* or the status reports ``enabled: false`` (only an
interlocked machine can be disabled). A lab manager thus keeps the Disable button
of an interlocked machine while its bridge is being upgraded, and is never offered
Pause on a plug-driven laser.

:data:`ACK_EXPLANATIONS` turns each ack code of the contract into a sentence the
user reads instead of the bridge's English message (lab managers also see that
message, as detail).

Imports only :mod:`devices.models` and the contract.
"""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy as _

from devices.models import MachineLink, MachineStatus
from firmware_bridge import protocol

#: Why a machine cannot be sent an action it does not offer, one full sentence per action.
REFUSALS = {
    protocol.PAUSE: _("%(machine)s cannot pause a job: its controller offers no pause."),
    protocol.RESUME: _("%(machine)s cannot resume a job: its controller offers no resume."),
    protocol.CANCEL: _("%(machine)s cannot cancel a job from here: its controller offers no cancel."),
    protocol.ENABLE: _("%(machine)s has no interlock: it cannot be enabled or disabled from here."),
    protocol.DISABLE: _("%(machine)s has no interlock: it cannot be enabled or disabled from here."),
}

#: What each ack code of the contract means to the person who sent the command. ``""`` is the
#: fallback for a code the contract does not know (a newer bridge's, or an old row's).
ACK_EXPLANATIONS = {
    protocol.EXPIRED: _("The command ran out of time before the machine got it; nothing was done."),
    protocol.UNSUPPORTED: _("The machine cannot do this: its controller offers no such command."),
    protocol.INVALID_STATE: _(
        "The machine cannot do this now (for instance, there is no job to pause, resume or cancel)."
    ),
    protocol.DEVICE_ERROR: _("The machine's controller failed or did not answer; check the machine."),
    protocol.INVALID: _("The lab's bridge could not read the command; nothing was done."),
    protocol.NOT_CONFIRMED: _(
        "The command was sent, but the machine did not confirm the change in time; check the machine."
    ),
    "": _("The machine refused the command."),
}


class CommandRefused(ValueError):
    """The machine cannot carry out this action; ``message`` says why in the active language.

    ``code`` is the contract's ``unsupported``: the same refusal the bridge would
    answer, given before anything is written or sent.
    """

    code = protocol.UNSUPPORTED

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def offered(status: MachineStatus | None, link: MachineLink | None = None) -> tuple[str, ...]:
    """The actions the machine carries out, in the contract's order (``protocol.ACTIONS``).

    What its bridge declared in the newest status; for a bridge that declared
    nothing (or a machine never heard from), the fallback of the module docstring,
    from the status's adapter (else the link's), the link's interlock and the
    status's ``enabled``. ``link`` matters only for that fallback.
    """
    declared = None if status is None else status.capabilities
    if isinstance(declared, list):
        return tuple(a for a in protocol.ACTIONS if a in declared)
    adapter = (status.adapter if status is not None else "") or (link.adapter if link is not None else "")
    interlock = (link is not None and link.interlock) or (status is not None and status.enabled is False)
    return protocol.machine_capabilities(protocol.LEGACY_CAPABILITIES.get(adapter, ()), interlock=interlock)


def offered_to(machine: Any) -> tuple[str, ...]:
    """:func:`offered` for a :class:`~fablab.labs.models.Machine`, read from the database."""
    status = MachineStatus.objects.filter(pk=machine.pk).first()
    declared = None if status is None else status.capabilities
    link = None if isinstance(declared, list) else MachineLink.objects.filter(machine_id=machine.pk).first()
    return offered(status, link)


def may_run(status: MachineStatus | None, action: str, link: MachineLink | None = None) -> bool:
    """True when ``action`` is one the machine offers (:func:`offered`); its state is the bridge's business."""
    return action in offered(status, link)


def refusal(machine: Any, action: str) -> str | None:
    """Why ``machine`` cannot be sent ``action``, translated; None when it can."""
    if action in offered_to(machine):
        return None
    text = REFUSALS.get(action, _("This command does not exist."))
    return str(text) % {"machine": machine.name}


def check(machine: Any, action: str) -> None:
    """Raise :class:`CommandRefused` (with the translated reason) unless ``machine`` offers ``action``."""
    reason = refusal(machine, action)
    if reason is not None:
        raise CommandRefused(reason)


def ack_explanation(code: Any) -> str:
    """The translated sentence for an ack code (or the fallback for a code the contract does not know)."""
    return str(ACK_EXPLANATIONS.get(code if isinstance(code, str) else "", ACK_EXPLANATIONS[""]))


def ack_strings() -> dict[str, str]:
    """Every ack explanation, translated, keyed by code: for the board's script (``""``: the fallback)."""
    return {code: str(text) for code, text in ACK_EXPLANATIONS.items()}
