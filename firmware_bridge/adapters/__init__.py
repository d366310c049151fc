"""Adapters, registered by name in :data:`firmware_bridge.adapters.base.ADAPTERS`.

Importing this package imports every adapter module so that each registers
itself. A module that is missing or fails to import (an optional dependency
not installed) is logged and skipped: the other adapters still work, and
``check`` reports a machine whose adapter is unavailable.
"""

from __future__ import annotations

import importlib
import logging

from firmware_bridge.adapters.base import ADAPTERS, Adapter, register

__all__ = ["ADAPTERS", "IMPORT_ERRORS", "Adapter", "load_all", "register"]

log = logging.getLogger(__name__)

#: Adapter modules shipped with the bridge.
MODULES = ("octoprint", "grbl", "tasmota", "shelly", "counter")

#: Module name -> why it could not be imported.
IMPORT_ERRORS: dict[str, str] = {}


def load_all() -> dict[str, type[Adapter]]:
    """Import every adapter module (once) and return the registry."""
    for name in MODULES:
        if name in IMPORT_ERRORS:
            continue
        try:
            importlib.import_module(f"{__name__}.{name}")
        except Exception as exc:  # any import failure must not take the other adapters down
            IMPORT_ERRORS[name] = f"{type(exc).__name__}: {exc}"
            log.debug("adapter module %s not available: %s", name, IMPORT_ERRORS[name])
    return ADAPTERS


load_all()
