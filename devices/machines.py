"""The machines as the hub knows them: an in-memory index, and the contract's time stamps.

Contract: :class:`MachineIndex` maps ``(lab slug, machine slug)`` to a
:class:`MachineInfo` (tags, adapter, telemetry interval, bridge), reloading on a
miss at most every few seconds; :func:`ms_to_dt` and :func:`dt_to_ms` convert the
contract's ``ts`` (milliseconds since the epoch) to and from aware datetimes.

Called by the hub (:mod:`devices.hub`) and by every module that applies what it
receives (:mod:`devices.status`, :mod:`devices.readings`, :mod:`devices.events`,
:mod:`devices.commands`).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from datetime import UTC, datetime

from devices.influx import TELEMETRY, tag_prefix
from devices.models import MachineLink
from fablab.labs.models import Machine


def ms_to_dt(ts_ms: int) -> datetime:
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC)


def dt_to_ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


@dataclasses.dataclass(frozen=True)
class MachineInfo:
    """What the hub needs to know about a machine, cached in memory."""

    id: int
    lab: str
    slug: str
    machine_type: str
    adapter: str
    interval_s: int | None
    bridge: str | None

    @property
    def tags(self) -> dict[str, str]:
        return {
            "lab": self.lab,
            "machine": self.slug,
            "machine_type": self.machine_type,
            "adapter": self.adapter,
        }

    @property
    def telemetry_prefix(self) -> str:
        return tag_prefix(TELEMETRY, self.tags)


class MachineIndex:
    """``(lab slug, machine slug) -> MachineInfo``, reloaded on a miss at most every ``min_reload_s``.

    A flood of messages for machines that do not exist must not become a
    flood of queries, hence the rate limit.
    """

    def __init__(self, min_reload_s: float = 5.0) -> None:
        self.min_reload_s = min_reload_s
        self._by_key: dict[tuple[str, str], MachineInfo] = {}
        self._prefix: dict[int, str] = {}
        self._loaded_at = -1e9
        self._lock = threading.Lock()

    def reload(self) -> None:
        links = {link.machine_id: link for link in MachineLink.objects.select_related("bridge").all()}
        by_key = {}
        for m in Machine.objects.select_related("lab", "machine_type").all():
            link = links.get(m.pk)
            info = MachineInfo(
                id=m.pk,
                lab=m.lab.slug,
                slug=m.slug,
                machine_type=m.machine_type.slug if m.machine_type_id else "unknown",
                adapter=link.adapter if link else "unlinked",
                interval_s=link.telemetry_interval_s if link else None,
                bridge=link.bridge.slug if link else None,
            )
            by_key[(info.lab, info.slug)] = info
        with self._lock:
            self._by_key = by_key
            self._prefix = {info.id: info.telemetry_prefix for info in by_key.values()}
            self._loaded_at = time.monotonic()

    @property
    def loaded_at(self) -> float:
        return self._loaded_at

    def get(self, lab: str, machine: str) -> MachineInfo | None:
        info = self._by_key.get((lab, machine))
        if info is None and time.monotonic() - self._loaded_at >= self.min_reload_s:
            self.reload()
            info = self._by_key.get((lab, machine))
        return info

    def prefix(self, info: MachineInfo) -> str:
        return self._prefix.get(info.id) or info.telemetry_prefix

    def for_bridge(self, bridge: str) -> list[MachineInfo]:
        return [info for info in self._by_key.values() if info.bridge == bridge]

    def all(self) -> list[MachineInfo]:
        return list(self._by_key.values())
