"""Adapter for a machine behind a Tasmota power-monitoring plug (Sonoff POW, Athom, Nous…).

The plug speaks its own MQTT topics, with Tasmota's default FullTopic
``%prefix%/%topic%/``; the option ``topic`` is the plug's ``%topic%``
(``tasmota_1A2B3C`` unless renamed)::

    tele/<topic>/LWT       Online | Offline (retained, the broker's Last Will)
    tele/<topic>/SENSOR    {"ENERGY": {"Total": kWh, "Today": kWh, "Power": W, "Voltage": V, "Current": A, …}}
    tele/<topic>/STATE     {"POWER": "ON" | "OFF", …}  every TelePeriod
    stat/<topic>/POWER     ON | OFF                   after every POWER command
    stat/<topic>/RESULT    {"POWER": "ON"}            the same, as JSON
    stat/<topic>/STATUS10  {"StatusSNS": {"ENERGY": {…}}}  answer to ``Status 10`` (STATUS8 on old firmware)
    cmnd/<topic>/POWER     ON | OFF, empty to query   (published by the adapter, never retained)

Busy/idle, jobs, energy and the interlock are in
:class:`~firmware_bridge.adapters.plug_common.PlugAdapter`. ``PowerDelta``
makes Tasmota send a SENSOR message as soon as the power changes, which is
what makes busy/idle detection prompt; see hardware_docs/power-plugs.md.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from firmware_bridge import protocol
from firmware_bridge.adapters.base import register
from firmware_bridge.adapters.plug_common import PlugAdapter, parse_on_off, validate_plug_options
from firmware_bridge.adapters.plug_topics import TASMOTA_CMND, TASMOTA_STAT, TASMOTA_TELE, tasmota


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


def _optional_number(obj: Mapping[str, Any], key: str) -> float | None:
    """A number from a Tasmota object; multi-channel meters send lists (channel 1 is first)."""
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, list) and value:
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MalformedPayload(f"{key} is not a number: {value!r}")
    return float(value)


def _relay_from(obj: Mapping[str, Any]) -> bool | None:
    """The state of relay 1 in a STATE or RESULT object (``POWER`` or, with several relays, ``POWER1``)."""
    for key in ("POWER", "POWER1"):
        if key in obj:
            state = parse_on_off(obj[key])
            if state is None:
                raise MalformedPayload(f"{key} is neither ON nor OFF: {obj[key]!r}")
            return state
    return None


@register
class TasmotaAdapter(PlugAdapter):
    """A machine behind a Tasmota plug; options ``topic`` and the thresholds (see plug_common)."""

    name = "tasmota"

    @classmethod
    def broker_acl(cls, topic: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """Broker access rules: (for the plug's own MQTT user, for the bridge that drives it).

        Spelled once, in :func:`firmware_bridge.protocol.plug_acl`, which the server's ``mqtt_sync``
        uses so each plug may only use its own topics.
        """
        return protocol.plug_acl(protocol.TASMOTA, topic)

    @classmethod
    def validate_options(cls, options: Mapping[str, Any]) -> list[str]:
        return validate_plug_options(
            options, required={"topic": "the plug's Tasmota %topic%, e.g. tasmota_1A2B3C"}
        )

    def __init__(self, machine: str, options: Mapping[str, Any], sink: Any, **kwargs: Any) -> None:
        super().__init__(machine, options, sink, **kwargs)
        self.topic: str = self.options["topic"]

    # -- topics ---------------------------------------------------------------------------------

    def _subscribe(self) -> None:
        t = self.topic
        handlers: dict[str, Callable[[bytes], None]] = {
            tasmota(TASMOTA_TELE, t, "LWT"): self._handle_lwt,
            tasmota(TASMOTA_TELE, t, "SENSOR"): self._handle_sensor,
            tasmota(TASMOTA_TELE, t, "STATE"): self._handle_state,
            tasmota(TASMOTA_STAT, t, "POWER"): self._handle_power,
            tasmota(TASMOTA_STAT, t, "RESULT"): self._handle_state,
            tasmota(TASMOTA_STAT, t, "STATUS10"): self._handle_status_sns,
            tasmota(TASMOTA_STAT, t, "STATUS8"): self._handle_status_sns,
        }
        for topic, handler in handlers.items():
            self.sink.subscribe(topic, self._guarded(handler))

    def _send_relay(self, on: bool) -> None:
        # Never retained: a retained POWER command switches the relay again at every reconnect.
        self.sink.publish(tasmota(TASMOTA_CMND, self.topic, "POWER"), "ON" if on else "OFF", retain=False)

    def _query_relay(self) -> None:
        self.sink.publish(tasmota(TASMOTA_CMND, self.topic, "POWER"), "", retain=False)
        self.sink.publish(tasmota(TASMOTA_CMND, self.topic, "Status"), "10", retain=False)

    # -- payloads -------------------------------------------------------------------------------

    def _handle_lwt(self, payload: bytes) -> None:
        text = payload.decode("utf-8", "replace").strip().lower()
        if text == "online":
            self._on_online(True)
        elif text == "offline":
            self._on_online(False)
        else:
            raise MalformedPayload("LWT is neither Online nor Offline")

    def _handle_power(self, payload: bytes) -> None:
        state = parse_on_off(payload)
        if state is None:
            raise MalformedPayload("POWER is neither ON nor OFF")
        self._on_relay(state)

    def _handle_state(self, payload: bytes) -> None:
        # RESULT also answers every other command; only a POWER key concerns us.
        state = _relay_from(_json_object(payload))
        if state is not None:
            self._on_relay(state)

    def _handle_sensor(self, payload: bytes) -> None:
        self._handle_energy(_json_object(payload))

    def _handle_status_sns(self, payload: bytes) -> None:
        sns = _json_object(payload).get("StatusSNS")
        if not isinstance(sns, dict):
            raise MalformedPayload("no StatusSNS object")
        self._handle_energy(sns)

    def _handle_energy(self, data: Mapping[str, Any]) -> None:
        energy = data.get("ENERGY")
        if energy is None:
            return  # a SENSOR message of another sensor (temperature…): nothing for us
        if not isinstance(energy, dict):
            raise MalformedPayload("ENERGY is not an object")
        total_kwh = _optional_number(energy, "Total")
        if total_kwh is not None and total_kwh < 0:
            raise MalformedPayload(f"Total is negative: {total_kwh}")
        power = _optional_number(energy, "Power")
        if power is None and total_kwh is None:
            raise MalformedPayload("ENERGY has neither Power nor Total")
        self._on_reading(
            power_w=power,
            energy_raw_wh=None if total_kwh is None else total_kwh * 1000.0,  # Tasmota counts in kWh
            voltage_v=_optional_number(energy, "Voltage"),
            current_a=_optional_number(energy, "Current"),
        )
