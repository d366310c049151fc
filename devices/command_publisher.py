"""The hub's command publisher: claims ``pending`` Command rows and publishes them on the hub's connection.

Contract, per row (:class:`~devices.models.Command`):

* **claim** — one conditional UPDATE takes up to ``limit`` rows that are
  ``pending``, or ``claimed`` longer than ``claim_timeout_s`` ago (their hub died
  or lost the broker mid-send), still unanswered and not expired, oldest first:
  ``state='claimed', claimed_by=<this hub>, claimed_at=<stamp>, attempts+1``. The
  row conditions are repeated in the UPDATE's own WHERE, so two hubs racing for a
  row cannot both take it: SQLite runs one write at a time, and PostgreSQL re-checks
  the WHERE of a row another transaction just changed (READ COMMITTED). The hub then
  reads back exactly the rows carrying its name and stamp.
* **publish** — QoS 1 on the machine's ``cmd`` topic, on the hub's own MQTT client,
  with a Message Expiry Interval of the command's remaining lifetime and the
  contract's payload (with ``booking`` when set). A row whose lifetime ran out
  before it could be published fails as ``expired`` and is never published.
* **mark** — ``published`` once the broker's PUBACK arrives, only while the claim is
  still this hub's.

Delivery is at least once: a hub killed between claim and mark leaves a claim that
another hub (or this one, restarted) takes again after ``claim_timeout_s`` and
publishes again; the bridge remembers command ids and answers a repeated id with
the first result, without executing it twice.

Woken two ways: through the channel layer (group :data:`devices.commands.HUB_GROUP`,
which :func:`devices.commands.issue_command` signals after its commit), and by a
short poll (``poll_s``). The wake-up crosses processes only with the Redis layer;
with the in-memory layer (no ``REDIS_URL``) the web process cannot reach the hub's
process, and the poll is what delivers — so it is never switched off.

Started and stopped by :class:`devices.hub.Hub` (its own thread in the hub's
process). Imports Django, paho and the contract.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

import paho.mqtt.client as mqtt
from django.db import close_old_connections, connection
from django.db.models import F, Q
from django.utils import timezone
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from devices import commands
from devices.machines import dt_to_ms
from devices.models import Command
from firmware_bridge import protocol

log = logging.getLogger("devices.hub.commands")

#: A claim older than this without ``published`` is taken again (the hub holding it died).
CLAIM_TIMEOUT_S = 10.0
#: The fallback poll: the longest a command waits when no wake-up reaches the hub.
POLL_S = 1.0
#: Rows claimed at a time.
CLAIM_BATCH = 50
#: How long to wait for the broker's PUBACK before leaving the row to be claimed again.
PUBLISH_TIMEOUT_S = 10.0
#: The channel-layer group membership is renewed this often (Redis forgets it after a day).
_GROUP_RENEW_S = 600.0


def _due(now: datetime, claim_timeout_s: float) -> Q:
    """Rows a hub may claim at ``now``: unsent (or a claim gone stale), unanswered, not expired."""
    stale = now - timedelta(seconds=claim_timeout_s)
    return (
        (Q(state=Command.State.PENDING) | Q(state=Command.State.CLAIMED, claimed_at__lt=stale))
        & Q(result=Command.Result.SENT)
        & Q(expires_at__gt=now)
    )


def claim(
    claimer: str,
    *,
    limit: int = CLAIM_BATCH,
    claim_timeout_s: float = CLAIM_TIMEOUT_S,
    now: datetime | None = None,
) -> list[Command]:
    """Take up to ``limit`` due rows for ``claimer`` in one conditional UPDATE; return the rows taken.

    Each row is taken by at most one claimer (see the module's docstring); the
    returned rows carry their machine and lab.
    """
    now = now or timezone.now()
    due = _due(now, claim_timeout_s)
    oldest = Command.objects.filter(due).order_by("issued_at").values("pk")[:limit]
    taken = Command.objects.filter(due, pk__in=oldest).update(
        state=Command.State.CLAIMED, claimed_by=claimer, claimed_at=now, attempts=F("attempts") + 1
    )
    if not taken:
        return []
    return list(
        Command.objects.filter(state=Command.State.CLAIMED, claimed_by=claimer, claimed_at=now)
        .select_related("machine__lab")
        .order_by("issued_at")
    )


def mark_published(command: Command, claimer: str, now: datetime | None = None) -> bool:
    """Note that the broker acknowledged ``command`` (only while ``claimer``'s claim still holds it)."""
    return bool(
        Command.objects.filter(
            pk=command.pk,
            state=Command.State.CLAIMED,
            claimed_by=claimer,
            claimed_at=command.claimed_at,
        ).update(state=Command.State.PUBLISHED, published_at=now or timezone.now())
    )


def payload_of(command: Command) -> bytes:
    """The contract's ``cmd`` message for a row."""
    return protocol.encode(
        protocol.Command(
            id=str(command.id),
            action=command.action,
            ts=dt_to_ms(command.issued_at),
            expires=dt_to_ms(command.expires_at),
            booking=command.booking_id,
        )
    )


class CommandPublisher:
    """Publishes due command rows on ``client`` (an MQTT 5 paho client the caller connects and loops).

    ``connected`` says whether the client is connected now (no claims are taken
    while it is not). :meth:`start` runs the loop and the channel-layer listener in
    threads of their own; :meth:`stop` ends both; :meth:`publish_due` is one pass
    (claim, publish, mark), also usable on its own.
    """

    def __init__(
        self,
        client: mqtt.Client,
        hub_id: str,
        *,
        connected: Callable[[], bool],
        poll_s: float = POLL_S,
        claim_timeout_s: float = CLAIM_TIMEOUT_S,
        batch: int = CLAIM_BATCH,
        publish_timeout_s: float = PUBLISH_TIMEOUT_S,
    ) -> None:
        self.client = client
        # The process id tells two runs of one hub apart in the rows (claimed_by is 64 characters).
        self.claimer = f"{hub_id[:50]}/{os.getpid()}"
        self.connected = connected
        self.poll_s = poll_s
        self.claim_timeout_s = claim_timeout_s
        self.batch = batch
        self.publish_timeout_s = publish_timeout_s
        self.published = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._listener: _WakeListener | None = None

    def start(self) -> None:
        self._stop.clear()
        self._listener = _WakeListener(self._wake)
        self._listener.start()
        self._thread = threading.Thread(target=self._run, name="hub-commands", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 15.0) -> None:
        """Stop after the pass in progress (a claim left unpublished is taken again later)."""
        self._stop.set()
        self._wake.set()
        if self._listener is not None:
            self._listener.stop()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._wake.wait(self.poll_s)
                self._wake.clear()
                if self._stop.is_set() or not self.connected():
                    continue
                try:
                    close_old_connections()
                    # A full batch means more may be waiting: go on without sleeping.
                    while self.publish_due() >= self.batch and not self._stop.is_set():
                        pass
                except Exception:
                    log.exception("publishing commands failed; trying again")
                    close_old_connections()
        finally:
            connection.close()

    def publish_due(self) -> int:
        """Claim due rows, publish them, mark those the broker acknowledged; returns how many were claimed."""
        rows = claim(self.claimer, limit=self.batch, claim_timeout_s=self.claim_timeout_s)
        sent: list[tuple[Command, mqtt.MQTTMessageInfo]] = []
        for command in rows:
            remaining = (command.expires_at - timezone.now()).total_seconds()
            if remaining <= 0:
                commands.expire_unsent(command.pk)
                continue
            props = Properties(PacketTypes.PUBLISH)
            props.MessageExpiryInterval = max(1, math.ceil(remaining))
            try:
                topic = protocol.topic_cmd(command.machine.lab.slug, command.machine.slug)
                payload = payload_of(command)
            except protocol.ProtocolError as exc:
                # This row can never be sent: end it, so it neither blocks the rows after it nor
                # makes the batch be claimed and published again every claim timeout.
                log.warning("command %s cannot be published: %s", command.pk, exc)
                commands.refuse_unsent(command.pk, f"cannot be published: {exc}")
                continue
            info = self.client.publish(topic, payload, qos=protocol.QOS, properties=props)
            sent.append((command, info))
        deadline = time.monotonic() + self.publish_timeout_s
        for command, info in sent:
            try:
                info.wait_for_publish(max(0.0, deadline - time.monotonic()))
            except (ValueError, RuntimeError) as exc:
                log.warning("command %s not published (%s); it will be claimed again", command.pk, exc)
                continue
            if info.is_published():
                if mark_published(command, self.claimer):
                    self.published += 1
            else:
                log.warning("no PUBACK for command %s yet; it will be claimed again", command.pk)
        return len(rows)


class _WakeListener:
    """Listens on the channel layer's :data:`~devices.commands.HUB_GROUP` and sets ``wake`` per message.

    Only for a layer that crosses processes (Redis): the in-memory layer's queues
    belong to one event loop and one process, so with it the poll does the work.
    A layer that fails is retried every few seconds; meanwhile the poll goes on.
    """

    def __init__(self, wake: threading.Event) -> None:
        self._wake = wake
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._channel: str | None = None
        self._layer = None
        self._thread: threading.Thread | None = None
        #: Set once the listener is in the group: from then on no wake-up is missed.
        self.listening = threading.Event()

    def start(self) -> None:
        from channels.layers import DEFAULT_CHANNEL_LAYER, InMemoryChannelLayer, channel_layers

        if DEFAULT_CHANNEL_LAYER not in channel_layers.configs:
            return
        # An instance of its own: the Redis layer lets one event loop receive per instance, and
        # a process may run consumers on the shared one (the tests do).
        layer = channel_layers.make_backend(DEFAULT_CHANNEL_LAYER)
        if isinstance(layer, InMemoryChannelLayer):
            log.info("no cross-process channel layer: commands are found by polling")
            return
        self._layer = layer
        self._thread = threading.Thread(target=self._run, name="hub-commands-wake", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        loop, channel = self._loop, self._channel
        if loop is not None and channel is not None and not loop.is_closed():
            # Unblock the pending receive with a message of our own.
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(
                    self._layer.send(channel, {"type": "hub.stop"}), loop
                ).result(5)
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        try:
            while not self._stop.is_set():
                try:
                    self._loop.run_until_complete(self._listen())
                except Exception as exc:
                    log.warning("command wake-ups unavailable (%s); polling meanwhile", exc)
                    self._stop.wait(5.0)
        finally:
            self._loop.close()

    async def _listen(self) -> None:
        layer = self._layer
        self._channel = channel = await layer.new_channel("hub-commands.")
        try:
            while not self._stop.is_set():
                await layer.group_add(commands.HUB_GROUP, channel)
                self.listening.set()
                try:
                    message = await asyncio.wait_for(layer.receive(channel), _GROUP_RENEW_S)
                except TimeoutError:
                    continue
                if message.get("type") == "hub.wake":
                    self._wake.set()
        finally:
            with contextlib.suppress(Exception):
                await layer.group_discard(commands.HUB_GROUP, channel)
