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
``--start-disabled`` is given (then they boot disabled, whatever the spool
remembers, and only a command enables them), so the plug lasers run without a server.

With ``--demo-control DIR`` (``make run``) the machines run no job of their own:
each waits for a request the demo's simulated makers leave in ``DIR``
(:mod:`firmware_bridge.simulators.demo_control`) and then runs it the way a maker
would — streamed through the GRBL adapter (repeated until the requested time is
up), uploaded and printed through OctoPrint's REST API, or drawn as a laser's load
behind its plug. A disabled interlocked machine refuses it, as the hardware would.
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

#: A closed laser's draw behind its plug in the demo-controlled mode (watts): idle, exhaust, cutting.
STANDBY_W, EXHAUST_W, CUTTING_W = 15.0, 120.0, 900.0


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
        self.grbl_jobs: list[tuple[str, str, str]] = []  # (machine key, machine slug, job kind)
        self.bridge: Any = None
        control = getattr(args, "demo_control", None)
        #: Where the demo's makers leave job requests; None: the machines keep themselves busy.
        self.control: Path | None = Path(control).resolve() if control else None

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
        self.grbl_jobs.append((m.key, m.machine, "laser" if laser else "cnc"))
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
            profile="manual" if self.control else "closed-laser",
            speed=self.speed,
            tele_period_s=max(1.0, 10.0 / self.speed),
        )
        plug.start()
        self.cleanups.append(plug.stop)
        if self.control:
            plug.set_load(STANDBY_W)
            threading.Thread(
                target=self.plug_jobs, args=(m.key, m.machine, plug), name=f"demo-{m.key}", daemon=True
            ).start()
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
            server,
            name=m.machine,
            print_s=(90.0 / self.speed, 240.0 / self.speed),
            rest_s=(20.0, 60.0),
            job_requests=self._requests_for(m.machine),
        )
        printer.start_thread()
        self.cleanups.append(printer.close)
        log.info("%s: OctoPrint with the Virtual Printer on %s", m.key, server.url)
        return dataclasses.replace(m, options=dict(m.options, url=server.url, api_key=server.api_key))

    # ----------------------------------------------------------- demo sender

    def _requests_for(self, machine: str) -> Callable[[], dict[str, Any] | None] | None:
        """The demo makers' job requests for ``machine`` (None without ``--demo-control``)."""
        if self.control is None:
            return None
        from firmware_bridge.simulators.demo_control import take_job

        control = self.control
        speed = self.speed

        def next_request() -> dict[str, Any] | None:
            request = take_job(control, machine)
            if request is not None:
                request["seconds"] /= speed
            return request

        return next_request

    def grbl_sender(self, key: str, machine: str, kind: str) -> None:
        """Stream demo jobs through the adapter; never dies of an error.

        Without demo control: a job, a rest, another job. With it: on a maker's request, jobs one
        after another until the requested time is up; a refusal (the interlock) ends the request.
        """
        from firmware_bridge.adapters.grbl.sender import send_file
        from firmware_bridge.simulators.gcode_jobs import demo_job, write_job

        job_file = write_job(self.workdir / f"{key.replace('/', '-')}.nc", demo_job(kind))
        runner = self.bridge.machines[key]
        requests = self._requests_for(machine)
        n = 0
        while not self.stop_event.is_set():
            adapter = runner.adapter
            if adapter is None or not runner.ready or runner.status().state != "idle":
                self.stop_event.wait(2.0)
                continue
            if requests is None:
                n += 1
                self._send_one(send_file, adapter, job_file, key, f"{kind}-job-{n}.nc")
                self.stop_event.wait(random.uniform(20.0, 60.0) / max(1.0, self.speed**0.5))
                continue
            request = requests()
            if request is None:
                self.stop_event.wait(1.0)
                continue
            until = time.monotonic() + request["seconds"]
            log.info("%s: a maker starts %s", key, request["name"])
            while not self.stop_event.is_set() and time.monotonic() < until:
                if self._send_one(send_file, adapter, job_file, key, request["name"]) != 0:
                    break  # refused (interlock), alarm or error: the maker gives up

    @staticmethod
    def _send_one(send_file: Callable[..., int], adapter: Any, job_file: Path, key: str, name: str) -> int:
        try:
            rc = send_file(adapter, job_file, name=name, out=_LogWriter(key))
            log.info("%s: demo job %s ended (exit %s)", key, name, rc)
            return rc
        except Exception as exc:
            log.warning("%s: demo job %s failed: %s", key, name, exc)
            return 1

    def plug_jobs(self, key: str, machine: str, plug: Any) -> None:
        """A closed laser behind a smart plug, run by the demo's makers: a job draws its cutting load.

        With the relay off (the interlock has the laser disabled) the laser has no power: the
        request is refused. Switching the relay off mid-job ends the job.
        """
        requests = self._requests_for(machine)
        assert requests is not None
        while not self.stop_event.wait(1.0):
            request = requests()
            if request is None:
                continue
            if not plug.relay_on:
                log.info("%s: %s refused: the plug's relay is off (interlock)", key, request["name"])
                continue
            log.info("%s: a maker starts %s", key, request["name"])
            phases = [
                (EXHAUST_W, 20.0 / self.speed),
                (CUTTING_W, request["seconds"]),
                (EXHAUST_W, 30.0 / self.speed),
            ]
            for watts, seconds in phases:
                plug.set_load(watts)
                until = time.monotonic() + seconds
                while plug.relay_on and time.monotonic() < until and not self.stop_event.wait(0.5):
                    pass
                if not plug.relay_on:
                    log.info("%s: %s cut short: the relay went off", key, request["name"])
                    break
            plug.set_load(STANDBY_W)

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
            for m in cfg.machines:
                if m.interlock:
                    # Disabled: whatever a previous run left in the spool, only a command enables it.
                    spool.set_enabled(m.key, not self.args.start_disabled)
            self.bridge = Bridge(cfg, spool=spool)
            self.bridge.start()
            for key, machine, kind in self.grbl_jobs:
                threading.Thread(
                    target=self.grbl_sender, args=(key, machine, kind), name=f"demo-{key}", daemon=True
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
