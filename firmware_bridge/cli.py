"""Command line of the bridge.

::

    python -m firmware_bridge run --config bridge.toml [--mqtt-url URL]
    python -m firmware_bridge check --config bridge.toml          # exit 0 valid, 1 with one line per problem
    python -m firmware_bridge send --config bridge.toml --machine cnc-router job.nc
    python -m firmware_bridge simulate --config firmware_bridge/demo/bxl-centre.toml --mqtt-url mqtt://...

``simulate`` starts the demo lab: a GRBL simulator on a pseudo-terminal for
each ``grbl`` machine, a simulated power plug (on the same broker) for each
``tasmota``/``shelly`` machine, an OctoPrint with its Virtual Printer for each
``octoprint`` machine when OctoPrint's virtualenv can be built (otherwise the
printers are left out, with one log line saying why), and the bridge itself,
pointed at them through the real adapters.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from firmware_bridge import __version__
from firmware_bridge.config import BridgeConfig, ConfigError, load

log = logging.getLogger("firmware_bridge")


def setup_logging(level: str = "info") -> None:
    """One line per message: time, level, logger, text."""
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    # paho logs every packet at DEBUG and every failed reconnect at ERROR; the transport says the
    # same in one clear line, so paho speaks only in debug runs.
    logging.getLogger("firmware_bridge.paho").setLevel(
        logging.DEBUG if level.lower() == "debug" else logging.CRITICAL
    )


def _load_or_report(path: str, mqtt_url: str | None = None) -> BridgeConfig | None:
    try:
        return load(path, mqtt_url=mqtt_url)
    except ConfigError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        return None


def _install_stop_handlers(stop: threading.Event) -> None:
    def handler(signum: int, frame: FrameType | None) -> None:
        log.info("received %s; stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def cmd_run(args: argparse.Namespace) -> int:
    cfg = _load_or_report(args.config, args.mqtt_url)
    if cfg is None:
        return 1
    setup_logging(args.log_level or cfg.bridge.log_level)
    from firmware_bridge.bridge import Bridge
    from firmware_bridge.spool import SpoolError

    try:
        bridge = Bridge(cfg)
    except SpoolError as exc:
        log.error("%s", exc)
        return 1
    _install_stop_handlers(bridge.stop_event)
    bridge.run_forever()
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    try:
        cfg = load(args.config)
    except ConfigError as exc:
        for line in exc.problems:
            print(line)
        return 1
    print(
        f"{args.config}: ok: bridge {cfg.bridge.id}, {len(cfg.machines)} machines, "
        f"broker {cfg.mqtt.redacted_url()}"
    )
    return 0


def cmd_send(args: argparse.Namespace) -> int:
    cfg = _load_or_report(args.config)
    if cfg is None:
        return 1
    setup_logging(args.log_level or cfg.bridge.log_level)
    try:
        machine = cfg.machine(args.machine)
    except KeyError:
        names = ", ".join(m.key for m in cfg.machines)
        print(f"--machine: no single machine called {args.machine!r} (machines: {names})", file=sys.stderr)
        return 1
    if machine.adapter != "grbl":
        print(
            f"--machine: {machine.key} uses the {machine.adapter} adapter; send works with grbl",
            file=sys.stderr,
        )
        return 1
    path = Path(args.file)
    if not path.is_file():
        print(f"{path}: no such file", file=sys.stderr)
        return 1
    try:
        from firmware_bridge.adapters.grbl.sender import send_file
    except ImportError as exc:
        print(f"the grbl adapter is not available: {exc}", file=sys.stderr)
        return 1
    result = send_file(machine.options, path)
    return int(result) if isinstance(result, int) and not isinstance(result, bool) else 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from firmware_bridge.simulate import run_simulation

    return run_simulation(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m firmware_bridge",
        description="FabLab firmware bridge: every machine on one MQTT contract.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run the bridge")
    p.add_argument("--config", required=True, help="bridge.toml")
    p.add_argument("--mqtt-url", help="replace [mqtt] url (mqtt://user:pass@host:port)")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("check", help="validate a config; every problem on its own line")
    p.add_argument("--config", required=True)
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("send", help="stream a G-code file to a grbl machine")
    p.add_argument("--config", required=True)
    p.add_argument("--machine", required=True, help="machine slug (or lab/machine)")
    p.add_argument("file")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=cmd_send)

    p = sub.add_parser("simulate", help="run a demo lab: simulators plus the bridge")
    p.add_argument("--config", required=True, help="a demo config, e.g. firmware_bridge/demo/bxl-centre.toml")
    p.add_argument("--mqtt-url", help="broker to publish to (default: the config's)")
    p.add_argument("--workdir", help="where simulator files and the spool go (default: a temp dir)")
    p.add_argument("--no-octoprint", action="store_true", help="leave the OctoPrint printers out")
    p.add_argument("--octoprint-venv", help="OctoPrint's own virtualenv (built on first use)")
    p.add_argument("--speed", type=float, default=1.0, help="simulated machines run this much faster")
    p.add_argument("--duration", type=float, help="stop after this many seconds (default: until Ctrl-C)")
    p.add_argument(
        "--plug-mqtt-url",
        action="append",
        default=[],
        metavar="MACHINE=URL",
        help="the broker URL (with the plug's own user) a simulated plug connects with; default: the bridge's",
    )
    p.add_argument(
        "--demo-control",
        metavar="DIR",
        help="run jobs only when the demo's makers ask for them in DIR (firmware_bridge.simulators.demo_control)",
    )
    p.add_argument(
        "--start-disabled",
        action="store_true",
        help="keep interlocked machines disabled until a command enables them (default: enable them)",
    )
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=cmd_simulate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))
