"""Commands to machines: published on the machine's ``cmd`` topic, audited as rows, answered by acks.

Contract: :func:`send_command` writes the :class:`~devices.models.Command` row first
(who, when, what, until when), then publishes it (QoS 1, expiring); a broker that
cannot be reached marks it failed with the reason. :func:`apply_cmd_ack` records a
bridge's answer once (only a command still "sent" or "no answer" changes), and
:func:`expire_commands` marks commands never answered well past their expiry.
Every outcome is pushed to the lab's board (best effort).

Called by the pages (:mod:`devices.views`: send) and by the hub (:mod:`devices.hub`:
acks, expiry). Imports :mod:`devices.mqtt_client` and :mod:`devices.live`.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from devices import live
from devices.machines import MachineInfo, dt_to_ms
from devices.models import Command
from devices.mqtt_client import publish_once
from fablab.labs.models import Machine
from firmware_bridge import protocol

log = logging.getLogger(__name__)

#: How long a command may wait for its machine (the message expires on the broker after it too).
COMMAND_TTL_S = 30
#: A command not acknowledged within this long after it expired is marked "no answer".
COMMAND_GRACE_S = 10


def push_command(command: Command) -> None:
    """Tell the lab's board what came of a command (best effort, like every push)."""
    try:
        live.push_command(command)
    except Exception:
        log.exception("push of command %s failed", command.id)


def apply_cmd_ack(info: MachineInfo, msg: protocol.CommandAck) -> Command | None:
    """Record a bridge's answer to a command (once: only a command still "sent" is updated)."""
    try:
        command_id = uuid.UUID(str(msg.id))
    except ValueError:
        return None
    error_code = msg.error.code[:20] if msg.error else ""
    error_message = msg.error.message[:500] if msg.error else ""
    now = timezone.now()
    done = Command.objects.filter(
        pk=command_id, machine_id=info.id, result__in=[Command.Result.SENT, Command.Result.NO_ANSWER]
    ).update(
        result=Command.Result.OK if msg.ok else Command.Result.FAILED,
        error_code=error_code,
        error_message=error_message,
        answered_at=now,
    )
    if not done:
        return None
    command = Command.objects.select_related("machine__lab").get(pk=command_id)
    push_command(command)
    return command


def expire_commands(now: datetime | None = None) -> int:
    """Commands never answered, well past their expiry: "no answer" (conditional UPDATE)."""
    now = now or timezone.now()
    return Command.objects.filter(
        result=Command.Result.SENT, expires_at__lt=now - timedelta(seconds=COMMAND_GRACE_S)
    ).update(result=Command.Result.NO_ANSWER, answered_at=now)


def send_command(
    machine: Machine, action: str, user: Any, *, booking: Any = None, ttl_s: int = COMMAND_TTL_S
) -> Command:
    """Publish ``action`` on the machine's ``cmd`` topic (QoS 1, expiring) and audit it as a Command.

    The row is written first (who, when, what); if the broker cannot be reached
    the command is marked failed with the reason. The bridge's ack arrives
    through the hub (:func:`apply_cmd_ack`).
    """
    if action not in protocol.ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    issued = timezone.now()
    command = Command.objects.create(
        machine=machine,
        action=action,
        issued_by=user,
        issued_at=issued,
        expires_at=issued + timedelta(seconds=ttl_s),
    )
    payload = protocol.encode(
        protocol.Command(
            id=str(command.id),
            action=action,
            ts=dt_to_ms(issued),
            expires=dt_to_ms(command.expires_at),
            booking=getattr(booking, "pk", booking),
        )
    )
    try:
        publish_once(
            settings.MQTT_URL, protocol.topic_cmd(machine.lab.slug, machine.slug), payload, expiry_s=ttl_s
        )
    except Exception as exc:
        log.warning("command %s to %s not published: %s", command.id, machine.slug, exc)
        Command.objects.filter(pk=command.pk, result=Command.Result.SENT).update(
            result=Command.Result.FAILED,
            error_code="broker",
            error_message=str(exc)[:500],
            answered_at=timezone.now(),
        )
        command.refresh_from_db()
    return command
