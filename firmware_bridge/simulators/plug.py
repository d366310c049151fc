"""A power-monitoring plug on MQTT (Tasmota, Shelly Gen2 or Gen1), for the tests and the demo.

:class:`PlugSimulator` connects to a broker with paho-mqtt 2 and speaks the
plug's own topics and payload shapes, as their makers document them (Tasmota:
tasmota/docs, docs/MQTT.md and docs/Commands.md; Shelly: the Gen1 MQTT and Gen2
MQTT component API pages) and as the adapters' module docstrings summarise:

* ``kind="tasmota"`` (``name`` is the ``%topic%``): ``tele/<t>/LWT``
  ``Online``/``Offline`` (retained, also the Last Will), ``tele/<t>/SENSOR``
  with ``ENERGY`` (Total/Today in kWh, Power, Voltage, Current…) every tele
  period and at once when the power moves by ``power_delta_w`` (Tasmota's
  ``PowerDelta``), ``tele/<t>/STATE`` with ``POWER``, and the answers to
  ``cmnd/<t>/POWER`` (``ON``/``OFF``/``TOGGLE``, empty queries) on
  ``stat/<t>/RESULT`` and ``stat/<t>/POWER``, and to ``cmnd/<t>/Status 10``.
* ``kind="shelly"`` (Gen2, ``name`` is the topic prefix): ``<p>/online``
  ``true``/``false``, the full ``<p>/status/switch:0`` (apower, voltage,
  current, aenergy.total in Wh, output) every ``full_status_every`` tele
  periods and on every relay change, ``NotifyStatus`` deltas (changed keys
  only) on ``<p>/events/rpc`` in between, and JSON-RPC on ``<p>/rpc``
  (``Switch.Set``, ``Switch.Toggle``, ``Switch.GetStatus``,
  ``Shelly.GetStatus``) answered on ``<src>/rpc``.
* ``kind="shelly-gen1"`` (``name`` is ``shellies/<model>-<id>``):
  ``relay/0``, ``relay/0/power``, ``relay/0/energy`` (watt-minutes),
  ``online``; obeys ``relay/0/command`` and ``command`` ``update``.

The load follows a ``profile``: ``"closed-laser"`` (standby ~15 W, exhaust
and chiller ~120 W, cuts of 600–1,200 W lasting minutes with pauses at the
exhaust's draw, time compressed by ``speed`` for demos), ``"manual"``
(whatever :meth:`PlugSimulator.set_load` says, no noise: for tests) or any
callable ``f(seconds_since_relay_on) -> watts``. The relay cuts the load.
Energy is integrated from the power actually drawn, in real time; Tasmota
rounds its kWh counters to ``energy_res`` decimals (its ``EnergyRes``, 3 by
default: 1 Wh), so tests that watch small amounts use 5.

:meth:`PlugSimulator.reboot` resets the energy counter (as a firmware update
or ``EnergyReset`` does) and goes offline and back; :meth:`go_offline`
disconnects so that the broker publishes the Last Will. Only paho-mqtt and
the standard library are used, so the demo can run it without pytest.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import random
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

# Only the plugs' topics are shared with the adapters, never their payload code: each side reads and
# writes the payloads itself, so a payload bug cannot hide on both sides of a test.
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
    TASMOTA_CMND,
    TASMOTA_STAT,
    TASMOTA_TELE,
    shelly,
    tasmota,
)

log = logging.getLogger(__name__)

KINDS = ("tasmota", "shelly", "shelly-gen1")
MAINS_V = 230.0


class ClosedLaserProfile:
    """The load of a closed CO2 laser (Epilog, Trotec) with its exhaust and chiller, job after job.

    A cycle: standby (~15 W, controller and display), then the exhaust and
    chiller start (~120 W), then two to five cuts of 600–1,200 W lasting one
    to five minutes, with pauses at the exhaust's draw between them (the maker
    swaps material), a half-minute exhaust run-on, and standby again.
    Durations are divided by ``speed``.
    """

    def __init__(self, *, speed: float = 1.0, seed: int | None = None) -> None:
        if speed <= 0:
            raise ValueError("speed must be > 0")
        self.speed = speed
        self._rng = random.Random(seed)  # the plan of phases
        # Noise from its own generator, so the plan does not depend on how often it is sampled.
        self._noise = random.Random(None if seed is None else seed + 1)
        self._phases: list[tuple[str, float, float]] = []  # (name, watts, duration in profile seconds)
        self._phase_start = 0.0
        self.phase = "standby"

    def _plan_cycle(self) -> None:
        rng = self._rng
        self._phases.append(("standby", 15.0, rng.uniform(60, 240)))
        self._phases.append(("exhaust", 120.0, rng.uniform(15, 40)))
        cuts = rng.randint(2, 5)
        for i in range(cuts):
            self._phases.append(("cutting", rng.uniform(600, 1200), rng.uniform(60, 300)))
            if i < cuts - 1:
                self._phases.append(("pause", 120.0, rng.uniform(10, 45)))
        self._phases.append(("run-on", 120.0, 30.0))

    def __call__(self, seconds_on: float) -> float:
        """Watts drawn ``seconds_on`` real seconds after the relay switched on (calls in time order)."""
        t = seconds_on * self.speed
        if t < self._phase_start:  # the relay was switched off and on again: start over
            self._phases.clear()
            self._phase_start = 0.0
        while True:
            if not self._phases:
                self._plan_cycle()
            name, watts, duration = self._phases[0]
            if t < self._phase_start + duration:
                break
            self._phase_start += duration
            self._phases.pop(0)
        self.phase = name
        noise = {"standby": 1.0, "exhaust": 3.0, "pause": 3.0, "run-on": 3.0}.get(name, watts * 0.04)
        return max(0.0, watts + self._noise.uniform(-noise, noise))


def _parse_url(url: str) -> tuple[str, int, str | None, str | None, bool]:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ValueError(f"not an mqtt:// or mqtts:// URL: {url!r}")
    tls = parts.scheme == "mqtts"
    user = urllib.parse.unquote(parts.username) if parts.username is not None else None
    password = urllib.parse.unquote(parts.password) if parts.password is not None else None
    return parts.hostname, parts.port or (8883 if tls else 1883), user, password, tls


def _local_time() -> str:
    """Tasmota's ``Time``: local time without a zone."""
    return datetime.datetime.now().strftime("%Y-%m-%dT%H:%M:%S")


class PlugSimulator:
    """One simulated plug. ``start()`` connects and runs it in a thread; ``stop()`` ends it.

    Thread-safe: tests call :meth:`set_load`, :meth:`press_button`,
    :meth:`reboot`, :meth:`go_offline` and :meth:`go_online` from their own thread.
    """

    def __init__(
        self,
        kind: str,
        name: str,
        mqtt_url: str,
        *,
        profile: str | Callable[[float], float] = "closed-laser",
        tele_period_s: float = 10.0,
        power_delta_w: float | None = 20.0,
        relay_on: bool = True,
        energy_wh: float = 0.0,
        speed: float = 1.0,
        full_status_every: int = 5,
        energy_res: int = 3,
        seed: int | None = None,
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        if not name or any(c in name for c in "+#"):
            raise ValueError(f"name must be a topic part without wildcards, got {name!r}")
        if tele_period_s <= 0:
            raise ValueError("tele_period_s must be > 0")
        self.kind = kind
        self.name = name
        self.url = mqtt_url
        self._host, self._port, self._user, self._password, self._tls = _parse_url(mqtt_url)
        if profile == "closed-laser":
            self._profile: Callable[[float], float] | None = ClosedLaserProfile(speed=speed, seed=seed)
        elif profile == "manual":
            self._profile = None
        elif callable(profile):
            self._profile = profile
        else:
            raise ValueError(f"profile must be 'closed-laser', 'manual' or a callable, got {profile!r}")
        self.tele_period_s = tele_period_s
        self.power_delta_w = power_delta_w
        self.full_status_every = max(1, full_status_every)
        self.energy_res = energy_res  # Tasmota's EnergyRes: decimals of the kWh counters (0-5)
        self._lock = threading.RLock()
        self._relay = relay_on
        self._relay_since = time.monotonic()
        self._manual_w = 0.0
        self._power = 0.0
        self._energy_wh = float(energy_wh)  # the plug's own counter (Wh); reset by reboot()
        self._today_start_wh = 0.0
        self._period_wh = 0.0
        self._last_reported_power: float | None = None
        self._boot = time.monotonic()
        self._client: mqtt.Client | None = None
        self._online = False
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._last_tick = time.monotonic()
        self._next_tele = 0.0
        self._tele_count = 0
        self._shelly_last: dict[str, Any] = {}
        self._clients_made = 0
        #: Commands received, in order (for tests and the demo's log): (topic, payload text).
        self.commands: list[tuple[str, str]] = []

    # -- public controls ------------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> None:
        """Connect (waiting up to ``timeout`` for the broker to accept) and start the plug's thread."""
        self._connect(timeout)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"plug-sim-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Go offline (the LWT is published as when the plug loses power) and end the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        self.go_offline()

    def __enter__(self) -> PlugSimulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def set_load(self, watts: float) -> None:
        """Profile ``manual``: the machine now draws ``watts`` while the relay is on."""
        with self._lock:
            self._manual_w = float(watts)
        self._tick(time.monotonic())

    def press_button(self) -> None:
        """Someone toggles the relay on the plug itself."""
        with self._lock:
            self._set_relay(not self._relay, source="button")

    def reboot(self, *, reset_counter: bool = True, timeout: float = 30.0) -> None:
        """Go offline, reset the energy counter (a firmware update, EnergyReset) and come back."""
        self.go_offline()
        with self._lock:
            if reset_counter:
                self._energy_wh = 0.0
                self._today_start_wh = 0.0
            self._boot = time.monotonic()
            self._last_reported_power = None
        self.go_online(timeout)

    def go_offline(self) -> None:
        """Drop the connection so that the broker publishes the Last Will (offline)."""
        with self._lock:
            client, self._client = self._client, None
            self._online = False
        if client is None:
            return
        # MQTT 5 reason 4 "Disconnect with Will Message": the broker publishes the LWT, as when the
        # plug loses power or Wi-Fi.
        client.disconnect(reasoncode=ReasonCode(PacketTypes.DISCONNECT, identifier=4))
        client.loop_stop()

    def go_online(self, timeout: float = 30.0) -> None:
        """Reconnect after :meth:`go_offline`."""
        self._connect(timeout)

    @property
    def relay_on(self) -> bool:
        with self._lock:
            return self._relay

    @property
    def power_w(self) -> float:
        with self._lock:
            return self._power

    @property
    def energy_wh(self) -> float:
        """The plug's own counter in Wh (what it publishes, before rounding)."""
        with self._lock:
            return self._energy_wh

    @property
    def online(self) -> bool:
        with self._lock:
            return self._online

    @property
    def phase(self) -> str:
        """The closed-laser profile's phase (``standby``, ``cutting``…), or ``off``/``manual``."""
        with self._lock:
            if not self._relay:
                return "off"
            return getattr(self._profile, "phase", "manual")

    # -- topics ---------------------------------------------------------------------------------

    @property
    def lwt_topic(self) -> str:
        return (
            tasmota(TASMOTA_TELE, self.name, "LWT")
            if self.kind == "tasmota"
            else shelly(self.name, SHELLY_ONLINE)
        )

    def _lwt_payload(self, online: bool) -> str:
        if self.kind == "tasmota":
            return "Online" if online else "Offline"
        return "true" if online else "false"

    # -- connection -----------------------------------------------------------------------------

    def _connect(self, timeout: float) -> None:
        with self._lock:
            if self._client is not None:
                return
            self._clients_made += 1
            client = mqtt.Client(
                CallbackAPIVersion.VERSION2,
                client_id=f"plug-sim-{self.name.replace('/', '-')}-{self._clients_made}",
                protocol=mqtt.MQTTv5,
            )
        if self._user is not None:
            client.username_pw_set(self._user, self._password)
        if self._tls:
            client.tls_set()
        client.will_set(self.lwt_topic, self._lwt_payload(False), qos=1, retain=True)
        connected = threading.Event()

        def on_connect(c: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
            if reason.is_failure:
                log.warning("plug simulator %s: connection refused: %s", self.name, reason)
                return
            c.subscribe(self._command_filters(), qos=1)  # (after every reconnect too)
            c.publish(self.lwt_topic, self._lwt_payload(True), qos=1, retain=True)
            connected.set()

        client.on_connect = on_connect
        client.on_message = self._on_message
        client.connect_async(self._host, self._port, keepalive=30)
        client.loop_start()
        if not connected.wait(timeout):
            client.loop_stop()
            raise RuntimeError(f"plug simulator {self.name}: no connection to {self._host}:{self._port}")
        with self._lock:
            self._client = client
            self._online = True
            self._last_reported_power = None
            self._next_tele = 0.0  # report everything at once, as a plug does after connecting
        self._tick(time.monotonic())

    def _command_filters(self) -> list[tuple[str, int]]:
        if self.kind == "tasmota":
            return [(tasmota(TASMOTA_CMND, self.name, "#"), 1)]
        if self.kind == "shelly":
            return [(shelly(self.name, SHELLY_RPC), 1)]
        return [(shelly(self.name, SHELLY1_RELAY_COMMAND), 1), (shelly(self.name, SHELLY1_COMMAND), 1)]

    def _publish(self, topic: str, payload: Any, *, retain: bool = False) -> None:
        """Under the lock. Plugs publish state, never commands; only the LWT is retained."""
        client = self._client
        if client is None:
            return
        if not isinstance(payload, str):
            payload = json.dumps(payload, separators=(",", ":"))
        client.publish(topic, payload, qos=1, retain=retain)

    # -- the plug's loop ------------------------------------------------------------------------

    def _run(self) -> None:
        step = min(0.1, self.tele_period_s / 4)
        while not self._stop.wait(step):
            try:
                self._tick(time.monotonic())
            except Exception:  # a simulator hiccup must not end the demo
                log.exception("plug simulator %s: tick failed", self.name)

    def _tick(self, now: float) -> None:
        with self._lock:
            dt = max(0.0, now - self._last_tick)
            self._last_tick = now
            # The power drawn since the last tick counts at the last tick's value.
            wh = self._power * dt / 3600.0
            self._energy_wh += wh
            self._period_wh += wh
            self._power = self._load(now)
            if not self._online:
                return
            delta = self.power_delta_w
            last = self._last_reported_power
            if now >= self._next_tele:
                self._next_tele = now + self.tele_period_s
                self._tele_count += 1
                self._report(periodic=True)
            elif delta is not None and last is not None and abs(self._power - last) >= delta:
                self._report(periodic=False)

    def _load(self, now: float) -> float:
        if not self._relay:
            return 0.0
        if self._profile is None:
            return self._manual_w
        return float(self._profile(now - self._relay_since))

    def _set_relay(self, on: bool, *, source: str) -> None:
        """Under the lock: switch the relay and publish the plug's state as the real one does."""
        now = time.monotonic()
        self._tick(now)
        changed = on != self._relay
        self._relay = on
        if changed and on:
            self._relay_since = now
        self._power = self._load(now)
        if self.kind == "tasmota":
            state = "ON" if on else "OFF"
            self._publish(tasmota(TASMOTA_STAT, self.name, "RESULT"), {"POWER": state})
            self._publish(tasmota(TASMOTA_STAT, self.name, "POWER"), state)
        elif self.kind == "shelly":
            if changed:
                self._publish_shelly_status(source=source, full=True)
        else:
            self._publish(shelly(self.name, SHELLY1_RELAY), "on" if on else "off")
        if changed:
            self._report(periodic=False)

    # -- reports in each plug's shapes ------------------------------------------------------------

    def _report(self, *, periodic: bool) -> None:
        """Under the lock: a telemetry report (periodic, or because the power moved)."""
        self._last_reported_power = self._power
        if self.kind == "tasmota":
            self._publish(
                tasmota(TASMOTA_TELE, self.name, "SENSOR"),
                {"Time": _local_time(), "ENERGY": self._tasmota_energy()},
            )
            self._period_wh = 0.0
            if periodic:
                self._publish(tasmota(TASMOTA_TELE, self.name, "STATE"), self._tasmota_state())
        elif self.kind == "shelly":
            full = periodic and (
                self._tele_count % self.full_status_every == 1 or self.full_status_every == 1
            )
            self._publish_shelly_status(source="timer", full=full)
        else:
            if periodic:
                self._publish(shelly(self.name, SHELLY1_RELAY), "on" if self._relay else "off")
            self._publish(shelly(self.name, SHELLY1_RELAY_POWER), f"{self._power:.2f}")
            self._publish(
                shelly(self.name, SHELLY1_RELAY_ENERGY), str(int(self._energy_wh * 60))
            )  # watt-minutes

    def _electrics(self) -> tuple[float, float, float]:
        """Voltage, current and power factor for the present load."""
        voltage = MAINS_V + (1.5 if self._power < 500 else -1.5)
        factor = 0.0 if self._power < 1 else (0.6 if self._power < 100 else 0.93)
        current = 0.0 if factor == 0 else self._power / (voltage * factor)
        return voltage, current, factor

    def _tasmota_energy(self) -> dict[str, Any]:
        voltage, current, factor = self._electrics()
        apparent = voltage * current
        return {
            "TotalStartTime": "2026-01-01T00:00:00",
            "Total": round(self._energy_wh / 1000.0, self.energy_res),
            "Yesterday": 0.0,
            "Today": round(max(0.0, self._energy_wh - self._today_start_wh) / 1000.0, self.energy_res),
            "Period": round(self._period_wh),
            "Power": round(self._power),
            "ApparentPower": round(apparent),
            "ReactivePower": round(max(0.0, apparent**2 - self._power**2) ** 0.5),
            "Factor": round(factor, 2),
            "Voltage": round(voltage),
            "Current": round(current, 3),
        }

    def _tasmota_state(self) -> dict[str, Any]:
        uptime = int(time.monotonic() - self._boot)
        days, rest = divmod(uptime, 86400)
        return {
            "Time": _local_time(),
            "Uptime": f"{days}T{time.strftime('%H:%M:%S', time.gmtime(rest))}",
            "UptimeSec": uptime,
            "Heap": 26,
            "SleepMode": "Dynamic",
            "Sleep": 50,
            "LoadAvg": 19,
            "MqttCount": self._clients_made,
            "POWER": "ON" if self._relay else "OFF",
            "Wifi": {"AP": 1, "SSId": "fablab", "Channel": 6, "Mode": "11n", "RSSI": 78, "Signal": -61},
        }

    def _shelly_switch(self, source: str) -> dict[str, Any]:
        voltage, current, factor = self._electrics()
        return {
            "id": 0,
            "source": source,
            "output": self._relay,
            "apower": round(self._power, 1),
            "voltage": round(voltage, 1),
            "freq": 50.0,
            "current": round(current, 3),
            "pf": round(factor, 2),
            "aenergy": {
                "total": round(self._energy_wh, 3),
                "by_minute": [0.0, 0.0, 0.0],
                "minute_ts": int(time.time()) // 60 * 60,
            },
            "temperature": {"tC": 41.2, "tF": 106.2},
        }

    def _publish_shelly_status(self, *, source: str, full: bool) -> None:
        status = self._shelly_switch(source)
        if full or not self._shelly_last:
            self._publish(shelly(self.name, SHELLY_STATUS_SWITCH), status)
        changed = {k: v for k, v in status.items() if self._shelly_last.get(k) != v and k != "source"}
        self._shelly_last = status
        if changed:
            changed["id"] = 0
            frame = {
                "src": self.name,
                "dst": f"{self.name}/events",
                "method": "NotifyStatus",
                "params": {"ts": round(time.time(), 2), SHELLY_SWITCH: changed},
            }
            self._publish(shelly(self.name, SHELLY_EVENTS_RPC), frame)

    # -- commands -------------------------------------------------------------------------------

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        text = message.payload.decode("utf-8", "replace")
        with self._lock:
            self.commands.append((message.topic, text))
            if message.retain:
                # A real plug obeys retained commands too ("ghost switching"); say so loudly.
                log.warning("plug simulator %s: RETAINED command on %s: %r", self.name, message.topic, text)
            try:
                if self.kind == "tasmota":
                    self._tasmota_command(message.topic, text)
                elif self.kind == "shelly":
                    self._shelly_rpc(text)
                else:
                    self._gen1_command(message.topic, text)
            except Exception:
                log.exception("plug simulator %s: command %s %r failed", self.name, message.topic, text)

    def _tasmota_command(self, topic: str, text: str) -> None:
        command = topic.rsplit("/", 1)[-1].upper()
        arg = text.strip().upper()
        if command in ("POWER", "POWER1"):
            if arg in ("", "?"):
                state = "ON" if self._relay else "OFF"
                self._publish(tasmota(TASMOTA_STAT, self.name, "RESULT"), {"POWER": state})
                self._publish(tasmota(TASMOTA_STAT, self.name, "POWER"), state)
            elif arg in ("ON", "1", "TRUE"):
                self._set_relay(True, source="mqtt")
            elif arg in ("OFF", "0", "FALSE"):
                self._set_relay(False, source="mqtt")
            elif arg in ("TOGGLE", "2"):
                self._set_relay(not self._relay, source="mqtt")
            else:
                self._publish(tasmota(TASMOTA_STAT, self.name, "RESULT"), {"Command": "Error"})
        elif command == "STATUS" and arg in ("8", "10"):
            sns = {"StatusSNS": {"Time": _local_time(), "ENERGY": self._tasmota_energy()}}
            self._publish(tasmota(TASMOTA_STAT, self.name, f"STATUS{arg}"), sns)
        elif command == "TELEPERIOD" and arg.isdigit():
            self.tele_period_s = max(10, min(3600, int(arg))) if int(arg) else self.tele_period_s
            self._publish(tasmota(TASMOTA_STAT, self.name, "RESULT"), {"TelePeriod": int(self.tele_period_s)})
        else:
            self._publish(tasmota(TASMOTA_STAT, self.name, "RESULT"), {"Command": "Unknown"})

    def _shelly_rpc(self, text: str) -> None:
        try:
            request = json.loads(text)
            src = request["src"]
            rid = request.get("id")
            method = request["method"]
            params = request.get("params") or {}
        except (ValueError, KeyError, TypeError):
            log.warning("plug simulator %s: malformed RPC %r", self.name, text)
            return
        reply: dict[str, Any] = {"id": rid, "src": self.name, "dst": src}
        if method in ("Switch.Set", "Switch.Toggle") and params.get("id", 0) == 0:
            was_on = self._relay
            on = (not was_on) if method == "Switch.Toggle" else params.get("on")
            if not isinstance(on, bool):
                reply["error"] = {"code": -103, "message": "Invalid argument 'on': expected boolean!"}
            else:
                self._set_relay(on, source="MQTT")
                reply["result"] = {"was_on": was_on}
        elif method == "Switch.GetStatus" and params.get("id", 0) == 0:
            reply["result"] = self._shelly_switch("MQTT")
        elif method == "Shelly.GetStatus":
            reply["result"] = {SHELLY_SWITCH: self._shelly_switch("MQTT")}
        else:
            reply["error"] = {"code": 404, "message": f"No handler for {method}"}
        self._publish(shelly(src, SHELLY_RPC), reply)

    def _gen1_command(self, topic: str, text: str) -> None:
        arg = text.strip().lower()
        if topic.endswith("/" + SHELLY1_RELAY_COMMAND):
            if arg in ("on", "off"):
                self._set_relay(arg == "on", source="mqtt")
            elif arg == "toggle":
                self._set_relay(not self._relay, source="mqtt")
        elif arg in ("update", "announce"):
            self._publish(shelly(self.name, SHELLY1_RELAY), "on" if self._relay else "off")
            self._report(periodic=False)


def run(kind: str, name: str, mqtt_url: str, **kwargs: Any) -> None:
    """Run one simulated plug until interrupted (for the demo and manual trials)."""
    sim = PlugSimulator(kind, name, mqtt_url, **kwargs)
    sim.start()
    try:
        while True:
            time.sleep(5)
            log.info("%s: %s, %.0f W, %.1f Wh", name, sim.phase, sim.power_w, sim.energy_wh)
    except KeyboardInterrupt:
        pass
    finally:
        with contextlib.suppress(Exception):
            sim.stop()
