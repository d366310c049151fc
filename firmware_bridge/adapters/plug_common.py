"""What the two power-plug adapters (Tasmota, Shelly) share.

A closed machine behind a power-monitoring plug (an Epilog or Trotec laser)
tells the bridge nothing but how much power it draws. From that reading this
module derives:

* :class:`BusyDetector` -- busy/idle with a hysteresis band and hold times, so
  a laser pausing between cuts or an exhaust fan cycling does not split a job
  into pieces (no flapping);
* :class:`EnergyCounter` -- a monotonic energy counter in Wh built from the
  plug's own counter, which survives the plug's counter being reset (a reboot,
  a firmware update, ``EnergyReset``), because billable energy must come from
  counter deltas, never from integrated power samples;
* :class:`PlugAdapter` -- the state machine both adapters run on top of their
  plug's own topics: offline/idle/running, an implicit job per busy period
  with ``job_started``/``job_finished`` events, telemetry, and the interlock
  (the relay), with commands acknowledged only once the plug confirms the new
  relay state.

Concrete adapters only translate the plug's topics and payloads into the
``_on_*`` calls below and implement :meth:`PlugAdapter._send_relay` and
:meth:`PlugAdapter._query_relay`.
"""

from __future__ import annotations

import abc
import dataclasses
import logging
import math
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from firmware_bridge.adapters.base import IDLE, OFFLINE, RUNNING, Adapter, AdapterSink, CommandError, JobInfo
from firmware_bridge.protocol import NOT_CONFIRMED

log = logging.getLogger(__name__)

#: Defaults for a closed CO2 laser: standby ~15 W stays idle, the exhaust and
#: chiller (~120 W) that run for the whole job keep it busy between cuts.
DEFAULT_THRESHOLDS: dict[str, float] = {"on_w": 100.0, "off_w": 50.0, "on_s": 5.0, "off_s": 30.0}
#: Seconds a relay command waits for the plug to confirm the new relay state.
DEFAULT_CONFIRM_TIMEOUT_S = 10.0
#: Seconds between two queries of the relay state while it is unknown.
QUERY_RETRY_S = 5.0
#: Name under which the energy counter's state is saved through the sink.
ENERGY_STATE = "energy_counter"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def validate_plug_options(
    options: Mapping[str, Any], *, required: Mapping[str, str], optional: frozenset[str] = frozenset()
) -> list[str]:
    """Return one problem per wrong, missing or unknown option of a plug adapter.

    ``required`` maps each required string option (``topic``, ``prefix``) to a
    one-line description. The thresholds ``on_w``, ``off_w``, ``on_s``,
    ``off_s`` and ``confirm_timeout_s`` are optional numbers; ``off_w`` must be
    below ``on_w`` (the hysteresis band).
    """
    problems: list[str] = []
    known = set(required) | set(DEFAULT_THRESHOLDS) | {"confirm_timeout_s"} | set(optional)
    for key in sorted(set(options) - known):
        problems.append(f"unknown option {key!r} (known: {', '.join(sorted(known))})")
    for key, what in required.items():
        value = options.get(key)
        if value is None:
            problems.append(f"{key} is missing ({what})")
        elif not isinstance(value, str) or not value.strip():
            problems.append(f"{key} must be a non-empty string ({what}), got {value!r}")
        elif any(c in value for c in "+#\x00") or value != value.strip() or value.startswith("/"):
            problems.append(
                f"{key} {value!r} must be a plain MQTT topic part: no '+', '#', leading '/' or spaces"
            )
        elif value.endswith("/"):
            problems.append(f"{key} {value!r} must not end with '/'")
    for key in ("on_w", "off_w", "on_s", "off_s"):
        if key in options and (not _is_number(options[key]) or options[key] < 0):
            problems.append(f"{key} must be a number >= 0, got {options[key]!r}")
    if "confirm_timeout_s" in options:
        value = options["confirm_timeout_s"]
        if not _is_number(value) or value <= 0:
            problems.append(f"confirm_timeout_s must be a number > 0, got {value!r}")
    on_w = options.get("on_w", DEFAULT_THRESHOLDS["on_w"])
    off_w = options.get("off_w", DEFAULT_THRESHOLDS["off_w"])
    if _is_number(on_w) and _is_number(off_w) and on_w >= 0 and off_w >= 0 and off_w >= on_w:
        problems.append(
            f"off_w ({off_w}) must be below on_w ({on_w}): the band between them is the hysteresis"
        )
    return problems


@dataclasses.dataclass(frozen=True)
class Thresholds:
    """Busy when power >= ``on_w`` for ``on_s`` seconds; idle when power < ``off_w`` for ``off_s``."""

    on_w: float = DEFAULT_THRESHOLDS["on_w"]
    off_w: float = DEFAULT_THRESHOLDS["off_w"]
    on_s: float = DEFAULT_THRESHOLDS["on_s"]
    off_s: float = DEFAULT_THRESHOLDS["off_s"]

    def __post_init__(self) -> None:
        if not (0 <= self.off_w < self.on_w) or self.on_s < 0 or self.off_s < 0:
            raise ValueError(f"invalid thresholds {self}: need 0 <= off_w < on_w and hold times >= 0")

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> Thresholds:
        return cls(**{k: float(options.get(k, v)) for k, v in DEFAULT_THRESHOLDS.items()})


@dataclasses.dataclass(frozen=True)
class Transition:
    """A change of the detector's state.

    ``edge_t`` is when the power first crossed the threshold that led to it
    (not when the hold time ran out), so a job's duration is measured from
    crossing to crossing; ``edge_energy_wh`` is the energy counter given with
    that sample (None if none was given).
    """

    busy: bool
    edge_t: float
    edge_energy_wh: float | None


class BusyDetector:
    """Busy/idle from power samples with hysteresis and hold times.

    Samples are fed in time order (``t`` in seconds on any monotonic clock). A
    sample's power is taken to hold until the next one, which is what plugs
    reporting on change (Tasmota ``PowerDelta``, Shelly status notifications)
    mean; :meth:`tick` lets the hold time run out without a new sample.
    Power inside the band ``off_w <= p < on_w`` never changes the state.
    Not thread-safe: the caller serialises access.
    """

    def __init__(self, thresholds: Thresholds) -> None:
        self.thresholds = thresholds
        self.busy = False
        self._last_power: float | None = None
        self._last_energy: float | None = None
        self._edge: tuple[float, float | None] | None = None  # (t, energy) of the pending crossing

    def feed(self, t: float, power_w: float, energy_wh: float | None = None) -> Transition | None:
        """Take one sample; return the transition it completes, if any."""
        self._last_power = power_w
        if energy_wh is not None:
            self._last_energy = energy_wh
        th = self.thresholds
        crossing = power_w < th.off_w if self.busy else power_w >= th.on_w
        if not crossing:
            self._edge = None
            return None
        if self._edge is None:
            self._edge = (t, energy_wh if energy_wh is not None else self._last_energy)
        return self._check(t)

    def tick(self, t: float) -> Transition | None:
        """Let time pass with the last power held; return a transition if a hold time ran out."""
        if self._edge is None:
            return None
        return self._check(t)

    def force_idle(self, t: float, energy_wh: float | None = None) -> Transition | None:
        """The power is known to be gone (relay confirmed off): end a busy period now."""
        self._last_power = 0.0
        if energy_wh is not None:
            self._last_energy = energy_wh
        self._edge = None
        if not self.busy:
            return None
        self.busy = False
        return Transition(False, t, energy_wh if energy_wh is not None else self._last_energy)

    def _check(self, t: float) -> Transition | None:
        assert self._edge is not None
        edge_t, edge_energy = self._edge
        hold = self.thresholds.off_s if self.busy else self.thresholds.on_s
        if t - edge_t < hold:
            return None
        self.busy = not self.busy
        self._edge = None
        return Transition(self.busy, edge_t, edge_energy)


class EnergyCounter:
    """A monotonic energy total (Wh) built from a plug's counter, across counter resets.

    The plug's counter (Tasmota ``Total``, Shelly ``aenergy.total`` or Gen1
    watt-minutes) normally only grows. A drop of more than
    ``reset_tolerance_wh`` is a reset: what the counter showed before is kept
    in a base and the new reading counts on top of it. A smaller drop is
    rounding jitter and ignored. Energy used between the last reading before a
    reset and the reset itself is unknowable and lost; nothing is ever counted
    twice. The total starts at the plug's first reading, so it stays equal to
    the plug's counter for as long as the plug's counter is not reset.

    Across bridge restarts: :meth:`state` and :meth:`restore` carry the base
    and the last reading over (the plug adapters keep them in the spool
    file), so a reset seen before a restart, or one that happened while the
    bridge was down (a first reading below the saved one), still never makes
    the total drop. Not thread-safe: the caller serialises access.
    """

    def __init__(self, reset_tolerance_wh: float = 1.0) -> None:
        self.reset_tolerance_wh = reset_tolerance_wh
        self._base = 0.0
        self._last_raw: float | None = None
        self.resets = 0

    def state(self) -> dict[str, float] | None:
        """What :meth:`restore` needs after a restart; None before the first reading."""
        if self._last_raw is None:
            return None
        return {"base_wh": self._base, "last_raw_wh": self._last_raw}

    def restore(self, state: Any) -> bool:
        """Continue from a saved :meth:`state`; False (and nothing changed) if it is malformed."""
        if not isinstance(state, dict):
            return False
        base, last = state.get("base_wh"), state.get("last_raw_wh")
        if not (_is_number(base) and _is_number(last) and base >= 0 and last >= 0):
            return False
        self._base, self._last_raw = float(base), float(last)
        return True

    @property
    def total_wh(self) -> float | None:
        """The monotonic total, or None before the first reading."""
        return None if self._last_raw is None else self._base + self._last_raw

    def update(self, raw_wh: float) -> float:
        """Take one reading of the plug's counter (in Wh) and return the total.

        Raises ValueError for a negative or non-finite reading (a malformed payload).
        """
        if not _is_number(raw_wh) or raw_wh < 0:
            raise ValueError(f"energy counter reading must be a finite number >= 0, got {raw_wh!r}")
        raw = float(raw_wh)
        last = self._last_raw
        if last is None or raw >= last:
            self._last_raw = raw
        elif raw < last - self.reset_tolerance_wh:
            self._base += last
            self._last_raw = raw
            self.resets += 1
            log.info("energy counter reset detected (%.3f Wh -> %.3f Wh)", last, raw)
        # else: a small drop is jitter; keep the last value so the total never decreases.
        total = self.total_wh
        assert total is not None
        return total


def parse_on_off(value: Any) -> bool | None:
    """A relay state as plugs spell it (``ON``/``OFF``, ``on``/``off``, ``1``/``0``, booleans), else None."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("on", "1", "true"):
            return True
        if text in ("off", "0", "false"):
            return False
    return None


def _epoch_ms(t_mono: float) -> int:
    """Convert a ``time.monotonic()`` instant to epoch milliseconds."""
    return round((time.time() - (time.monotonic() - t_mono)) * 1000)


class PlugAdapter(Adapter):
    """Base of the Tasmota and Shelly adapters: power → state, jobs, energy, relay interlock.

    States: the plug not heard from yet, or its LWT says offline → ``offline``;
    otherwise ``running`` while busy (with an implicit job) and ``idle``
    otherwise. A relay switched off is ``idle``: the machine is unpowered but
    not broken; with an interlock it is then also disabled. ``enabled`` tells
    the truth: for an interlock machine it is true only while the online plug
    reports its relay on. Going offline does not end a job: the plug's counter
    keeps counting, and the job ends when the power is seen to drop.

    The interlock: ``enable``/``disable`` switch the relay and return only once
    the plug reports the new relay state (CommandError ``not_confirmed`` after
    ``confirm_timeout_s``, ``device_error`` at once when the plug is offline). While
    disabled, a relay found on (the plug's button, the plug back from a power
    cut) is switched off again; a relay found off while enabled is never
    switched on by the adapter. At start the wanted state (``enabled`` from
    the bridge, or ``set_enabled(..., initial=True)``) is applied only once
    the plug has reported its relay state, and only if that state is wrong.

    Threads: plug callbacks (the transport's thread), :meth:`poll` (the
    adapter's thread) and commands (another thread) all change state under
    ``_state_lock``, which is also held while reporting to the sink so that
    reports keep their order. ``enabled`` takes no lock, so a sink may read it
    at any time. Callbacks never publish to the plug; :meth:`poll` does.
    """

    poll_interval_s = 0.5
    #: A plug only switches the machine's power (the interlock, which the bridge adds when
    #: configured): it cannot pause, resume or cancel the machine's job.
    capabilities = ()

    def __init__(
        self,
        machine: str,
        options: Mapping[str, Any],
        sink: AdapterSink,
        *,
        interlock: bool = False,
        enabled: bool = True,
    ) -> None:
        super().__init__(machine, options, sink, interlock=interlock, enabled=enabled)
        self.thresholds = Thresholds.from_options(options)
        self.confirm_timeout_s = float(options.get("confirm_timeout_s", DEFAULT_CONFIRM_TIMEOUT_S))
        self.detector = BusyDetector(self.thresholds)
        self.energy = EnergyCounter()
        # The energy counter's base survives a bridge restart when the sink can keep state (the
        # bridge keeps it in the spool file); a sink without it (tests) starts from the plug's counter.
        self._load_state = getattr(sink, "load_state", None)
        self._save_state = getattr(sink, "save_state", None)
        if self._load_state is not None:
            saved = self._load_state(ENERGY_STATE)
            if saved is not None and not self.energy.restore(saved):
                log.warning("%s: saved energy counter %r is malformed; starting afresh", machine, saved)
        self.malformed_count = 0
        self._state_lock = threading.RLock()
        self._relay_cond = threading.Condition()  # never acquire _state_lock while holding it
        self._online: bool | None = None  # None: nothing heard from the plug yet
        self._lwt_seen = False
        self._relay_on: bool | None = None  # None: unknown
        self._relay_seq = 0  # bumps on every relay report, so a waiter sees even an unchanged state
        self._restore_pending = interlock  # apply the wanted state once the relay state is known
        self._restore_to: bool | None = None  # the relay state poll() must restore
        self._query_wanted = False
        self._job: JobInfo | None = None
        self._job_energy_start: float | None = None
        self._reported: tuple[str, JobInfo | None, bool] | None = None
        self._subscribed = False
        self._last_enforce = -math.inf
        self._on_edges = 0  # how often the relay was newly seen on
        self._enforced_edges = 0
        self._commands_in_flight = 0
        self._last_query = -math.inf

    # -- what concrete adapters implement -------------------------------------------------------

    @abc.abstractmethod
    def _subscribe(self) -> None:
        """Subscribe to the plug's own topics through the sink."""

    @abc.abstractmethod
    def _send_relay(self, on: bool) -> None:
        """Publish what switches the relay and makes the plug report its state (never retained)."""

    @abc.abstractmethod
    def _query_relay(self) -> None:
        """Publish what makes the plug report its relay state (and its meter, if it can)."""

    # -- life cycle -----------------------------------------------------------------------------

    def setup(self) -> None:
        with self._state_lock:
            first = not self._subscribed
            self._subscribed = True
            self._report_status()
        if first:
            self._subscribe()
        with self._state_lock:
            self._last_query = time.monotonic()
        self._query_relay()

    def poll(self) -> None:
        now = time.monotonic()
        with self._state_lock:
            transition = self.detector.tick(now)
            if transition is not None:
                self._apply_transition(transition)
            # Ask again while the relay state is unknown: a query published before the bridge's
            # connection was up, or lost with it, is never answered.
            unknown = self._relay_on is None and self._online is not False
            query = self._query_wanted or (unknown and now - self._last_query >= QUERY_RETRY_S)
            self._query_wanted = False
            if query:
                self._last_query = now
            restoring = self._restore_to is not None
            switch_to = self._enforcement_needed(now)
        if query:
            self._query_relay()
        if switch_to is None:
            return
        if restoring:
            log.info("%s: restoring the relay %s", self.machine, "on" if switch_to else "off")
            self._send_relay(switch_to)
            return
        log.warning("%s: relay found on while the machine is disabled; switching it off", self.machine)
        self._send_relay(False)
        self.sink.event("interlock_enforced", detail={"relay": "off"})

    def close(self) -> None:
        with self._relay_cond:
            self._relay_cond.notify_all()

    # -- interlock ------------------------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        if not self.interlock:
            return True
        # Plain attribute reads, no lock: the sink may call this while we report to it.
        return self._relay_on is True and self._online is True

    def set_enabled(self, enabled: bool, *, initial: bool = False) -> None:
        """Switch the relay (interlock machines) and wait until the plug confirms it.

        With ``initial`` nothing is switched here: the wanted state is recorded
        and applied by :meth:`poll` once the plug has reported its relay
        state, and only if that state differs. Otherwise raises CommandError
        ``device_error`` when the plug is offline or does not report the new
        state within ``confirm_timeout_s`` (``not_confirmed``: the command was
        sent; the wanted state stays recorded and a relay found on while
        disabled is still switched off).
        """
        if not self.interlock:
            raise CommandError("unsupported", f"{self.machine} has no interlock")
        with self._state_lock:
            self._enabled = enabled
            self._restore_pending = initial
            self._restore_to = None
            if initial:
                self._decide_restore()
                return
            if self._online is False:
                raise CommandError("device_error", f"the plug of {self.machine} is offline")
            seq0 = self._relay_seq
            self._commands_in_flight += 1  # poll() must not enforce the old state meanwhile
        try:
            self._send_relay(enabled)
            deadline = time.monotonic() + self.confirm_timeout_s
            with self._relay_cond:
                while not (self._relay_seq > seq0 and self._relay_on is enabled):
                    if self._online is False:
                        raise CommandError("device_error", f"the plug of {self.machine} went offline")
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise CommandError(
                            NOT_CONFIRMED,
                            f"the plug of {self.machine} did not confirm relay "
                            f"{'on' if enabled else 'off'} within {self.confirm_timeout_s:g} s",
                        )
                    self._relay_cond.wait(remaining)
        finally:
            with self._state_lock:
                self._commands_in_flight -= 1
                self._enforced_edges = self._on_edges
                self._last_enforce = time.monotonic()

    def _decide_restore(self) -> None:
        """Under the state lock: compare the wanted start state with the first relay state reported."""
        if self._restore_pending and self._relay_on is not None and self._online is True:
            self._restore_pending = False
            if self._relay_on is not self._enabled:
                self._restore_to = self._enabled

    def _enforcement_needed(self, now: float) -> bool | None:
        """Under the state lock: the relay state to command now, or None."""
        if (
            not self.interlock
            or self._relay_on is None
            or self._online is not True
            or self._commands_in_flight
        ):
            return None
        if self._restore_to is not None:
            restore, self._restore_to = self._restore_to, None
            self._last_enforce = now
            self._enforced_edges = self._on_edges
            return restore
        # At run time only ever switch off: never power a machine up unasked.
        # Again each time the relay is newly seen on, or when the plug ignored the last try (a
        # periodic report of the old state, still in flight, is neither).
        fresh = self._on_edges != self._enforced_edges or now - self._last_enforce >= self.confirm_timeout_s
        if not self._enabled and self._relay_on and fresh:
            self._last_enforce = now
            self._enforced_edges = self._on_edges
            return False
        return None

    # -- what concrete adapters call from the plug's callbacks --------------------------------

    def _guarded(self, handler: Callable[[bytes], None]) -> Callable[[str, bytes], None]:
        """Wrap a handler so that a bad message is counted and logged and never escapes."""

        def callback(topic: str, payload: bytes) -> None:
            try:
                handler(bytes(payload))
            except ValueError as exc:  # MalformedPayload, or an impossible energy reading
                self._malformed(topic, payload, str(exc))
            except Exception as exc:  # a bug must not kill the transport's thread
                self._malformed(topic, payload, f"{type(exc).__name__}: {exc}")

        return callback

    def _malformed(self, topic: str, payload: bytes, why: str) -> None:
        with self._state_lock:
            self.malformed_count += 1
            count = self.malformed_count
        log.warning("%s: malformed message #%d on %s (%s): %.200r", self.machine, count, topic, why, payload)

    def _heard(self) -> None:
        """Under the state lock: any message from the plug; it proves it online unless an LWT says otherwise."""
        if not self._lwt_seen and self._online is not True:
            self._query_wanted = self._online is False
            self._online = True

    def _on_online(self, online: bool) -> None:
        """The plug's LWT topic (retained): online or offline."""
        with self._state_lock:
            was = self._online
            self._lwt_seen = True
            self._online = online
            if not online:
                # Unknown until the plug tells again; also wakes command waiters to time out cleanly.
                self._relay_on = None
            elif was is False:
                # Back online: the relay or the counter may have changed while it was away. (The
                # first time, setup() has asked already.)
                self._query_wanted = True
            self._report_status()
        self._notify_relay()

    def _on_relay(self, on: bool) -> None:
        """The plug reported its relay state (a confirmation, a query's answer or a periodic report)."""
        now = time.monotonic()
        with self._state_lock:
            self._heard()
            changed = self._relay_on is not None and self._relay_on is not on
            if on and self._relay_on is not True:
                self._on_edges += 1
            self._relay_on = on
            self._relay_seq += 1
            self._decide_restore()
            if not on:
                transition = self.detector.force_idle(now, self.energy.total_wh)
                if transition is not None:
                    self._apply_transition(transition)
            self._report_status()
            if changed:
                self.sink.event("power_on" if on else "power_off", detail={"relay": "on" if on else "off"})
        self._notify_relay()

    def _notify_relay(self) -> None:
        with self._relay_cond:
            self._relay_cond.notify_all()

    def _on_reading(
        self,
        *,
        power_w: float | None = None,
        energy_raw_wh: float | None = None,
        voltage_v: float | None = None,
        current_a: float | None = None,
    ) -> None:
        """One reading of the plug's meter; what the plug did not send is None.

        Raises ValueError for an impossible energy reading before changing anything.
        """
        now = time.monotonic()
        values: dict[str, float] = {}
        with self._state_lock:
            energy = self.energy.total_wh
            if energy_raw_wh is not None:
                before = self.energy.state()
                energy = self.energy.update(energy_raw_wh)
                values["energy_wh"] = round(energy, 3)
                after = self.energy.state()
                if self._save_state is not None and after != before:
                    try:
                        self._save_state(ENERGY_STATE, after)
                    except Exception as exc:  # a full disk must not stop the readings
                        log.warning("%s: energy counter not saved: %s", self.machine, exc)
                if self._job is not None and self._job_energy_start is None:
                    # The job began before the first counter reading (a Gen2 delta without
                    # aenergy): count from the first reading we have.
                    self._job_energy_start = energy
            self._heard()
            if power_w is not None:
                values["power_w"] = float(power_w)
                transition = self.detector.feed(now, float(power_w), energy)
                if transition is not None:
                    self._apply_transition(transition)
            if voltage_v is not None:
                values["voltage_v"] = float(voltage_v)
            if current_a is not None:
                values["current_a"] = float(current_a)
            self._report_status()
            if values:
                self.sink.telemetry(values)

    # -- state ----------------------------------------------------------------------------------

    def _apply_transition(self, transition: Transition) -> None:
        """Under the state lock: start or finish the implicit job."""
        ts = _epoch_ms(transition.edge_t)
        if transition.busy:
            self._job = JobInfo(id=str(uuid.uuid4()), name="in use (power)", started_ts=ts)
            self._job_energy_start = transition.edge_energy_wh
            self._report_status()
            self.sink.event("job_started", job=self._job, ts=ts)
            return
        job = self._job
        if job is None:
            return
        detail: dict[str, Any] = {"duration_s": round(max(0, ts - job.started_ts) / 1000, 3)}
        if transition.edge_energy_wh is not None and self._job_energy_start is not None:
            detail["energy_wh"] = round(transition.edge_energy_wh - self._job_energy_start, 3)
        self._job = None
        self._job_energy_start = None
        self._report_status()
        self.sink.event("job_finished", job=job, detail=detail, ts=ts)

    def _report_status(self) -> None:
        """Under the state lock: tell the sink the state when it, the job or ``enabled`` changed."""
        if self._online is not True:
            state = OFFLINE
        elif self.detector.busy:
            state = RUNNING
        else:
            state = IDLE
        current = (state, self._job, self.enabled)
        if current != self._reported:
            self._reported = current
            self.sink.set_status(state=state, job=self._job)

    # -- for tests and diagnostics --------------------------------------------------------------

    @property
    def relay_on(self) -> bool | None:
        """The relay state the plug last reported (None: not known)."""
        return self._relay_on

    @property
    def online(self) -> bool | None:
        """Whether the plug is online (None: nothing heard yet)."""
        return self._online
