"""Commands to machines: written as rows by whoever issues them, published by the hub, answered by acks.

Contract: :func:`issue_command` validates the action, writes the
:class:`~devices.models.Command` row (``pending``: who or what issued it, for
which booking, until when), tells the lab's board and wakes the hub through the
channel layer (best effort: the hub also polls, so a lost wake-up only delays the
command by the poll interval). It never talks to the broker: the web process holds
no MQTT credentials. The hub's :mod:`devices.command_publisher` claims the row,
publishes it on the hub's own connection and marks it ``published``.

:func:`apply_cmd_ack` records a bridge's answer once (only a command still "sent"
or "no answer" changes). :func:`expire_commands` ends commands whose time ran out:
never published → failed with ``expired`` (never sent afterwards); published but
never answered well past their expiry → "no answer". Every outcome is pushed to
the lab's board (best effort).

Called by the pages and the API (:mod:`devices.views`, :mod:`devices.api`: issue)
and by the hub (:mod:`devices.hub`, :mod:`devices.command_publisher`: acks,
expiry). Imports :mod:`devices.live`, never an MQTT client.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from devices import capabilities, live
from devices.machines import MachineInfo
from devices.models import Command
from fablab.labs.models import Machine
from firmware_bridge import protocol

log = logging.getLogger(__name__)

#: How long a command may wait for its machine (the message expires on the broker after it too).
COMMAND_TTL_S = 30
#: A command not acknowledged within this long after it expired is marked "no answer".
COMMAND_GRACE_S = 10
#: The channel-layer group every hub's command publisher listens on.
HUB_GROUP = "hub.commands"
#: The channel-layer message that wakes them.
WAKE_MESSAGE = {"type": "hub.wake"}
#: Sources that need a member in ``issued_by``.
_MEMBER_SOURCES = {Command.Source.MEMBER}

UNSENT_STATES = (Command.State.PENDING, Command.State.CLAIMED)


def push_command(command: Command) -> None:
    """Tell the lab's board what came of a command (best effort, like every push)."""
    try:
        live.push_command(command)
    except Exception:
        log.exception("push of command %s failed", command.id)


def wake_hub() -> None:
    """Wake the hubs' command publishers now (best effort: their poll finds the row anyway).

    With the in-memory channel layer (no ``REDIS_URL``) this reaches only the
    current process, so a hub in another process finds the row by polling.
    """
    try:
        live.group_send(HUB_GROUP, dict(WAKE_MESSAGE))
    except Exception as exc:
        log.warning("could not wake the hub (it polls for commands anyway): %s", exc)


def issue_command(
    *,
    machine: Machine,
    action: str,
    issued_by: Any = None,
    booking: Any = None,
    source: str | None = None,
    ttl_s: int = COMMAND_TTL_S,
) -> Command:
    """Write a ``pending`` command for the hub to publish, and return it.

    ``source`` defaults to ``member`` when ``issued_by`` is given, else ``system``;
    a member command needs ``issued_by``. ``booking``, when given, must be a booking
    of ``machine`` (it travels in the command's payload). Raises ValueError for an
    action outside the contract's (``protocol.ACTIONS``) or an inconsistent source or
    booking, and :class:`devices.capabilities.CommandRefused` (a ValueError with a translated
    reason) for an action the machine does not offer; nothing is written then. Permissions are
    the caller's business.
    """
    if action not in protocol.ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    # One rule for every caller: an action the machine does not offer is refused here, never written
    # (CommandRefused, a ValueError whose message is translated for the user).
    capabilities.check(machine, action)
    if source is None:
        source = Command.Source.MEMBER if issued_by is not None else Command.Source.SYSTEM
    if source not in Command.Source.values:
        raise ValueError(f"unknown command source {source!r}")
    if source in _MEMBER_SOURCES and issued_by is None:
        raise ValueError("a member's command needs issued_by")
    if booking is not None and booking.machine_id != machine.pk:
        raise ValueError("the booking is not a booking of this machine")
    if ttl_s <= 0:
        raise ValueError("ttl_s must be positive")
    issued = timezone.now()
    command = Command.objects.create(
        machine=machine,
        action=action,
        source=source,
        issued_by=issued_by,
        booking=booking,
        issued_at=issued,
        expires_at=issued + timedelta(seconds=ttl_s),
    )
    # After the commit: a hub woken earlier would not see the row yet.
    transaction.on_commit(wake_hub)
    # Other managers watching the board see it go out.
    push_command(command)
    return command


def apply_cmd_ack(info: MachineInfo, msg: protocol.CommandAck) -> Command | None:
    """Record a bridge's answer to a command (once: only a command still "sent" is updated)."""
    try:
        command_id = uuid.UUID(str(msg.id))
    except ValueError:
        return None
    error_code = msg.error.code[:20] if msg.error else ""
    error_message = msg.error.message[:500] if msg.error else ""
    now = timezone.now()
    # The machine's answer is the truth: it also replaces the hub's own guesses, "no answer" and
    # "expired before the hub could send it" (a hub may give up on a row another hub is just
    # publishing; the bridge may still get it in time and carry it out).
    guessed = Q(result__in=[Command.Result.SENT, Command.Result.NO_ANSWER]) | Q(
        state=Command.State.EXPIRED, error_code=protocol.EXPIRED
    )
    done = Command.objects.filter(guessed, pk=command_id, machine_id=info.id).update(
        result=Command.Result.OK if msg.ok else Command.Result.FAILED,
        error_code=error_code,
        error_message=error_message,
        answered_at=now,
    )
    if not done:
        return None
    # The bridge has it, so it was published, even if the hub that sent it died before noting so.
    Command.objects.filter(pk=command_id, state__in=(*UNSENT_STATES, Command.State.EXPIRED)).update(
        state=Command.State.PUBLISHED, published_at=now
    )
    command = Command.objects.select_related("machine__lab", "issued_by").get(pk=command_id)
    push_command(command)
    return command


def expire_unsent(command_id: uuid.UUID, now: datetime | None = None) -> bool:
    """End a command no hub published before it expired: failed, ``expired``; never sent after this.

    Conditional: only a row still unsent and unanswered changes. True if this call ended it.
    """
    now = now or timezone.now()
    return _end_unsent(
        command_id,
        now,
        code=protocol.EXPIRED,
        message="expired before the hub could send it",
        expired_by=now,
    )


def refuse_unsent(command_id: uuid.UUID, message: str) -> bool:
    """End a command the hub cannot publish at all (its topic or payload breaks the contract, e.g.
    a machine renamed to a slug the contract refuses): failed, ``invalid``; never sent after this."""
    return _end_unsent(command_id, timezone.now(), code=protocol.INVALID, message=message[:500])


def _end_unsent(
    command_id: uuid.UUID, now: datetime, *, code: str, message: str, expired_by: datetime | None = None
) -> bool:
    rows = Command.objects.filter(pk=command_id, state__in=UNSENT_STATES, result=Command.Result.SENT)
    if expired_by is not None:
        rows = rows.filter(expires_at__lte=expired_by)
    done = rows.update(
        state=Command.State.EXPIRED,
        result=Command.Result.FAILED,
        error_code=code,
        error_message=message,
        answered_at=now,
    )
    if done:
        push_command(Command.objects.select_related("machine__lab", "issued_by").get(pk=command_id))
    return bool(done)


def expire_commands(now: datetime | None = None) -> int:
    """End the commands whose time ran out; returns how many changed (conditional UPDATEs).

    Unsent ones (no hub published them in time) fail with ``expired``; published ones
    never answered, well past their expiry, become "no answer".
    """
    now = now or timezone.now()
    unsent = Command.objects.filter(
        state__in=UNSENT_STATES, result=Command.Result.SENT, expires_at__lte=now
    ).values_list("pk", flat=True)[:500]
    expired = sum(expire_unsent(pk, now) for pk in list(unsent))
    return expired + Command.objects.filter(
        state=Command.State.PUBLISHED,
        result=Command.Result.SENT,
        expires_at__lt=now - timedelta(seconds=COMMAND_GRACE_S),
    ).update(result=Command.Result.NO_ANSWER, answered_at=now)
