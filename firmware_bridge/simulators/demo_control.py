"""The demo's hand on its simulated machines: job requests left as files in a control directory.

In the demo (``make run``) the simulated makers (``manage.py run_demo_makers``) play the people of
the labs. When one of them starts a job, it leaves a request ``<directory>/<machine slug>.job``
(JSON: ``{"seconds": 900, "name": "bracket.gcode"}``) with :func:`request_job`; the simulator of
that machine (``simulate --demo-control <directory>``) takes it with :func:`take_job` and starts the
job the way a maker would: a G-code file streamed through the GRBL adapter, an upload and print
through OctoPrint's REST API, or the laser's power draw behind its smart plug. An interlocked
machine that is disabled refuses the job, as the real one would: the GRBL adapter refuses the
stream, a plug whose relay is off powers nothing. Nothing here is part of the bridge's protocol;
a real lab has no such directory.

A request is claimed by renaming it (atomic on one file system), so a job is started once even if
two processes looked; one that is never taken (the machine is left out) is simply overwritten by
the next.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

SUFFIX = ".job"


def _path(directory: str | Path, machine: str) -> Path:
    if not machine or "/" in machine or machine.startswith("."):
        raise ValueError(f"not a machine slug: {machine!r}")
    return Path(directory) / f"{machine}{SUFFIX}"


def request_job(directory: str | Path, machine: str, *, seconds: float, name: str) -> Path:
    """Ask the simulator of ``machine`` to run a job of about ``seconds`` named ``name``."""
    if seconds <= 0:
        raise ValueError("a job lasts more than 0 seconds")
    target = _path(directory, machine)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}")
    tmp.write_text(json.dumps({"seconds": float(seconds), "name": str(name)}))
    os.replace(tmp, target)
    return target


def pending(directory: str | Path, machine: str) -> bool:
    """True while a request for ``machine`` waits to be taken."""
    return _path(directory, machine).exists()


def take_job(directory: str | Path, machine: str) -> dict[str, Any] | None:
    """The waiting request for ``machine`` (``seconds``, ``name``), claimed and removed; None if none.

    A request that cannot be read (half-written by hand, not JSON) is dropped and gives None.
    """
    source = _path(directory, machine)
    claimed = source.with_name(f".{source.name}.taken.{os.getpid()}")
    try:
        os.replace(source, claimed)
    except FileNotFoundError:
        return None
    try:
        data = json.loads(claimed.read_text())
        seconds = float(data["seconds"])
        name = str(data.get("name") or f"{machine}-job")
    except (OSError, ValueError, KeyError, TypeError):
        return None
    finally:
        with contextlib.suppress(OSError):
            claimed.unlink()
    return {"seconds": seconds, "name": name} if seconds > 0 else None
