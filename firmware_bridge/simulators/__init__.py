"""Device simulators for demos and tests: real serial I/O on pseudo-terminals, real HTTP, real MQTT.

- :mod:`firmware_bridge.simulators.grbl` — a GRBL 1.1 controller (CNC or laser) on a pty.
- :mod:`firmware_bridge.simulators.gcode_jobs` — realistic generated G-code jobs for it.

Modules are imported explicitly (``from firmware_bridge.simulators.grbl import GrblSimulator``) so that
importing this package costs nothing.
"""
