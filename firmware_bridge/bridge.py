"""The runner: one thread per machine adapter, the AdapterSink they report to, and command dispatch.

Threads:

* one per machine (``machine-{lab}/{machine}``): ``setup()`` with retries and
  exponential backoff (the machine is ``offline`` meanwhile), then ``poll()``
  every ``poll_interval_s``. An exception from ``poll()`` is logged and the
  loop goes on (with a growing pause while it keeps failing): nothing an adapter
  does ends its thread.
* one command worker per machine, so a slow controller never delays another
  machine's commands and one machine's commands run in the order they came.
* the spool pump (:class:`firmware_bridge.transport.SpoolPump`), which also
  re-publishes the retained statuses and the online flag after each reconnect.
* paho's network thread, which only hands messages over.

Commands (``…/cmd``): decoded and validated (``invalid`` otherwise), refused
past ``expires`` (``expired``), idempotent by ``id`` (results are kept in the
spool database, so a repeat — even after a restart — gets the first answer
again without running twice), and always acknowledged on ``…/cmd/ack``.
An adapter's ``command()`` runs in a thread of its own and is waited for at
most ``[bridge] command_timeout_s`` (a few seconds once the bridge is
stopping): a controller that hangs gets a ``device_error`` ack and never
blocks that machine's later commands or the bridge's stop. While
``MAX_HUNG_COMMANDS`` of a machine's commands still hang, the next ones are
refused at once (``device_error``) instead of piling up threads.

Interlock: a machine with ``interlock = true`` starts disabled unless a last
commanded state was persisted; that state is passed to the adapter as
``enabled=`` and once more as ``set_enabled(state, initial=True)`` after each
successful ``setup()``, so a restart restores it without toggling a relay
that is already right. ``status.enabled`` is what the adapter reports.

Capabilities: every status carries ``capabilities``, the adapter class's job
actions plus ``enable``/``disable`` when the machine is interlocked
(:func:`firmware_bridge.protocol.machine_capabilities`), also while the machine is
offline, so the server offers only commands the machine can carry out.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from firmware_bridge import protocol
from firmware_bridge.adapters import ADAPTERS, load_all
from firmware_bridge.adapters.base import Adapter, CommandError, ErrorInfo, JobInfo
from firmware_bridge.config import BridgeConfig, MachineConfig
from firmware_bridge.ratelimit import RateLimitedLog
from firmware_bridge.spool import CommandResult, Spool
from firmware_bridge.transport import SpoolPump, Transport

log = logging.getLogger(__name__)

SETUP_BACKOFF_MIN_S = 1.0
SETUP_BACKOFF_MAX_S = 60.0
#: Once the bridge is stopping, a running command is waited for at most this long.
STOP_COMMAND_GRACE_S = 3.0
#: Commands of one machine that may hang in the adapter before new ones are refused outright.
MAX_HUNG_COMMANDS = 3
#: Longest ``error.message`` of an ack (the contract's limit).
ACK_MESSAGE_MAX = 2048

#: Repeated errors of one machine (invalid commands, bad readings) are logged once a minute.
_repeats = RateLimitedLog(log, interval_s=60.0)


def _job(job: JobInfo | None) -> protocol.Job | None:
    if job is None:
        return None
    return protocol.Job(id=job.id, name=job.name, started_ts=job.started_ts, progress_pct=job.progress_pct)


class MachineRunner:
    """Runs one adapter and is its :class:`~firmware_bridge.adapters.base.AdapterSink`."""

    def __init__(self, bridge: Bridge, cfg: MachineConfig) -> None:
        self.bridge = bridge
        self.cfg = cfg
        self.key = cfg.key
        self.adapter: Adapter | None = None
        self.ready = False
        self._lock = threading.RLock()
        self._state = protocol.OFFLINE
        self._job: protocol.Job | None = None
        self._error: protocol.MachineError | None = None
        self._status_ts = protocol.now_ms()
        self._last_published: tuple[Any, ...] | None = None
        self._last_published_at = 0.0
        self._last_published_ts = 0
        self._stop = bridge.stop_event
        self._thread: threading.Thread | None = None
        self.commands = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"cmd-{self.key}"
        )
        persisted = bridge.spool.get_enabled(self.key) if cfg.interlock else None
        # An interlocked machine starts disabled unless a commanded state survived.
        self.initial_enabled = (persisted if persisted is not None else False) if cfg.interlock else True
        self.poll_failures = 0
        self._command_threads: list[threading.Thread] = []  # adapter calls that outlived their wait
        # Known before the adapter is made (a machine whose setup fails still shows what it can do);
        # an adapter that is not available can do nothing.
        adapter_cls = ADAPTERS.get(cfg.adapter)
        self.capabilities = (
            protocol.machine_capabilities(adapter_cls.capabilities, interlock=cfg.interlock)
            if adapter_cls is not None
            else ()
        )

    # --------------------------------------------------------------- sink API

    def set_status(
        self,
        *,
        state: str,
        job: JobInfo | None = None,
        error: ErrorInfo | None = None,
        ts: int | None = None,
    ) -> None:
        if state not in protocol.STATES:
            log.error("%s: adapter reported unknown state %r; ignored", self.key, state)
            return
        with self._lock:
            self._state = state
            self._job = _job(job)
            self._error = (
                None if error is None else protocol.MachineError(code=error.code, message=error.message)
            )
            self._status_ts = ts if ts is not None else protocol.now_ms()
        self.publish_status()

    def telemetry(self, values: Mapping[str, float], ts: int | None = None) -> None:
        clean = {}
        for name, value in dict(values).items():
            problem = protocol.reading_problem(name, value)  # the contract's rule: name, finite, bounds
            if problem is not None:
                _repeats.warning((self.key, "reading"), "%s: telemetry left out: %s", self.key, problem)
                continue
            clean[name] = value
        if not clean:
            return
        ts = ts if ts is not None else protocol.now_ms()
        self.bridge.spool_message(
            self.key,
            protocol.topic_telemetry(self.cfg.lab, self.cfg.machine),
            lambda sid, seq: protocol.encode(protocol.Telemetry(ts=ts, sid=sid, seq=seq, values=clean)),
        )

    def event(
        self,
        type: str,
        *,
        job: JobInfo | None = None,
        detail: Mapping[str, Any] | None = None,
        ts: int | None = None,
    ) -> None:
        ts = ts if ts is not None else protocol.now_ms()
        pjob = _job(job)
        detail_dict = None if detail is None else dict(detail)
        self.bridge.spool_message(
            self.key,
            protocol.topic_event(self.cfg.lab, self.cfg.machine),
            lambda sid, seq: protocol.encode(
                protocol.Event(ts=ts, sid=sid, seq=seq, type=type, job=pjob, detail=detail_dict)
            ),
        )

    def subscribe(self, topic: str, callback: Callable[[str, bytes], None]) -> None:
        self.bridge.transport.subscribe(topic, callback)

    def load_state(self, name: str) -> Any:
        """Optional sink extension: a JSON value the adapter saved with :meth:`save_state`, or None."""
        text = self.bridge.spool.get_state(self.key, name)
        if text is None:
            return None
        try:
            return json.loads(text)
        except ValueError:
            log.warning("%s: saved adapter state %r is not JSON; ignored", self.key, name)
            return None

    def save_state(self, name: str, value: Any) -> None:
        """Optional sink extension: keep a small JSON value across bridge restarts (in the spool file)."""
        self.bridge.spool.put_state(self.key, name, json.dumps(value))

    def publish(self, topic: str, payload: bytes | str, *, retain: bool = False) -> None:
        if self.bridge.transport.publish(topic, payload, retain=retain) is None:
            log.warning("%s: not connected; message to %s not sent", self.key, topic)

    # ----------------------------------------------------------------- status

    @property
    def enabled(self) -> bool:
        if not self.cfg.interlock:
            return True
        if self.adapter is not None:
            return bool(self.adapter.enabled)
        return self.initial_enabled

    def status(self) -> protocol.Status:
        with self._lock:
            return protocol.Status(
                state=self._state,
                enabled=self.enabled,
                bridge=self.bridge.cfg.bridge.id,
                adapter=self.cfg.adapter,
                ts=self._status_ts,
                job=self._job,
                error=self._error,
                spool_dropped=self.bridge.spool.dropped(self.key),
                capabilities=self.capabilities,
            )

    def publish_status(self, *, force: bool = False) -> None:
        """Publish the retained status if it changed (or ``force``); skipped while disconnected."""
        with self._lock:
            status = self.status()
            fingerprint = (status.state, status.enabled, status.job, status.error, status.spool_dropped)
            if not force and fingerprint == self._last_published:
                return
            if fingerprint != self._last_published and self._status_ts <= self._last_published_ts:
                # Something changed without a new state (the interlock after enable/disable): a new
                # status needs a newer ts, or the server keeps the older one it has (``status_ts < ts``).
                self._status_ts = max(protocol.now_ms(), self._last_published_ts + 1)
                status = self.status()
            try:
                payload = protocol.encode(status)
            except protocol.ProtocolError as exc:
                log.error("%s: status not publishable: %s", self.key, exc)
                return
            mid = self.bridge.transport.publish(
                protocol.topic_status(self.cfg.lab, self.cfg.machine), payload, retain=True
            )
            if mid is not None:
                self._last_published = fingerprint
                self._last_published_at = time.monotonic()
                self._last_published_ts = status.ts

    def maybe_republish(self, interval_s: float) -> None:
        if time.monotonic() - self._last_published_at >= interval_s:
            self.publish_status(force=True)
        else:
            self.publish_status()

    # ---------------------------------------------------------------- running

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"machine-{self.key}", daemon=True)
        self._thread.start()

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _make_adapter(self) -> Adapter:
        cls = ADAPTERS.get(self.cfg.adapter)
        if cls is None:
            raise RuntimeError(f"adapter {self.cfg.adapter!r} is not available")
        adapter = cls(
            self.cfg.machine,
            self.cfg.options,
            self,
            interlock=self.cfg.interlock,
            enabled=self.initial_enabled,
        )
        if self.cfg.poll_interval_s is not None:
            adapter.poll_interval_s = self.cfg.poll_interval_s  # type: ignore[misc]
        return adapter

    def _offline(self, code: str, message: str) -> None:
        self.set_status(state=protocol.OFFLINE, error=ErrorInfo(code=code, message=message[:1000]))

    def _run(self) -> None:
        backoff = SETUP_BACKOFF_MIN_S
        while not self._stop.is_set():
            try:
                if self.adapter is None:
                    self.adapter = self._make_adapter()
                self.adapter.setup()
            except Exception as exc:
                log.warning(
                    "%s: %s setup failed: %s; retrying in %.0f s", self.key, self.cfg.adapter, exc, backoff
                )
                self._offline("setup_failed", f"{type(exc).__name__}: {exc}")
                if self.adapter is not None:
                    self._safe_close()
                if self._stop.wait(backoff):
                    break
                backoff = min(backoff * 2, SETUP_BACKOFF_MAX_S)
                continue
            backoff = SETUP_BACKOFF_MIN_S
            if self.cfg.interlock:
                try:
                    self.adapter.set_enabled(self.initial_enabled, initial=True)
                except Exception:
                    log.exception("%s: restoring interlock state failed", self.key)
            self.ready = True
            log.info("%s: %s adapter ready", self.key, self.cfg.adapter)
            self.publish_status()
            self._poll_loop()
            break
        self.ready = False
        self._safe_close()

    def _poll_loop(self) -> None:
        adapter = self.adapter
        assert adapter is not None
        while not self._stop.is_set():
            try:
                adapter.poll()
                if self.poll_failures:
                    log.info("%s: poll works again after %d failures", self.key, self.poll_failures)
                self.poll_failures = 0
            except Exception as exc:
                self.poll_failures += 1
                if self.poll_failures == 1 or self.poll_failures % 100 == 0:
                    log.warning(
                        "%s: poll failed (%d in a row): %s: %s",
                        self.key,
                        self.poll_failures,
                        type(exc).__name__,
                        exc,
                    )
            self.publish_status()  # the interlock flag may have changed
            pause = float(getattr(adapter, "poll_interval_s", 1.0))
            if self.poll_failures:
                pause = max(pause, min(30.0, 0.5 * 2 ** min(self.poll_failures, 6)))
            self._stop.wait(pause)

    def _safe_close(self) -> None:
        if self.adapter is None:
            return
        try:
            self.adapter.close()
        except Exception as exc:
            log.warning("%s: close failed: %s", self.key, exc)

    # --------------------------------------------------------------- commands

    def submit_command(self, payload: bytes) -> None:
        self.commands.submit(self._handle_command, payload)

    def _ack(self, command_id: str | None, result: CommandResult) -> None:
        self._acked = True
        # The message is cut to what the contract allows: an over-long one must never cost the ack.
        message = (result.message or "")[:ACK_MESSAGE_MAX]
        error = (
            None
            if result.ok
            else protocol.AckError(code=result.code or protocol.DEVICE_ERROR, message=message)
        )
        ack = protocol.CommandAck(id=command_id, ok=result.ok, ts=protocol.now_ms(), error=error)
        topic = protocol.topic_cmd_ack(self.cfg.lab, self.cfg.machine)
        if self.bridge.transport.publish(topic, protocol.encode(ack)) is None:
            log.warning("%s: ack of %s not sent (not connected)", self.key, command_id)

    def _handle_command(self, payload: bytes) -> None:
        """Handle one command; whatever happens, it is acknowledged (``device_error`` at worst)."""
        self._acked = False
        try:
            self._handle_command_inner(payload)
        except Exception as exc:
            log.exception("%s: command handling failed", self.key)
            if not self._acked:
                try:
                    self._ack(
                        protocol.command_id_of(payload),
                        CommandResult(
                            False, protocol.DEVICE_ERROR, f"the bridge failed on this command: {exc}"
                        ),
                    )
                except Exception:
                    log.exception("%s: could not acknowledge a failed command", self.key)

    def _handle_command_inner(self, payload: bytes) -> None:
        received = protocol.now_ms()
        try:
            cmd = protocol.decode_command(payload)
        except protocol.ProtocolError as exc:
            # Always acknowledged: with the id when one can be read, else with id null (the hub
            # cannot match it to a command, which then ends as "no answer" at its expiry).
            command_id = protocol.command_id_of(payload)
            _repeats.warning(
                (self.key, "invalid_command"), "%s: invalid command %s: %s", self.key, command_id, exc
            )
            self._ack(command_id, CommandResult(False, protocol.INVALID, str(exc)))
            return
        previous = self.bridge.spool.get_command(self.key, cmd.id)
        if previous is not None:
            log.info("%s: command %s seen before; acknowledging its first result again", self.key, cmd.id)
            self._ack(cmd.id, previous)
            return
        if cmd.is_expired(received):
            result = CommandResult(
                False, protocol.EXPIRED, f"expired at {cmd.expires}, received at {received}"
            )
        else:
            result = self._execute(cmd)
        self.bridge.spool.put_command(self.key, cmd.id, result)
        # A disable the machine did not confirm in time was still recorded by the adapter (which keeps
        # enforcing it): keep it across restarts too.
        if cmd.action in ("enable", "disable") and (
            result.ok or (cmd.action == "disable" and result.code == protocol.NOT_CONFIRMED)
        ):
            self.bridge.spool.set_enabled(self.key, cmd.action == "enable")
            self.initial_enabled = cmd.action == "enable"
        log.info(
            "%s: command %s %s -> %s",
            self.key,
            cmd.id,
            cmd.action,
            "ok" if result.ok else f"{result.code}: {result.message}",
        )
        self._ack(cmd.id, result)
        self.publish_status()

    def _execute(self, cmd: protocol.Command) -> CommandResult:
        if cmd.action in ("enable", "disable") and not self.cfg.interlock:
            return CommandResult(False, protocol.UNSUPPORTED, f"{self.key} has no interlock")
        adapter = self.adapter
        if adapter is None:
            return CommandResult(False, protocol.DEVICE_ERROR, f"{self.key}: adapter not started")
        params: dict[str, Any] = dict(cmd.params or {})
        if cmd.booking is not None:
            params.setdefault("booking", cmd.booking)
        self._command_threads = [t for t in self._command_threads if t.is_alive()]
        if len(self._command_threads) >= MAX_HUNG_COMMANDS:
            return CommandResult(
                False,
                protocol.DEVICE_ERROR,
                f"{self.key}: {len(self._command_threads)} earlier commands still hang in the "
                f"{self.cfg.adapter} adapter; is the controller answering?",
            )
        outcome: list[CommandResult] = []
        done = threading.Event()

        def call() -> None:
            try:
                adapter.command(cmd.action, params)
                outcome.append(CommandResult(True))
            except CommandError as exc:
                code = exc.code if exc.code in protocol.ACK_CODES else protocol.DEVICE_ERROR
                outcome.append(CommandResult(False, code, exc.message))
            except Exception as exc:
                outcome.append(CommandResult(False, protocol.DEVICE_ERROR, f"{type(exc).__name__}: {exc}"))
            finally:
                done.set()

        thread = threading.Thread(target=call, name=f"cmd-{self.key}-{cmd.action}", daemon=True)
        thread.start()
        if self._wait_command(done):
            return outcome[0]
        self._command_threads.append(thread)
        log.error("%s: %s did not finish in time; acknowledged as device_error", self.key, cmd.action)
        return CommandResult(
            False,
            protocol.DEVICE_ERROR,
            f"{self.key}: {cmd.action} did not finish within {self.bridge.cfg.bridge.command_timeout_s:g} s "
            "(the controller may still carry it out)",
        )

    def _wait_command(self, done: threading.Event) -> bool:
        """Wait for ``done`` up to the command timeout, or a short grace once the bridge stops."""
        deadline = time.monotonic() + self.bridge.cfg.bridge.command_timeout_s
        stop_deadline: float | None = None
        while not done.wait(0.1):
            now = time.monotonic()
            if stop_deadline is None and self._stop.is_set():
                stop_deadline = now + STOP_COMMAND_GRACE_S
            if now >= deadline or (stop_deadline is not None and now >= stop_deadline):
                return done.is_set()
        return True


class Bridge:
    """The whole bridge process: spool, transport, pump and one runner per machine."""

    def __init__(self, cfg: BridgeConfig, *, spool: Spool | None = None) -> None:
        load_all()
        self.cfg = cfg
        self.stop_event = threading.Event()
        self.spool = spool or Spool(cfg.bridge.spool, max_messages=cfg.bridge.spool_max_messages)
        self.transport = Transport(cfg.mqtt, cfg.bridge.id)
        self.pump = SpoolPump(self.transport, self.spool, window=cfg.bridge.publish_window)
        self.machines: dict[str, MachineRunner] = {}
        for mcfg in cfg.machines:
            self.machines[mcfg.key] = MachineRunner(self, mcfg)
        self._by_cmd_topic = {protocol.topic_cmd(m.cfg.lab, m.cfg.machine): m for m in self.machines.values()}
        self._last_housekeeping = 0.0
        self._last_online = 0.0
        self.transport.add_connect_listener(self._on_connected)
        self.pump.ticks.append(self._housekeeping)

    # --------------------------------------------------------------- life cycle

    def start(self) -> None:
        """Subscribe the cmd topics, connect, and start every thread."""
        for topic in self._by_cmd_topic:
            self.transport.subscribe(topic, self._on_command)
        self.spool.prune_commands(self.cfg.bridge.command_memory_s)
        self.transport.start()
        self.pump.start()
        for runner in self.machines.values():
            runner.start()
        log.info(
            "bridge %s started: %d machines, spool %s (sid %s, %d pending)",
            self.cfg.bridge.id,
            len(self.machines),
            self.spool.path,
            self.spool.sid,
            self.spool.pending(),
        )

    def stop(self, timeout: float = 10.0) -> None:
        """Stop polling, flush acknowledgements and disconnect cleanly."""
        self.stop_event.set()
        for runner in self.machines.values():
            runner.join(timeout)
            runner.commands.shutdown(wait=True, cancel_futures=False)
        # Let acknowledgements already received reach the spool before disconnecting.
        self.pump.stop(timeout)
        self.transport.stop()
        self.pump._take_acks()
        self.pump._flush_deletes(force=True)
        self.spool.close()
        log.info("bridge %s stopped", self.cfg.bridge.id)

    def run_forever(self) -> None:
        """Start, then block until :attr:`stop_event` is set (signal handlers set it)."""
        self.start()
        try:
            while not self.stop_event.wait(1.0):
                pass
        finally:
            self.stop()

    # ------------------------------------------------------------------ plumbing

    def spool_message(self, machine_key: str, topic: str, build: Callable[[str, int], bytes]) -> None:
        """Spool one telemetry/event message (payload built with the next ``seq``) and wake the pump."""
        try:
            self.spool.append(machine_key, topic, build)
        except protocol.ProtocolError as exc:
            log.error("%s: message on %s dropped, it breaks the contract: %s", machine_key, topic, exc)
            return
        self.pump.notify()

    def _on_command(self, topic: str, payload: bytes) -> None:
        runner = self._by_cmd_topic.get(topic)
        if runner is None:
            log.warning("command on %s: not one of this bridge's machines; ignored", topic)
            return
        runner.submit_command(payload)

    def online_message(self) -> protocol.BridgeOnline:
        return protocol.BridgeOnline(
            online=True,
            ts=protocol.now_ms(),
            spool_dropped=self.spool.dropped(),
            spool_pending=self.spool.pending(),
        )

    def _on_connected(self) -> None:
        self.transport.publish(
            self.transport.online_topic, protocol.encode(self.online_message()), retain=True
        )
        for runner in self.machines.values():
            runner.publish_status(force=True)
        self._last_housekeeping = self._last_online = time.monotonic()

    def _housekeeping(self) -> None:
        if not self.transport.connected:
            return
        now = time.monotonic()
        if now - self._last_housekeeping < 5.0:
            return
        self._last_housekeeping = now
        for runner in self.machines.values():
            runner.maybe_republish(self.cfg.bridge.status_interval_s)
        # The online message carries the spool's counters; refresh it now and then.
        if now - self._last_online >= 60.0:
            self._last_online = now
            self.transport.publish(
                self.transport.online_topic, protocol.encode(self.online_message()), retain=True
            )

    def wait_idle(self, timeout: float) -> bool:
        """Wait until the spool is empty (tests and benchmarks)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.spool.pending() == 0 and self.pump.in_flight == 0:
                return True
            time.sleep(0.05)
        return False
