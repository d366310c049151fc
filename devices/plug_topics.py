"""The power plugs' own topics: what the broker grants each plug and its bridge, and overlaps.

Contract: :func:`plug_rules` gives a plug's broker rules (the facts are the MQTT
contract's, :func:`firmware_bridge.protocol.plug_acl`); :func:`plug_overlap` finds
the first plug — or the contract's own filter — whose topics overlap a plug's;
:func:`plug_topic_conflict` says why a plug may not use a topic (for
:meth:`devices.models.PowerPlug.clean`). No queries here: the caller passes the
other plugs, so the models can use this without importing :mod:`devices.mqtt_auth`.

Called by :mod:`devices.models` and :mod:`devices.mqtt_auth`. Imports
:mod:`devices.mqtt_names` and the MQTT contract only.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from firmware_bridge import protocol

from .mqtt_names import filters_overlap, topic_problem

Rule = tuple[str, str]  # (access, topic filter): access is read, write or readwrite


def is_plug_kind(kind: str) -> bool:
    return kind in protocol.PLUG_KINDS


def plug_rules(kind: str, topic: str) -> tuple[list[Rule], list[Rule]]:
    """(rules for the plug itself, rules for the bridge that talks to it)."""
    return protocol.plug_acl(kind, topic)


def plug_filters(kind: str, topic: str) -> list[str]:
    """Every topic filter the ACL grants for a plug, to the plug or to its bridge."""
    plug, bridge = plug_rules(kind, topic)
    return sorted({topic_filter for _access, topic_filter in plug + bridge})


def plug_overlap(kind: str, topic: str, others: Iterable[Any]) -> Any | str | None:
    """The contract's filter (a str) or the first of ``others`` (plugs) whose topics overlap this plug's."""
    mine = plug_filters(kind, topic)
    everything = protocol.filter_everything()
    if any(filters_overlap(f, everything) for f in mine):
        return everything
    for other in others:
        if not is_plug_kind(other.kind) or topic_problem(other.topic):
            continue  # reported on its own row
        theirs = plug_filters(other.kind, other.topic)
        if any(filters_overlap(a, b) for a in mine for b in theirs):
            return other
    return None


def plug_topic_conflict(kind: str, topic: str, others: Iterable[Any]) -> ValidationError | None:
    """Why a plug of ``kind`` may not use ``topic`` beside the plugs ``others`` (each with its machine), or None."""
    if not is_plug_kind(kind):
        return None  # the field's choices report it
    conflict = plug_overlap(kind, topic, others)
    if isinstance(conflict, str):
        return ValidationError(
            _("These topics overlap the platform's own topics (%(filter)s)."),
            code="plug_topic_contract",
            params={"filter": conflict},
        )
    if conflict is not None:
        return ValidationError(
            _(
                "These topics overlap those of the power plug of %(machine)s: each plug needs topics of its own."
            ),
            code="plug_topic_overlap",
            params={"machine": conflict.machine.name},
        )
    return None
