"""An AdapterSink for the plug adapters' tests: records reports, and reaches the broker with a real paho client.

``subscribe``/``publish`` go through a real MQTT connection (paho-mqtt 2, MQTT
5, QoS 1) to the test's private Mosquitto, so the adapters are exercised over
the wire exactly as under the bridge's transport. ``set_status``, ``telemetry``
and ``event`` are recorded; :meth:`PlugTestSink.wait_for` polls a condition with
a deadline (never a fixed sleep).
"""

from __future__ import annotations

import dataclasses
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from firmware_bridge.adapters.base import ErrorInfo, JobInfo

WAIT_S = 30.0


@dataclasses.dataclass(frozen=True)
class Report:
    kind: str  # status | telemetry | event
    data: dict[str, Any]


class PlugTestSink:
    """Record what an adapter reports; carry its plug subscriptions and publications over MQTT."""

    def __init__(self, mqtt_url: str, client_id: str = "plug-test-sink") -> None:
        parts = urllib.parse.urlsplit(mqtt_url)
        self._cond = threading.Condition()
        self.reports: list[Report] = []
        self.published: list[tuple[str, str, bool]] = []
        self.adapter: Any = None  # set by the test: status reports record adapter.enabled like the bridge
        self._callbacks: dict[str, list[Callable[[str, bytes], None]]] = {}
        self._subscribed = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self._client.on_message = self._on_message
        self._client.on_subscribe = lambda *a: self._subscribed.set()
        connected = threading.Event()
        self._client.on_connect = lambda *a: connected.set()
        self._client.connect(parts.hostname or "127.0.0.1", parts.port or 1883, keepalive=30)
        self._client.loop_start()
        if not connected.wait(WAIT_S):
            raise RuntimeError("test sink could not connect to the broker")

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    # -- AdapterSink ----------------------------------------------------------------------------

    def set_status(
        self,
        *,
        state: str,
        job: JobInfo | None = None,
        error: ErrorInfo | None = None,
        ts: int | None = None,
    ) -> None:
        enabled = None if self.adapter is None else self.adapter.enabled
        self._record("status", {"state": state, "job": job, "error": error, "enabled": enabled})

    def telemetry(self, values: Mapping[str, float], ts: int | None = None) -> None:
        self._record("telemetry", dict(values))

    def event(
        self,
        type: str,
        *,
        job: JobInfo | None = None,
        detail: Mapping[str, Any] | None = None,
        ts: int | None = None,
    ) -> None:
        self._record("event", {"type": type, "job": job, "detail": dict(detail or {}), "ts": ts})

    def subscribe(self, topic: str, callback: Callable[[str, bytes], None]) -> None:
        with self._cond:
            self._callbacks.setdefault(topic, []).append(callback)
        self._subscribed.clear()
        self._client.subscribe(topic, qos=1)
        # Wait for the SUBACK so that retained messages and commands are not missed.
        if not self._subscribed.wait(WAIT_S):
            raise RuntimeError(f"no SUBACK for {topic}")

    def publish(self, topic: str, payload: bytes | str, *, retain: bool = False) -> None:
        text = payload.decode() if isinstance(payload, bytes) else payload
        with self._cond:
            self.published.append((topic, text, retain))
        self._client.publish(topic, payload, qos=1, retain=retain)

    # -- for the tests --------------------------------------------------------------------------

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._cond:
            callbacks = list(self._callbacks.get(message.topic, []))
        for callback in callbacks:
            callback(message.topic, message.payload)

    def _record(self, kind: str, data: dict[str, Any]) -> None:
        with self._cond:
            self.reports.append(Report(kind, data))
            self._cond.notify_all()

    def of(self, kind: str) -> list[dict[str, Any]]:
        with self._cond:
            return [r.data for r in self.reports if r.kind == kind]

    def events(self, type: str) -> list[dict[str, Any]]:
        return [e for e in self.of("event") if e["type"] == type]

    @property
    def state(self) -> str | None:
        statuses = self.of("status")
        return statuses[-1]["state"] if statuses else None

    def last_value(self, name: str) -> float | None:
        for values in reversed(self.of("telemetry")):
            if name in values:
                return values[name]
        return None

    def wait_for(self, condition: Callable[[], Any], what: str, timeout: float = WAIT_S) -> Any:
        """Poll ``condition`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            result = condition()
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout} s waiting for {what}; reports: {self.reports[-15:]}"
                )
            with self._cond:
                self._cond.wait(0.05)


class AdapterRunner:
    """Run an adapter as the bridge does: ``setup()``, then ``poll()`` every ``poll_interval_s`` in a thread."""

    def __init__(self, adapter: Any) -> None:
        self.adapter = adapter
        self.polls = 0
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="adapter-runner", daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.adapter.poll_interval_s):
            try:
                self.adapter.poll()
            except Exception as exc:  # recorded: the test asserts there were none
                self.errors.append(exc)
            self.polls += 1

    def __enter__(self) -> AdapterRunner:
        self.adapter.setup()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=WAIT_S)
        self.adapter.close()

    def wait_polls(self, n: int, timeout: float = WAIT_S) -> None:
        """Wait until ``n`` more poll cycles have run (lets time-based logic act)."""
        target = self.polls + n
        deadline = time.monotonic() + timeout
        while self.polls < target:
            if time.monotonic() > deadline:
                raise AssertionError(f"only {self.polls} of {target} polls ran within {timeout} s")
            time.sleep(0.02)


class Observer:
    """A plain MQTT client that records every message on some topic filters (retained ones included)."""

    def __init__(self, mqtt_url: str, filters: list[str], client_id: str = "plug-test-observer") -> None:
        parts = urllib.parse.urlsplit(mqtt_url)
        self._cond = threading.Condition()
        self.messages: list[tuple[str, bytes, bool]] = []
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        subscribed = threading.Event()

        def on_connect(c: mqtt.Client, *args: Any) -> None:
            if filters:
                c.subscribe([(f, 1) for f in filters])
            else:
                subscribed.set()

        self.client.on_connect = on_connect
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(parts.hostname or "127.0.0.1", parts.port or 1883, keepalive=30)
        self.client.loop_start()
        if not subscribed.wait(WAIT_S):
            raise RuntimeError("observer could not subscribe")

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.messages.append((message.topic, bytes(message.payload), bool(message.retain)))
            self._cond.notify_all()

    def publish(self, topic: str, payload: bytes | str, *, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(WAIT_S)

    def on(self, topic: str) -> list[bytes]:
        with self._cond:
            return [p for t, p, _ in self.messages if t == topic]

    def wait_for(self, condition: Callable[[], Any], what: str, timeout: float = WAIT_S) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            result = condition()
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout} s waiting for {what}; got {self.messages[-15:]}"
                )
            with self._cond:
                self._cond.wait(0.05)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
