"""The FabLab firmware bridge: runs on lab hardware, speaks each machine's firmware, publishes contract v1.

It imports no Django. Entry point: ``python -m firmware_bridge`` (see :mod:`firmware_bridge.cli`).
"""

__version__ = "0.1.0"
