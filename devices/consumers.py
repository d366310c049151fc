"""The live floor board's WebSocket: ``/ws/labs/<lab slug>/``.

On connect the consumer decides who is watching (in ``connect()``, before
anything is sent): a lab manager gets the full board, any other logged-in
member the read-only version that names no one but themselves; anyone else
is closed with 4401 (not logged in), an unknown lab with 4404. It then joins
the lab's group (:func:`devices.live.group_name`), sends one snapshot frame
``{"type": "snapshot", "manager": <bool>, "machines": [...]}`` and forwards every change the hub
pushes (``board.frame``), filtered for the viewer. Command outcomes
(``board.command``) go to managers only.

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
import contextlib
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

from . import board
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
        self.group = group_name(self.lab_slug)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.send_snapshot()
        self._rechecker = asyncio.get_running_loop().create_task(self._recheck_periodically())

    async def disconnect(self, code: int) -> None:
        await self._leave()

    async def _leave(self) -> None:
        task, self._rechecker = self._rechecker, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
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
        cards = await database_sync_to_async(board.lab_cards)(self.lab, self.viewer)
        self.held = {c["machine"] for c in cards if c["booking"] and c["booking"]["mine"]}
        self.held_read_at = self.last_snapshot_at = time.monotonic()
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
            # Wake when the last reading (by a frame, a refresh or this timer) turns RECHECK_EVERY_S old.
            await asyncio.sleep(max(0.0, self.rights_read_at + RECHECK_EVERY_S - time.monotonic()))
            try:
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

    # ------------------------------------------------------------ channel-layer handlers

    async def board_frame(self, event: dict[str, Any]) -> None:
        """One machine changed (``devices.live.push_status``)."""
        if not await self._rights_fresh():
            return
        frame = event["frame"]
        if frame.get("type") == "command":  # a command's outcome sent as a plain frame: managers only
            if self.viewer.manager:
                await self.send_json(frame)
            return
        mine = await self._holds(frame.get("machine", ""))
        await self.send_json(board.for_viewer(frame, self.viewer, mine=mine))

    async def board_frames(self, event: dict[str, Any]) -> None:
        """Several changes at once (the hub's pusher batches them): one browser frame each, in order."""
        for frame in event["frames"]:
            await self.board_frame({"frame": frame})

    async def board_command(self, event: dict[str, Any]) -> None:
        """A remote command was sent or answered (``devices.live.push_command``): managers only."""
        if await self._rights_fresh() and self.viewer.manager:
            await self.send_json(event["command"])
