"""``python -m firmware_bridge simulate``: a demo lab in one process, through the real adapters.

For every machine of the config:

* ``grbl``: a :class:`~firmware_bridge.simulators.grbl.GrblSimulator` on a
  pseudo-terminal (laser mode when the machine's slug contains ``laser``),
  behind a ``by-id``-like link in the work directory; the config's ``port`` and
  ``passthrough`` are rewritten to point there, and a demo sender streams a
  realistic job (a pocket for a CNC, an engrave-and-cut for a laser) through
  the adapter, rests, and starts again;
* ``tasmota`` / ``shelly``: a :class:`~firmware_bridge.simulators.plug.PlugSimulator`
  on the same broker, under the configured topic or prefix, with the load of a
  closed CO2 laser job after job; the adapter's hold times ``on_s`` and
  ``off_s`` are divided by ``--speed`` like the simulated load's phases, so a
  sped-up demo still splits the load into jobs (an ``off_s`` of 60 s would
  otherwise outlast every compressed pause and make one endless job);
* ``octoprint``: a real OctoPrint with its Virtual Printer (built once into its
  own virtualenv) kept busy by a demo printer; left out with one log line if
  OctoPrint cannot be built or ``--no-octoprint`` is given.

Then the bridge itself runs with the rewritten config (its spool in the work
directory). Interlocked machines are enabled at start unless
``--start-disabled`` is given, so the plug lasers run without a server.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import random
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from firmware_bridge.cli import setup_logging
from firmware_bridge.config import BridgeConfig, ConfigError, MachineConfig, load

log = logging.getLogger("firmware_bridge.simulate")


class Demo:
    """Everything ``simulate`` started, so it can be stopped in reverse order."""

    def __init__(self, cfg: BridgeConfig, workdir: Path, args: argparse.Namespace) -> None:
        self.cfg = cfg
        self.workdir = workdir
        self.args = args
        self.speed = float(args.speed)
        self.stop_event = threading.Event()
        self.cleanups: list[Callable[[], None]] = []
        self.machines: list[MachineConfig] = []
        self.grbl_jobs: list[tuple[str, str]] = []  # (machine key, job kind)
        self.bridge: Any = None

    # ------------------------------------------------------------- simulators

    def start_grbl(self, m: MachineConfig) -> MachineConfig:
        from firmware_bridge.simulators.grbl import GrblSimulator

        laser = "laser" in m.machine
        (self.workdir / "dev").mkdir(exist_ok=True)
        (self.workdir / "run").mkdir(exist_ok=True)
        link = self.workdir / "dev" / f"usb-demo-{m.machine}-if00"
        sim = GrblSimulator(laser=laser, speed=self.speed, link_path=str(link))
        sim.start()
        self.cleanups.append(sim.stop)
        options = dict(m.options, port=str(link))
        options["passthrough"] = str(self.workdir / "run" / f"{m.machine}.tty")
        self.grbl_jobs.append((m.key, "laser" if laser else "cnc"))
        log.info("%s: GRBL %s simulator on %s", m.key, "laser" if laser else "CNC", link)
        return dataclasses.replace(m, options=options)

    def start_plug(self, m: MachineConfig) -> MachineConfig:
        from firmware_bridge.simulators.plug import PlugSimulator

        if m.adapter == "tasmota":
            kind, name = "tasmota", str(m.options["topic"])
        else:
            kind = "shelly" if int(m.options.get("gen", 2)) == 2 else "shelly-gen1"
            name = str(m.options["prefix"])
        # A real plug logs in as itself; the demo passes each plug's own user.
        plug_urls = dict(item.split("=", 1) for item in getattr(self.args, "plug_mqtt_url", None) or [])
        plug = PlugSimulator(
            kind,
            name,
            plug_urls.get(m.machine, self.cfg.mqtt.url),
            profile="closed-laser",
            speed=self.speed,
            tele_period_s=max(1.0, 10.0 / self.speed),
        )
        plug.start()
        self.cleanups.append(plug.stop)
        log.info("%s: %s plug simulator %s", m.key, kind, name)
        return dataclasses.replace(m, options=scaled_plug_options(m.options, self.speed))

    def start_octoprint(self, m: MachineConfig) -> MachineConfig | None:
        if self.args.no_octoprint:
            log.info("%s: left out (--no-octoprint)", m.key)
            return None
        try:
            from firmware_bridge.simulators import octoprint_server as ops

            venv = ops.ensure_octoprint_venv(self.args.octoprint_venv or ops.DEFAULT_VENV)
            server = ops.VirtualOctoPrint(self.workdir / "octoprint" / m.machine, venv=venv, autoconnect=True)
            server.start()
        except Exception as exc:  # a missing OctoPrint must not stop the rest of the demo
            log.warning("%s: left out, OctoPrint is not available: %s", m.key, str(exc).splitlines()[0])
            return None
        self.cleanups.append(server.stop)
        printer = ops.DemoPrinter(
            server, name=m.machine, print_s=(90.0 / self.speed, 240.0 / self.speed), rest_s=(20.0, 60.0)
        )
        printer.start_thread()
        self.cleanups.append(printer.close)
        log.info("%s: OctoPrint with the Virtual Printer on %s", m.key, server.url)
        return dataclasses.replace(m, options=dict(m.options, url=server.url, api_key=server.api_key))

    # ----------------------------------------------------------- demo sender

    def grbl_sender(self, key: str, kind: str) -> None:
        """Stream a demo job through the adapter, rest, repeat; never dies of an error."""
        from firmware_bridge.adapters.grbl.sender import send_file
        from firmware_bridge.simulators.gcode_jobs import demo_job, write_job

        job_file = write_job(self.workdir / f"{key.replace('/', '-')}.nc", demo_job(kind))
        runner = self.bridge.machines[key]
        n = 0
        while not self.stop_event.is_set():
            adapter = runner.adapter
            if adapter is None or not runner.ready or runner.status().state != "idle":
                self.stop_event.wait(2.0)
                continue
            n += 1
            try:
                rc = send_file(adapter, job_file, name=f"{kind}-job-{n}.nc", out=_LogWriter(key))
                log.info("%s: demo job %d ended (exit %s)", key, n, rc)
            except Exception as exc:
                log.warning("%s: demo job %d failed: %s", key, n, exc)
            self.stop_event.wait(random.uniform(20.0, 60.0) / max(1.0, self.speed**0.5))

    # ---------------------------------------------------------------- running

    def run(self) -> int:
        from firmware_bridge.bridge import Bridge
        from firmware_bridge.spool import Spool

        starters = {
            "grbl": self.start_grbl,
            "tasmota": self.start_plug,
            "shelly": self.start_plug,
            "octoprint": self.start_octoprint,
        }
        try:
            for m in self.cfg.machines:
                starter = starters.get(m.adapter)
                if starter is None:
                    self.machines.append(m)  # e.g. counter: nothing to simulate
                    continue
                try:
                    new = starter(m)
                except Exception as exc:
                    log.warning("%s: simulator failed to start, machine left out: %s", m.key, exc)
                    continue
                if new is not None:
                    self.machines.append(new)
            if not self.machines:
                log.error("no machine could be simulated")
                return 1
            cfg = dataclasses.replace(
                self.cfg,
                bridge=dataclasses.replace(self.cfg.bridge, spool=self.workdir / "spool.sqlite3"),
                machines=tuple(self.machines),
            )
            spool = Spool(cfg.bridge.spool, max_messages=cfg.bridge.spool_max_messages)
            if not self.args.start_disabled:
                for m in cfg.machines:
                    if m.interlock:
                        spool.set_enabled(m.key, True)
            self.bridge = Bridge(cfg, spool=spool)
            self.bridge.start()
            for key, kind in self.grbl_jobs:
                threading.Thread(
                    target=self.grbl_sender, args=(key, kind), name=f"demo-{key}", daemon=True
                ).start()
            log.info(
                "demo running: %d machines, work directory %s; Ctrl-C stops it",
                len(self.machines),
                self.workdir,
            )
            deadline = None if self.args.duration is None else time.monotonic() + self.args.duration
            while not self.stop_event.wait(0.5):
                if deadline is not None and time.monotonic() > deadline:
                    break
            return 0
        finally:
            self.stop_event.set()
            if self.bridge is not None:
                self.bridge.stop()
            for cleanup in reversed(self.cleanups):
                with contextlib.suppress(Exception):
                    cleanup()


def scaled_plug_options(options: Mapping[str, Any], speed: float) -> dict[str, Any]:
    """A plug machine's options with the hold times ``on_s`` and ``off_s`` divided by ``speed``.

    The thresholds in watts stay; a hold time the config leaves out is scaled
    from the adapter's default.
    """
    from firmware_bridge.adapters.plug_common import DEFAULT_THRESHOLDS

    out = dict(options)
    for key in ("on_s", "off_s"):
        out[key] = float(options.get(key, DEFAULT_THRESHOLDS[key])) / speed
    return out


class _LogWriter:
    """A file-like object that turns ``send_file``'s progress lines into debug log lines."""

    def __init__(self, key: str) -> None:
        self.key = key

    def write(self, text: str) -> int:
        for line in text.splitlines():
            if line.strip():
                log.debug("%s: %s", self.key, line.strip())
        return len(text)

    def flush(self) -> None:
        pass


def run_simulation(args: argparse.Namespace) -> int:
    """Entry point of the ``simulate`` sub-command."""
    try:
        cfg = load(args.config, mqtt_url=args.mqtt_url)
    except ConfigError as exc:
        for line in exc.problems:
            print(line)
        return 1
    setup_logging(args.log_level or cfg.bridge.log_level)
    if args.speed <= 0:
        log.error("--speed must be > 0")
        return 1
    tmp = None
    if args.workdir:
        workdir = Path(args.workdir).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix=f"fablab-demo-{cfg.bridge.id}-")
        workdir = Path(tmp.name)
    demo = Demo(cfg, workdir, args)

    def stop(signum: int, frame: object) -> None:
        log.info("received %s; stopping the demo", signal.Signals(signum).name)
        demo.stop_event.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        return demo.run()
    finally:
        if tmp is not None:
            tmp.cleanup()
