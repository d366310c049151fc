"""The OctoPrint adapter: a 3D printer behind OctoPrint's REST API.

- :mod:`.adapter` — :class:`OctoPrintAdapter` (registered as ``"octoprint"`` on import): state from
  OctoPrint's flags, telemetry, job events, confirmed commands, the interlock;
- :mod:`.client` — OctoPrint's REST API through octorest, with timeouts on every request and typed
  errors carrying the HTTP status.
"""

from firmware_bridge.adapters.octoprint.adapter import OctoPrintAdapter

__all__ = ["OctoPrintAdapter"]
