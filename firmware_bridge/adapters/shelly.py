"""Adapter for a machine behind a Shelly power-monitoring plug or relay (Gen2+ and Gen1).

Option ``gen`` (default 2) picks the API; ``prefix`` is the plug's topic prefix.

**Gen2 / Plus / Pro / Gen3** (``prefix`` = the device's MQTT ``topic_prefix``,
by default its id such as ``shellyplusplugs-a8032ab12345``). The device must
have *Generic status update over MQTT* (``status_ntf``) and *RPC status
notifications over MQTT* (``rpc_ntf``) switched on::

    <prefix>/online           true | false (retained, the broker's Last Will)
    <prefix>/status/switch:0  the full Switch status {"output", "apower", "voltage", "current", "aenergy": {"total": Wh}}
    <prefix>/events/rpc       {"method": "NotifyStatus", "params": {"switch:0": {<changed keys only>}}}
    <prefix>/rpc              JSON-RPC requests (Switch.Set, Switch.GetStatus), from the adapter
    <src>/rpc                 the device's replies; ``src`` is ``<prefix>/fablab-bridge`` unless set

NotifyStatus deltas are overlaid on the last full status. **Gen1**
(``prefix`` = ``shellies/<model>-<id>``)::

    <prefix>/online                 true | false
    <prefix>/relay/0                on | off
    <prefix>/relay/0/power          W
    <prefix>/relay/0/energy         watt-minutes since the device booted (reset at every reboot)
    <prefix>/relay/0/command        on | off, from the adapter
    <prefix>/command                update: the device re-publishes its state

Busy/idle, jobs, energy and the interlock are in
:class:`~firmware_bridge.adapters.plug_common.PlugAdapter`.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Mapping
from typing import Any

from firmware_bridge import protocol
from firmware_bridge.adapters.base import register
from firmware_bridge.adapters.plug_common import PlugAdapter, parse_on_off, validate_plug_options
from firmware_bridge.adapters.plug_topics import (
    SHELLY1_COMMAND,
    SHELLY1_RELAY,
    SHELLY1_RELAY_COMMAND,
    SHELLY1_RELAY_ENERGY,
    SHELLY1_RELAY_POWER,
    SHELLY_EVENTS_RPC,
    SHELLY_ONLINE,
    SHELLY_RPC,
    SHELLY_STATUS_SWITCH,
    SHELLY_SWITCH,
    shelly,
)

SWITCH = SHELLY_SWITCH


class MalformedPayload(ValueError):
    """A plug message that cannot be understood (counted and logged, never fatal)."""


def _json_object(payload: bytes) -> dict[str, Any]:
    try:
        data = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedPayload(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise MalformedPayload("not a JSON object")
    return data


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MalformedPayload(f"{what} is not a number: {value!r}")
    return float(value)


def _merge(base: dict[str, Any], delta: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``delta`` overlaid, nested objects (``aenergy``) merged key by key."""
    merged = dict(base)
    for key, value in delta.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


@register
class ShellyAdapter(PlugAdapter):
    """A machine behind a Shelly plug; options ``prefix``, ``gen`` (1 or 2, default 2), ``rpc_src``
    (Gen2 reply prefix) and the thresholds (see plug_common)."""

    name = "shelly"

    @classmethod
    def broker_acl(cls, prefix: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """Broker access rules: (for the plug's own MQTT user, for the bridge that drives it).

        The plug owns everything under its prefix; the bridge reads it all and may only send commands.
        Spelled once, in :func:`firmware_bridge.protocol.plug_acl`.
        """
        return protocol.plug_acl(protocol.SHELLY, prefix)

    @classmethod
    def validate_options(cls, options: Mapping[str, Any]) -> list[str]:
        problems = validate_plug_options(
            options,
            required={"prefix": "the plug's MQTT topic prefix, e.g. shellyplusplugs-a8032ab12345"},
            optional=frozenset({"gen", "rpc_src"}),
        )
        gen = options.get("gen", 2)
        if isinstance(gen, bool) or gen not in (1, 2):
            problems.append(f"gen must be 1 (Gen1 shellies/… topics) or 2 (Gen2 and later), got {gen!r}")
        src = options.get("rpc_src")
        if src is not None and (not isinstance(src, str) or not src or any(c in src for c in "+#")):
            problems.append(f"rpc_src must be a topic prefix without wildcards, got {src!r}")
        return problems

    def __init__(self, machine: str, options: Mapping[str, Any], sink: Any, **kwargs: Any) -> None:
        super().__init__(machine, options, sink, **kwargs)
        self.prefix: str = self.options["prefix"]
        self.gen: int = int(self.options.get("gen", 2))
        self.rpc_src: str = self.options.get("rpc_src") or f"{self.prefix}/fablab-bridge"
        self._status: dict[str, Any] = {}  # Gen2: the last full switch status with deltas overlaid
        self._ids = itertools.count(1)

    # -- topics ---------------------------------------------------------------------------------

    def _subscribe(self) -> None:
        p = self.prefix
        handlers: dict[str, Callable[[bytes], None]]
        if self.gen == 2:
            handlers = {
                shelly(p, SHELLY_ONLINE): self._handle_online,
                shelly(p, SHELLY_STATUS_SWITCH): self._handle_full_status,
                shelly(p, SHELLY_EVENTS_RPC): self._handle_notification,
                shelly(self.rpc_src, SHELLY_RPC): self._handle_rpc_reply,
            }
        else:
            handlers = {
                shelly(p, SHELLY_ONLINE): self._handle_online,
                shelly(p, SHELLY1_RELAY): self._handle_gen1_relay,
                shelly(p, SHELLY1_RELAY_POWER): self._handle_gen1_power,
                shelly(p, SHELLY1_RELAY_ENERGY): self._handle_gen1_energy,
            }
        for topic, handler in handlers.items():
            self.sink.subscribe(topic, self._guarded(handler))

    def _rpc(self, method: str, params: Mapping[str, Any]) -> None:
        request = {"id": next(self._ids), "src": self.rpc_src, "method": method, "params": dict(params)}
        self.sink.publish(shelly(self.prefix, SHELLY_RPC), json.dumps(request), retain=False)

    def _send_relay(self, on: bool) -> None:
        if self.gen == 2:
            self._rpc("Switch.Set", {"id": 0, "on": on})
            # Switch.Set answers only {"was_on": …} and notifies nothing when the state is
            # unchanged: the status asked right after it is the plug's confirmation.
            self._rpc("Switch.GetStatus", {"id": 0})
        else:
            self.sink.publish(shelly(self.prefix, SHELLY1_RELAY_COMMAND), "on" if on else "off", retain=False)

    def _query_relay(self) -> None:
        if self.gen == 2:
            self._rpc("Switch.GetStatus", {"id": 0})
        else:
            self.sink.publish(shelly(self.prefix, SHELLY1_COMMAND), "update", retain=False)

    # -- payloads -------------------------------------------------------------------------------

    def _handle_online(self, payload: bytes) -> None:
        state = parse_on_off(payload)
        if state is None:
            raise MalformedPayload("online is neither true nor false")
        self._on_online(state)

    def _handle_full_status(self, payload: bytes) -> None:
        self._apply_switch(_json_object(payload), full=True)

    def _handle_notification(self, payload: bytes) -> None:
        frame = _json_object(payload)
        method = frame.get("method")
        params = frame.get("params")
        if method not in ("NotifyStatus", "NotifyFullStatus"):
            return  # NotifyEvent (button pushes, …): nothing for us
        if not isinstance(params, dict):
            raise MalformedPayload(f"{method} without a params object")
        switch = params.get(SWITCH)
        if switch is None:
            return  # another component changed
        if not isinstance(switch, dict):
            raise MalformedPayload(f"{SWITCH} is not an object")
        self._apply_switch(switch, full=method == "NotifyFullStatus")

    def _handle_rpc_reply(self, payload: bytes) -> None:
        frame = _json_object(payload)
        if "error" in frame:
            raise MalformedPayload(f"the plug refused an RPC: {frame['error']!r}")
        result = frame.get("result")
        # Switch.GetStatus answers with the full status; Switch.Set with {"was_on": …} only.
        if isinstance(result, dict) and "output" in result:
            self._apply_switch(result, full=True)

    def _apply_switch(self, status: Mapping[str, Any], *, full: bool) -> None:
        """Take a full status or a NotifyStatus delta of ``switch:0``; validate before changing anything."""
        merged = dict(status) if full else _merge(self._status, status)
        relay = None
        if "output" in status:
            relay = parse_on_off(status["output"])
            if relay is None:
                raise MalformedPayload(f"output is not a boolean: {status['output']!r}")
        elif full:
            raise MalformedPayload("full status without output")
        power = _number(merged["apower"], "apower") if "apower" in merged else None
        energy = None
        aenergy = merged.get("aenergy")
        if aenergy is not None:
            if not isinstance(aenergy, dict):
                raise MalformedPayload("aenergy is not an object")
            if "total" in aenergy:
                energy = _number(aenergy["total"], "aenergy.total")  # Gen2 counts in Wh
        voltage = _number(merged["voltage"], "voltage") if "voltage" in merged else None
        current = _number(merged["current"], "current") if "current" in merged else None
        if energy is not None and energy < 0:
            raise MalformedPayload(f"aenergy.total is negative: {energy}")
        self._status = merged
        if relay is not None:
            self._on_relay(relay)
        if power is not None or energy is not None:
            self._on_reading(power_w=power, energy_raw_wh=energy, voltage_v=voltage, current_a=current)

    # Gen1: one value per topic.

    def _handle_gen1_relay(self, payload: bytes) -> None:
        text = payload.decode("utf-8", "replace").strip().lower()
        if text == "overpower":
            # The plug cut the relay itself because the load exceeded its limit.
            self._on_relay(False)
            return
        state = parse_on_off(text)
        if state is None:
            raise MalformedPayload("relay is neither on nor off")
        self._on_relay(state)

    def _handle_gen1_power(self, payload: bytes) -> None:
        self._on_reading(power_w=self._gen1_number(payload, "power"))

    def _handle_gen1_energy(self, payload: bytes) -> None:
        # Watt-minutes since boot: divide by 60 for Wh. Reset at every reboot (EnergyCounter handles it).
        self._on_reading(energy_raw_wh=self._gen1_number(payload, "energy") / 60.0)

    @staticmethod
    def _gen1_number(payload: bytes, what: str) -> float:
        try:
            value = float(payload.decode("utf-8").strip())
        except (UnicodeDecodeError, ValueError):
            raise MalformedPayload(f"{what} is not a number") from None
        if value != value or value in (float("inf"), float("-inf")) or value < 0:
            raise MalformedPayload(f"{what} is not a finite number >= 0: {value}")
        return value
