"""The one small interface every machine adapter implements.

An adapter talks to one machine's controller (OctoPrint's REST API, a GRBL
serial port, a power plug's own MQTT topics) and reports what it sees through
an :class:`AdapterSink`. It never owns an MQTT client: the transport owns the
connection, reconnects, spooling and the contract's topics. Plug adapters that
must reach the plug's own topics get ``subscribe``/``publish`` from the sink.

Life cycle, driven by the bridge (each adapter runs in its own thread)::

    adapter = ADAPTERS[name](machine_config, sink)
    adapter.setup()                  # open the port / check the server; may raise
    while running:
        adapter.poll()               # blocking work for one cycle; reports via sink
        sleep(adapter.poll_interval_s)
    adapter.close()

Commands arrive from another thread through :meth:`Adapter.command`, which
raises :class:`CommandError` with a contract error code when it cannot obey.
"""

from __future__ import annotations

import abc
import dataclasses
import threading
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Protocol

from firmware_bridge import protocol

# Machine states of contract v1 (spelled once, in the contract), re-exported for the adapters.
from firmware_bridge.protocol import ERROR, IDLE, OFFLINE, PAUSED, RUNNING, STATES  # noqa: F401

# Command actions of contract v1 (spelled once, in the contract), re-exported for the adapters.
ACTIONS = protocol.ACTIONS


@dataclasses.dataclass(frozen=True)
class JobInfo:
    """The job a machine is working on, as the contract's ``status.job``."""

    id: str
    name: str
    started_ts: int  # epoch ms
    progress_pct: float | None = None


@dataclasses.dataclass(frozen=True)
class ErrorInfo:
    """A machine fault, as the contract's ``status.error``."""

    code: str
    message: str


class CommandError(Exception):
    """A command the adapter cannot carry out.

    ``code`` is one of the contract's ack codes: ``unsupported``,
    ``invalid_state``, ``device_error`` or ``invalid``.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class AdapterSink(Protocol):
    """What the bridge offers an adapter. Every method is thread-safe."""

    def set_status(
        self,
        *,
        state: str,
        job: JobInfo | None = None,
        error: ErrorInfo | None = None,
        ts: int | None = None,
    ) -> None:
        """Report the machine's current state; published (retained) when it changes."""

    def telemetry(self, values: Mapping[str, float], ts: int | None = None) -> None:
        """Report readings (names from the contract's vocabulary, numbers only)."""

    def event(
        self,
        type: str,
        *,
        job: JobInfo | None = None,
        detail: Mapping[str, Any] | None = None,
        ts: int | None = None,
    ) -> None:
        """Report an event such as ``job_started`` or ``alarm``."""

    def subscribe(self, topic: str, callback: Callable[[str, bytes], None]) -> None:
        """Plug adapters only: receive messages on one of the plug's own topics."""

    def publish(self, topic: str, payload: bytes | str, *, retain: bool = False) -> None:
        """Plug adapters only: publish to one of the plug's own topics (QoS 1)."""


class Adapter(abc.ABC):
    """Base class of every adapter; subclasses register in ``ADAPTERS``."""

    #: Name used in ``bridge.toml`` (``adapter = "grbl"``).
    name: ClassVar[str]
    #: Seconds between two calls of :meth:`poll`.
    poll_interval_s: ClassVar[float] = 1.0
    #: The job actions (:data:`firmware_bridge.protocol.JOB_ACTIONS`) :meth:`command` carries out.
    #: The bridge adds the interlock's ``enable``/``disable`` for a machine configured with
    #: ``interlock = true`` and publishes the result as ``status.capabilities``, so that the
    #: server offers only these. Declare exactly what :meth:`command` does: a job action
    #: listed here must not answer ``unsupported``.
    capabilities: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        machine: str,
        options: Mapping[str, Any],
        sink: AdapterSink,
        *,
        interlock: bool = False,
        enabled: bool = True,
    ) -> None:
        problems = self.validate_options(options)
        if problems:
            raise ValueError(f"{machine}: " + "; ".join(problems))
        self.machine = machine
        self.options = dict(options)
        self.sink = sink
        self.interlock = interlock
        self._enabled = enabled if interlock else True
        self._lock = threading.RLock()

    @classmethod
    def validate_options(cls, options: Mapping[str, Any]) -> list[str]:
        """Return one human-readable problem per wrong or missing option."""
        return []

    @property
    def enabled(self) -> bool:
        return self._enabled

    def setup(self) -> None:  # noqa: B027 - optional hook
        """Open connections. Raising here marks the machine offline; the bridge retries."""

    @abc.abstractmethod
    def poll(self) -> None:
        """Do one cycle of blocking I/O and report through the sink."""

    def command(self, action: str, params: Mapping[str, Any] | None = None) -> None:
        """Carry out ``action`` or raise :class:`CommandError`."""
        if action in protocol.INTERLOCK_ACTIONS:
            if not self.interlock:
                raise CommandError("unsupported", f"{self.machine} has no interlock")
            self.set_enabled(action == "enable")
            return
        raise CommandError("unsupported", f"{self.name} adapter cannot {action}")

    def set_enabled(self, enabled: bool, *, initial: bool = False) -> None:
        """Record the interlock state; subclasses enforce it (relay, hold, refuse).

        ``initial`` is true when the bridge restores the last commanded state at
        start: an adapter must then not toggle anything that is already right.
        """
        with self._lock:
            self._enabled = enabled

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release ports and sessions."""


ADAPTERS: dict[str, type[Adapter]] = {}


def register(cls: type[Adapter]) -> type[Adapter]:
    """Class decorator: make an adapter available by its ``name``."""
    ADAPTERS[cls.name] = cls
    return cls
