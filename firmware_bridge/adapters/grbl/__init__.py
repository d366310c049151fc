"""The GRBL adapter and everything that speaks to a GRBL controller, one concern per module.

- :mod:`.adapter` — :class:`GrblAdapter` (registered as ``"grbl"`` on import): options, life cycle,
  commands and their confirmation, the interlock;
- :mod:`.link` — the serial link: open, handshake, the I/O thread, reconnect, status polling;
- :mod:`.reports` — status reports, alarms and messages turned into the contract's state, events and
  telemetry;
- :mod:`.streaming` — character-counting streaming, the line FIFO and the life of a job;
- :mod:`.passthrough` — the pseudo-terminal a sender program opens, and its rules;
- :mod:`.sender` — ``send_file``, the ``python -m firmware_bridge send`` command;
- :mod:`.wire` — parsing what GRBL sends (status reports, ``ok``/``error``, alarms, messages);
- :mod:`.facts` — the firmware's facts (realtime bytes, buffer sizes, code tables), the only part the
  GRBL simulator shares.
"""

from firmware_bridge.adapters.grbl.adapter import GrblAdapter

__all__ = ["GrblAdapter"]
