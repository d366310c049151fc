"""The live floor board's WebSocket: ``/ws/labs/<lab slug>/``.

On connect the consumer decides who is watching (in ``connect()``, before
anything is sent): a lab manager gets the full board, any other logged-in
member the read-only version that names no one but themselves; anyone else
is closed with 4401 (not logged in), an unknown lab with 4404. It then joins
the lab's group (:func:`devices.live.group_name`), sends one snapshot frame
``{"type": "snapshot", "manager": <bool>, "machines": [...]}`` and forwards every change the hub
pushes (``board.frames``), filtered for the viewer. Command outcomes
(``board.command``) go to managers only.

Nothing a viewer is sent can leave them on a stale machine (see
:mod:`devices.live`): the channel-layer handlers only put frames in the
connection's outbox (the latest per machine, by version) and one sender task
writes it to the socket, so a slow browser gets each machine's latest state
instead of a backlog and the consumer always reads its channel at once; a
frame older than what the viewer was already sent is never sent; a gap in a
sender's sequence (a message the layer lost) gets the viewer a fresh snapshot
within :data:`REPAIR_MIN_S`.

A booking change (:func:`devices.live.push_booking_change`) comes as a frame
``{"type": "booking", "machine": <slug>}`` without data: the consumer reads that
machine's card again for its own viewer (:func:`devices.board.lab_machine_card`)
and sends it as the machine's frame, so the rule of who sees which booking stays
in :func:`devices.board.for_viewer`'s module.

The browser may send ``{"type": "refresh"}`` to get a fresh snapshot (the
page does so every minute, which also moves the bookings on).

Rights are not decided once for the life of the socket: they are read again
(:meth:`BoardConsumer.recheck`) on every refresh, before a frame is forwarded
when the last reading is older than :data:`RIGHTS_TTL_S`, and every
:data:`RECHECK_EVERY_S` by a timer, so a silent board is re-checked too. A
viewer whose session was logged out, flushed or expired, who was
deactivated or whose password changed is closed with 4401; one who lost (or
gained) the lab's management gets a fresh snapshot for their new view at
once, with ``"manager"`` saying which view it is. So a removed manager stops
receiving names and command frames within :data:`RECHECK_EVERY_S`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import time
from importlib import import_module
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.contrib import auth
from django.contrib.auth import get_user_model
from django.utils.crypto import constant_time_compare

from fablab.labs.models import Lab

from . import board, live
from .live import group_name

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
#: How long a maker's "machines I hold now" is trusted before it is read again.
HELD_TTL_S = 60.0
#: The least time between two snapshots a browser may ask for.
REFRESH_MIN_S = 5.0
#: Rights read longer ago than this are read again before a frame is forwarded.
RIGHTS_TTL_S = 30.0
#: How often a board's rights are read again even when nothing happens on it.
#: Half a minute, so that a removed manager is cut off well within a minute.
RECHECK_EVERY_S = 30.0
#: Close code when the server could not re-read the viewer's rights (the browser reconnects).
CLOSE_INTERNAL_ERROR = 1011
#: The least time between two snapshots sent to repair a lost message (seconds).
REPAIR_MIN_S = 1.0
#: How often a board joins its lab's group again, so that its membership never expires
#: (``group_expiry`` in ``fablab.settings.redis_channel_layer`` is a few times this).
REJOIN_EVERY_S = 30.0

log = logging.getLogger(__name__)


def _access(user, lab_slug: str) -> tuple[Lab, board.Viewer] | None:
    lab = Lab.objects.filter(slug=lab_slug).first()
    if lab is None:
        return None
    return lab, board.viewer_for(user, lab)


def _session_key(scope: dict[str, Any]) -> str | None:
    """The session the socket was opened with (``AuthMiddlewareStack``), or None when it has none."""
    session = scope.get("session")
    if session is None:
        return None
    return session.session_key or ""


def _active_user(user_id: int):
    """The user re-read from the database, or None when they were deleted or deactivated."""
    return get_user_model()._default_manager.filter(pk=user_id, is_active=True).first()


def _session_user(session_key: str):
    """Whom the session ``session_key`` signs in now, read afresh from the session store; None for no one.

    The checks of Django's :func:`django.contrib.auth.get_user`, read-only:
    a session that was logged out (deleted), flushed or expired loads empty;
    the user must still exist and be allowed to sign in (the backend refuses
    inactive users); the session's password hash must still match (a
    password change ends the other sessions). Unlike ``get_user`` it never
    flushes or re-keys the session: the browser's pages keep using it, and a
    socket cannot hand the browser a new cookie.
    """
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    data = store.load()
    user_id = data.get(auth.SESSION_KEY)
    backend_path = data.get(auth.BACKEND_SESSION_KEY)
    session_hash = data.get(auth.HASH_SESSION_KEY)
    if user_id is None or not session_hash or backend_path not in settings.AUTHENTICATION_BACKENDS:
        return None
    user = auth.load_backend(backend_path).get_user(get_user_model()._meta.pk.to_python(user_id))
    if user is None:
        return None
    if hasattr(user, "get_session_auth_hash"):
        hashes = [user.get_session_auth_hash(), *getattr(user, "get_session_auth_fallback_hash", list)()]
        if not any(constant_time_compare(session_hash, known) for known in hashes):
            return None
    return user


class BoardConsumer(AsyncJsonWebsocketConsumer):
    group: str | None = None
    #: Set once the socket is being closed: nothing more is sent.
    revoked: bool = False
    _rechecker: asyncio.Task | None = None
    _sender: asyncio.Task | None = None

    async def connect(self) -> None:
        self.lab_slug = self.scope["url_route"]["kwargs"]["lab"]
        user = self.scope.get("user")
        # Accept first, then close with a code, so the browser learns why.
        if user is None or not user.is_authenticated or not user.is_active:
            await self.accept()
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        access = await database_sync_to_async(_access)(user, self.lab_slug)
        if access is None:
            await self.accept()
            await self.close(code=CLOSE_NOT_FOUND)
            return
        self.lab, self.viewer = access
        self.user_id = user.pk
        # Read now, while the connection's own session is at hand; re-checks load it afresh by this key.
        self.session_key = await database_sync_to_async(_session_key)(self.scope)
        self.rights_read_at = time.monotonic()
        self._rights_lock = asyncio.Lock()
        self.held: set[str] = set()
        self.held_read_at = 0.0
        self.last_snapshot_at = 0.0
        # What waits for the socket: the latest frame per machine, command frames in order.
        self._outbox: dict[str, dict[str, Any]] = {}
        self._commands: list[dict[str, Any]] = []
        #: Machines whose bookings changed: their cards are read again for this viewer.
        self._cards_due: set[str] = set()
        self._wake = asyncio.Event()
        # The version of each machine the viewer was sent last (by a frame or a snapshot).
        self._sent_v: dict[str, list[int]] = {}
        self._send_lock = asyncio.Lock()
        self._seqs: dict[str, int] = {}
        self._repair: asyncio.TimerHandle | None = None
        self._repair_due = False
        loop = asyncio.get_running_loop()
        live.serve_in_process(loop)
        self.group = group_name(self.lab_slug)
        await self.channel_layer.group_add(self.group, self.channel_name)
        self.joined_at = time.monotonic()
        await self.accept()
        await self.send_snapshot()
        self._sender = loop.create_task(self._send_outbox())
        self._rechecker = loop.create_task(self._recheck_periodically())

    async def disconnect(self, code: int) -> None:
        await self._leave()

    async def _leave(self) -> None:
        for name in ("_rechecker", "_sender"):
            task = getattr(self, name)
            setattr(self, name, None)
            if task is not None and task is not asyncio.current_task():
                task.cancel()
        if self._repair is not None:
            self._repair.cancel()
        group, self.group = self.group, None
        if group is not None:
            await self.channel_layer.group_discard(group, self.channel_name)

    async def _revoke(self, code: int) -> None:
        """Stop forwarding at once and close the socket with ``code``."""
        self.revoked = True
        await self._leave()
        await self.close(code=code)

    async def receive_json(self, content: Any, **kwargs) -> None:
        wants_refresh = isinstance(content, dict) and content.get("type") == "refresh"
        if self.revoked or not wants_refresh or time.monotonic() - self.last_snapshot_at < REFRESH_MIN_S:
            return
        if await self.recheck(snapshot_if_changed=False):
            await self.send_snapshot()

    async def send_snapshot(self) -> None:
        """Send every machine as the database has it now; frames older than it are not sent afterwards."""
        # Under the send lock from the read to the send: no frame slips in between, so the
        # viewer never gets a frame newer than the snapshot just before it.
        async with self._send_lock:
            cards = await database_sync_to_async(board.lab_cards)(self.lab, self.viewer)
            self.held = {c["machine"] for c in cards if board.holds(c)}
            self.held_read_at = self.last_snapshot_at = time.monotonic()
            self._sent_v = {c["machine"]: c["v"] for c in cards if c.get("v") is not None}
            self._repair_due = False
            await self.send_json({"type": "snapshot", "manager": self.viewer.manager, "machines": cards})

    # ------------------------------------------------------------ re-checking rights

    def _current_viewer(self) -> board.Viewer | None:
        """Who watches now, read afresh from the database; None when they may not watch at all.

        With a session (the site's ``AuthMiddlewareStack``), the session is
        loaded again from its store by key, so a logout (which deletes it),
        its expiry or a password change (its hash no longer matches) ends
        the socket, as would a deactivated or deleted user. Without one (a
        scope built by hand) the user is re-read by id.
        """
        if self.session_key is None:
            user = _active_user(self.user_id)
        elif not self.session_key:
            return None
        else:
            user = _session_user(self.session_key)
        if user is None or not user.is_authenticated or user.pk != self.user_id or not user.is_active:
            return None
        return board.viewer_for(user, self.lab)

    async def recheck(self, *, snapshot_if_changed: bool = True) -> bool:
        """Read the viewer's rights again; False when the socket was closed for it.

        Logged out or deactivated: closed with 4401. Lost or gained the
        lab's management: the view changes at once, and a fresh snapshot is
        sent when ``snapshot_if_changed`` (the caller sends one otherwise).
        """
        async with self._rights_lock:
            if self.revoked:
                return False
            viewer = await database_sync_to_async(self._current_viewer)()
            self.rights_read_at = time.monotonic()
            if viewer is None:
                await self._revoke(CLOSE_UNAUTHENTICATED)
                return False
            changed = viewer != self.viewer
            self.viewer = viewer
            if changed:
                self.held_read_at = 0.0  # what "mine" means was read for the old view
                if snapshot_if_changed:
                    await self.send_snapshot()
            return True

    async def _rights_fresh(self) -> bool:
        """True when the viewer may still be sent frames, re-reading their rights if they are stale."""
        if self.revoked:
            return False
        if time.monotonic() - self.rights_read_at < RIGHTS_TTL_S:
            return True
        return await self.recheck()

    async def _recheck_periodically(self) -> None:
        while not self.revoked:
            # Wake when the last reading (by a frame, a refresh or this timer) turns RECHECK_EVERY_S old,
            # or when it is time to join the group again.
            now = time.monotonic()
            await asyncio.sleep(
                max(0.0, min(self.rights_read_at + RECHECK_EVERY_S, self.joined_at + REJOIN_EVERY_S) - now)
            )
            try:
                if time.monotonic() - self.joined_at >= REJOIN_EVERY_S:
                    await self._rejoin()
                if time.monotonic() - self.rights_read_at >= RECHECK_EVERY_S:
                    await self.recheck()
            except asyncio.CancelledError:
                raise
            except Exception:
                # Rights that cannot be read are not assumed: close, the browser reconnects and connect() decides.
                log.exception("could not re-check the board viewer's rights")
                with contextlib.suppress(Exception):
                    await self._revoke(CLOSE_INTERNAL_ERROR)
                return

    async def _holds(self, machine_slug: str) -> bool:
        if self.viewer.manager:
            return True
        if time.monotonic() - self.held_read_at > HELD_TTL_S:
            self.held = await database_sync_to_async(board.machines_held_by)(self.viewer.user_id, self.lab)
            self.held_read_at = time.monotonic()
        return machine_slug in self.held

    async def _rejoin(self) -> None:
        """Join the group again: the layer forgets a member ``group_expiry`` seconds after it joined."""
        self.joined_at = time.monotonic()
        if self.group is not None and not self.revoked:
            await self.channel_layer.group_add(self.group, self.channel_name)

    # ------------------------------------------------------------ channel-layer handlers
    #
    # The handlers never wait for the socket nor the database: they put what came in the
    # outbox and return, so the consumer reads its channel as fast as the layer delivers.

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Channels' dispatch, minus its database clean-up for the board's own messages.

        Channels closes stale database connections before every handler, on the
        one thread all consumers share for synchronous work: with 20 boards and
        100 messages a second that is 2,000 trips a second through one thread,
        and the frames wait in line for it. The ``board.*`` handlers never touch
        the database; what does (rights, snapshots) goes through
        ``database_sync_to_async``, which cleans up around each call itself.
        """
        if message.get("type", "") in _BOARD_MESSAGES:
            await getattr(self, _BOARD_MESSAGES[message["type"]])(message)
        else:
            await super().dispatch(message)

    async def board_frame(self, event: dict[str, Any]) -> None:
        """One machine changed (a single frame; :func:`devices.live.push_status` sends ``board.frames``)."""
        self._note_seq(event, is_mark=False)
        await self._take(event["frame"])

    async def board_frames(self, event: dict[str, Any]) -> None:
        """Several changes at once (the hub's pusher batches them), in order."""
        self._note_seq(event, is_mark=False)
        for frame in event["frames"]:
            await self._take(frame)

    async def board_mark(self, event: dict[str, Any]) -> None:
        """A sender's last ``seq`` after it fell quiet: a gap means its last message(s) were lost."""
        self._note_seq(event, is_mark=True)

    async def board_command(self, event: dict[str, Any]) -> None:
        """A remote command was sent or answered (``devices.live.push_command``): managers only."""
        self._commands.append(event["command"])
        self._wake.set()

    async def _take(self, frame: dict[str, Any]) -> None:
        if self.revoked:
            return
        if frame.get("type") == "command":  # a command's outcome sent as a plain frame: managers only
            self._commands.append(frame)
        elif frame.get("type") == "booking":
            self._cards_due.add(frame.get("machine", ""))
        else:
            slug = frame.get("machine", "")
            waiting = self._outbox.get(slug)
            if live.older(frame, waiting) or live.older(frame, {"v": self._sent_v.get(slug)}):
                return
            self._outbox[slug] = frame
        self._wake.set()
        # Let the sender run: a viewer that keeps up gets every frame, one that does not the latest.
        await asyncio.sleep(0)

    def _note_seq(self, event: dict[str, Any], *, is_mark: bool) -> None:
        origin, seq = event.get("origin"), event.get("seq")
        if not isinstance(origin, str) or not isinstance(seq, int):
            return
        last = self._seqs.get(origin)
        if last is None or seq > last:
            self._seqs[origin] = seq
        # A frame message should be last + 1; a mark repeats the last one.
        if last is not None and seq > last + (0 if is_mark else 1):
            log.info(
                "board %s lost %d message(s) from %s: sending a fresh snapshot",
                self.group,
                seq - last - 1,
                origin,
            )
            self._schedule_repair()

    def _schedule_repair(self) -> None:
        """Send a fresh snapshot, at most one per :data:`REPAIR_MIN_S` (later, not never)."""
        if self._repair is not None or self.revoked:
            return
        delay = max(0.0, self.last_snapshot_at + REPAIR_MIN_S - time.monotonic())
        self._repair = asyncio.get_running_loop().call_later(delay, self._repair_now)

    def _repair_now(self) -> None:
        self._repair = None
        self._repair_due = True
        self._wake.set()

    async def _send_outbox(self) -> None:
        """The connection's one sender: writes the outbox to the socket, latest per machine."""
        try:
            while not self.revoked:
                await self._wake.wait()
                self._wake.clear()
                while not self.revoked and (
                    self._outbox or self._commands or self._repair_due or self._cards_due
                ):
                    if not await self._rights_fresh():
                        return
                    if self._repair_due:
                        await self.send_snapshot()
                        continue
                    if self._cards_due:
                        await self._send_cards()
                    commands, self._commands = self._commands, []
                    frames, self._outbox = self._outbox, {}
                    if commands and self.viewer.manager:
                        async with self._send_lock:
                            for command in commands:
                                await self.send_json(command)
                    for slug, frame in frames.items():
                        mine = await self._holds(slug)
                        async with self._send_lock:
                            # Checked at the send, after every wait: a snapshot may have gone out meanwhile.
                            if self.revoked or live.older(frame, {"v": self._sent_v.get(slug)}):
                                continue
                            if frame.get("v") is not None:
                                self._sent_v[slug] = frame["v"]
                            await self.send(text_data=_encoded(frame, self.viewer.manager, mine))
        except asyncio.CancelledError:
            raise
        except OSError:
            # The viewer closed the tab or lost the network between two frames (uvicorn's
            # ClientDisconnected is an OSError): nothing is wrong, the consumer's disconnect() follows.
            log.debug("board viewer gone; its frames stop")
            self.revoked = True
        except Exception:
            # A socket that cannot be written to is closing; the browser reconnects and gets a snapshot.
            log.exception("could not send the board's frames")
            with contextlib.suppress(Exception):
                await self._revoke(CLOSE_INTERNAL_ERROR)

    async def _send_cards(self) -> None:
        """Send the cards of the machines whose bookings changed, read for this viewer."""
        slugs, self._cards_due = self._cards_due, set()
        for slug in sorted(slugs):
            card = await database_sync_to_async(board.lab_machine_card)(self.lab, slug, self.viewer)
            if card is None:
                self.held.discard(slug)
                continue
            # Who holds the machine may have changed with the booking: the card says, no query needed.
            if board.holds(card):
                self.held.add(slug)
            else:
                self.held.discard(slug)
            async with self._send_lock:
                if self.revoked or live.older(card, {"v": self._sent_v.get(slug)}):
                    continue  # a newer frame went out meanwhile; the next refresh brings the bookings
                if card.get("v") is not None:
                    self._sent_v[slug] = card["v"]
                if not live.older(card, self._outbox.get(slug)):
                    self._outbox.pop(slug, None)  # the card is at least as new as what waited
                await self.send_json(card)


#: Frames encoded lately, by the frame's identity and the kind of view: ``id -> (frame, {view: text})``.
_ENCODED: collections.OrderedDict[int, tuple[dict[str, Any], dict[tuple[bool, bool], str]]] = (
    collections.OrderedDict()
)
_ENCODED_MAX = 4096


def _encoded(frame: dict[str, Any], manager: bool, mine: bool) -> str:
    """``frame`` as JSON for a view (manager, or maker holding it or not), encoded once for all viewers.

    The channel layer hands one message to every board of a process as the same
    object, so twenty managers watching cost one ``json.dumps`` a frame, not twenty.
    The frame is kept with its text so that its ``id`` cannot be reused meanwhile.
    """
    view = (manager, mine and not manager)
    entry = _ENCODED.get(id(frame))
    if entry is None or entry[0] is not frame:
        entry = _ENCODED[id(frame)] = (frame, {})
        if len(_ENCODED) > _ENCODED_MAX:
            _ENCODED.popitem(last=False)
    text = entry[1].get(view)
    if text is None:
        viewer = board.Viewer(user_id=None, manager=manager)
        text = entry[1][view] = json.dumps(board.for_viewer(frame, viewer, mine=mine))
    return text


#: The channel-layer messages the board handles without channels' database clean-up (see ``dispatch``).
_BOARD_MESSAGES = {
    "board.frame": "board_frame",
    "board.frames": "board_frames",
    "board.mark": "board_mark",
    "board.command": "board_command",
}
