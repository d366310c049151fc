"""The power plugs' own MQTT topics, as their firmware spells them: facts, no parsing.

The plug adapters (:mod:`.tasmota`, :mod:`.shelly`) and the plug simulator
(:mod:`firmware_bridge.simulators.plug`) both build their topics here and nothing else is shared
between them: each reads and writes the payloads with its own code, so a payload bug cannot hide on
both sides of a test. The broker rules derived from these topics are in
:func:`firmware_bridge.protocol.plug_acl`.

Sources: Tasmota's MQTT documentation (``FullTopic`` ``%prefix%/%topic%/`` with the prefixes
``cmnd``, ``stat`` and ``tele``), Shelly's Gen2 MQTT documentation (``<prefix>/online``,
``<prefix>/status/switch:0``, ``<prefix>/events/rpc``, JSON-RPC on ``<prefix>/rpc`` answered on
``<src>/rpc``) and Shelly's Gen1 API (``shellies/<model>-<id>/relay/0`` and its ``power``,
``energy`` and ``command`` subtopics).
"""

from __future__ import annotations

# --- Tasmota: <prefix>/<%topic%>/<command> ------------------------------------------------------------

#: Commands the device obeys (``cmnd/<topic>/POWER``).
TASMOTA_CMND = "cmnd"
#: Answers to commands (``stat/<topic>/RESULT``, ``…/POWER``, ``…/STATUS10``).
TASMOTA_STAT = "stat"
#: Telemetry and the Last Will (``tele/<topic>/SENSOR``, ``…/STATE``, ``…/LWT``).
TASMOTA_TELE = "tele"


def tasmota(prefix: str, topic: str, command: str) -> str:
    """A Tasmota topic: ``tasmota("stat", "plug_1", "POWER")`` is ``stat/plug_1/POWER``."""
    return f"{prefix}/{topic}/{command}"


# --- Shelly: <topic prefix>/<subtopic> ----------------------------------------------------------------

#: Gen2 and Gen1: ``true``/``false`` (Gen1 also the Last Will).
SHELLY_ONLINE = "online"
#: Gen2: the switch component's key in status objects and notifications.
SHELLY_SWITCH = "switch:0"
#: Gen2: the full status of the switch, on every change and periodically.
SHELLY_STATUS_SWITCH = f"status/{SHELLY_SWITCH}"
#: Gen2: ``NotifyStatus`` frames (changed keys only) and events.
SHELLY_EVENTS_RPC = "events/rpc"
#: Gen2: JSON-RPC requests to the device; replies go to ``<src>/rpc``.
SHELLY_RPC = "rpc"
#: Gen1: the relay state ``on``/``off``.
SHELLY1_RELAY = "relay/0"
#: Gen1: the power in W.
SHELLY1_RELAY_POWER = "relay/0/power"
#: Gen1: the energy counter in watt-minutes.
SHELLY1_RELAY_ENERGY = "relay/0/energy"
#: Gen1: ``on``/``off``/``toggle`` to the relay.
SHELLY1_RELAY_COMMAND = "relay/0/command"
#: Gen1: device commands (``update`` asks for every value at once).
SHELLY1_COMMAND = "command"


def shelly(prefix: str, subtopic: str) -> str:
    """A Shelly topic: ``shelly("shellyplus1pm-1", SHELLY_RPC)`` is ``shellyplus1pm-1/rpc``."""
    return f"{prefix}/{subtopic}"
