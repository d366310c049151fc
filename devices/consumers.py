"""The live floor board's WebSocket: ``/ws/labs/<lab slug>/``.

On connect the consumer decides who is watching (in ``connect()``, before
anything is sent): a lab manager gets the full board, any other logged-in
member the read-only version that names no one but themselves; anyone else
is closed with 4401 (not logged in), an unknown lab with 4404. It then joins
the lab's group (:func:`devices.live.group_name`), sends one snapshot frame
``{"type": "snapshot", "machines": [...]}`` and forwards every change the hub
pushes (``board.frame``), filtered for the viewer. Command outcomes
(``board.command``) go to managers only.

The browser may send ``{"type": "refresh"}`` to get a fresh snapshot (the
page does so every minute, which also moves the bookings on).
"""

from __future__ import annotations

import time
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

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


def _access(user, lab_slug: str) -> tuple[Lab, board.Viewer] | None:
    lab = Lab.objects.filter(slug=lab_slug).first()
    if lab is None:
        return None
    return lab, board.viewer_for(user, lab)


class BoardConsumer(AsyncJsonWebsocketConsumer):
    group: str | None = None

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
        self.held: set[str] = set()
        self.held_read_at = 0.0
        self.last_snapshot_at = 0.0
        self.group = group_name(self.lab_slug)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.send_snapshot()

    async def disconnect(self, code: int) -> None:
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content: Any, **kwargs) -> None:
        wants_refresh = isinstance(content, dict) and content.get("type") == "refresh"
        if wants_refresh and time.monotonic() - self.last_snapshot_at >= REFRESH_MIN_S:
            await self.send_snapshot()

    async def send_snapshot(self) -> None:
        cards = await database_sync_to_async(board.lab_cards)(self.lab, self.viewer)
        self.held = {c["machine"] for c in cards if c["booking"] and c["booking"]["mine"]}
        self.held_read_at = self.last_snapshot_at = time.monotonic()
        await self.send_json({"type": "snapshot", "machines": cards})

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
        if self.viewer.manager:
            await self.send_json(event["command"])
