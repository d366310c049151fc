"""A real OctoPrint with its Virtual Printer, for the tests and the demo.

OctoPrint pins many packages of its own, so it lives in its own virtualenv
(``var/octoprint-venv`` by default), built once by :func:`ensure_octoprint_venv`
and reused after that. :class:`VirtualOctoPrint` runs one server on a loopback
port with a throw-away base directory and an admin user whose API key is known:
OctoPrint's own ``octoprint serve --iknowwhatimdoing --basedir DIR`` (it refuses
to run as root without the flag) with its bundled Virtual Printer plugin::

    venv = ensure_octoprint_venv()
    with VirtualOctoPrint(tmpdir, venv=venv) as server:
        server.connect_printer()
        server.upload_and_print("cube.gcode", demo_gcode(20))

Only the standard library and ``requests`` are used, so the bridge's demo
(``python -m firmware_bridge simulate``) can start printers without pytest.
This module never touches the network beyond 127.0.0.1 (and PyPI, through pip,
when it has to build the virtualenv).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import requests

log = logging.getLogger(__name__)

#: The exact OctoPrint release the tests and the demo run (stable 1.11 line).
OCTOPRINT_VERSION = "1.11.8"
REPO_ROOT = Path(__file__).resolve().parents[2]
#: Where the virtualenv is built unless told otherwise (``/var/`` is git-ignored).
DEFAULT_VENV = REPO_ROOT / "var" / "octoprint-venv"
#: Name of the user seeded into ``users.yaml``; it has OctoPrint's admin rights.
ADMIN_USER = "fablab-admin"

_BUILD_TIMEOUT_S = 900
# Plugins that phone home, nag or burn CPU at start; without them OctoPrint
# answers within 2-3 s instead of ~6 s (measured on the project's 2-core test machine).
_DISABLED_PLUGINS = (
    "announcements",
    "discovery",
    "softwareupdate",
    "pluginmanager",
    "tracking",
    "errortracking",
    "health_check",
    "achievements",
    "backup",
    "gcodeviewer",
    "firmware_check",
    "file_check",
    "pi_support",
)


class OctoPrintLaunchError(RuntimeError):
    """OctoPrint could not be built, started or driven as asked."""


class _PortTaken(OctoPrintLaunchError):
    pass


def _stamp(venv: Path) -> Path:
    return venv / f".fablab-octoprint-{OCTOPRINT_VERSION}"


def octoprint_executable(venv: Path | str = DEFAULT_VENV) -> Path:
    """Path of the ``octoprint`` console script inside ``venv``."""
    return Path(venv) / "bin" / "octoprint"


def ensure_octoprint_venv(
    path: Path | str = DEFAULT_VENV, *, python: str | None = None, quiet: bool = True
) -> Path:
    """Build OctoPrint ``OCTOPRINT_VERSION`` into its own virtualenv at ``path``, once.

    Returns ``path``. A virtualenv that already carries this module's stamp file
    is reused without running anything, so the call is cheap after the first
    build (about 45 s and 200 MB). Concurrent callers (parallel test sessions, the
    demo) serialise on a lock file next to the virtualenv. A half-built
    virtualenv (no stamp) is completed by re-running pip, which is idempotent.
    Raises :class:`OctoPrintLaunchError` with pip's last output when it fails.
    """
    venv = Path(path).resolve()
    if _stamp(venv).exists() and octoprint_executable(venv).exists():
        return venv
    venv.parent.mkdir(parents=True, exist_ok=True)
    lock_path = venv.parent / f".{venv.name}.lock"
    build_log = venv.parent / f"{venv.name}-build.log"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building it right now
        if _stamp(venv).exists() and octoprint_executable(venv).exists():
            return venv
        # The venv module picks the base interpreter even when called from a venv.
        interpreter = python or sys.executable
        steps = []
        if not (venv / "bin" / "python").exists():
            steps.append([interpreter, "-m", "venv", str(venv)])
        steps.append(
            [
                str(venv / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                *(["-q"] if quiet else []),
                f"octoprint=={OCTOPRINT_VERSION}",
            ]
        )
        log.info("building OctoPrint %s in %s (once; about a minute)", OCTOPRINT_VERSION, venv)
        with open(build_log, "w") as out:
            for cmd in steps:
                try:
                    rc = subprocess.run(  # noqa: S603 - fixed argv, no shell
                        cmd, stdout=out, stderr=subprocess.STDOUT, timeout=_BUILD_TIMEOUT_S, check=False
                    ).returncode
                except (OSError, subprocess.TimeoutExpired) as exc:
                    raise OctoPrintLaunchError(f"building the OctoPrint virtualenv failed: {exc}") from exc
                if rc != 0:
                    tail = build_log.read_text(errors="replace")[-2000:]
                    raise OctoPrintLaunchError(
                        f"building the OctoPrint virtualenv failed: {' '.join(cmd)} exited {rc}; "
                        f"log {build_log}:\n{tail}"
                    )
        if not octoprint_executable(venv).exists():
            raise OctoPrintLaunchError(f"pip finished but {octoprint_executable(venv)} is missing")
        _stamp(venv).write_text(f"octoprint=={OCTOPRINT_VERSION}\n")
        return venv


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def demo_gcode(duration_s: float = 20.0, *, nozzle_c: int = 210, bed_c: int = 60) -> str:
    """A small but realistic print that takes about ``duration_s`` on the Virtual Printer.

    It has a slicer-like header, sets the nozzle and bed targets without waiting
    (the Virtual Printer heats at ~10 °C/s, and ``M109`` would add half a minute),
    rasters a few layers of infill and ends by cooling down. The Virtual Printer
    of 1.11.8 sleeps 0.1 x distance / F for a move, per axis and only for moves in
    the positive direction (``virtual.py: _performMove``), so each 190 mm
    extrusion line at F1140 lasts one second and every travel back is instant.
    Progress therefore grows evenly, which makes pause/resume easy to observe.
    """
    lines_total = max(3, round(duration_s))
    lines = [
        "; generated by fablab firmware_bridge (demo part)",
        f"; estimated printing time (normal mode) = {lines_total}s",
        "M82 ; absolute extrusion",
        f"M140 S{bed_c}",
        f"M104 S{nozzle_c}",
        "G28 ; home",
        "G92 E0",
    ]
    e = 0.0
    y = 10.0
    per_layer = 25
    for i in range(lines_total):
        if i % per_layer == 0:
            layer = i // per_layer
            lines.append(f";LAYER:{layer}")
            lines.append(f"G0 X5 Y10 Z{0.2 + 0.2 * layer:.2f} F6000")
            y = 10.0
        e += 6.3
        lines.append(f"G1 X195 Y{y:.1f} E{e:.3f} F1140")
        y += 0.4
        lines.append(f"G0 X5 Y{y:.1f} F6000")
    lines += ["M104 S0", "M140 S0", "M84 ; motors off", ""]
    return "\n".join(lines)


class VirtualOctoPrint:
    """One OctoPrint server with the Virtual Printer, on 127.0.0.1.

    ``basedir`` holds its configuration, users, uploads and logs (created if
    missing; a restart with the same ``basedir`` keeps them). ``port`` defaults to
    a free port chosen once, so :meth:`stop` then :meth:`start` come back on the
    same URL, as a real server would after a reboot. ``api_key`` defaults to a
    random key; it belongs to the admin user :data:`ADMIN_USER`.
    """

    def __init__(
        self,
        basedir: Path | str,
        port: int | None = None,
        api_key: str | None = None,
        *,
        venv: Path | str = DEFAULT_VENV,
        autoconnect: bool = False,
    ) -> None:
        self.basedir = Path(basedir).resolve()
        self.port = port or free_port()
        # A port picked here may be taken by someone else before OctoPrint binds it: then pick another.
        self._may_change_port = port is None
        self.api_key = api_key or secrets.token_hex(16).upper()
        self.venv = Path(venv)
        self.autoconnect = autoconnect
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0
        self._stopped_ids: set[int] = set()
        self._http = requests.Session()
        self._http.headers["X-Api-Key"] = self.api_key

    # -- life cycle ---------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:43121``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        """True while the server process is alive (it may still be booting)."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def write_config(self) -> None:
        """Write ``config.yaml`` and ``users.yaml`` (JSON is valid YAML, so no YAML library is needed)."""
        import json

        self.basedir.mkdir(parents=True, exist_ok=True)
        config_file = self.basedir / "config.yaml"
        secret = secrets.token_hex(16)  # only signs UI sessions, which nobody uses here
        config = {
            "server": {
                "firstRun": False,
                "onlineCheck": {"enabled": False},
                "pluginBlacklist": {"enabled": False},
                "secretKey": secret,
                "seenWizards": {"corewizard": 4, "backup": None, "tracking": None},
            },
            "devel": {"enableRateLimiter": False, "enableCsrfProtection": False},
            "plugins": {
                "_disabled": list(_DISABLED_PLUGINS),
                "virtual_printer": {"enabled": True, "simulated_errors": []},
            },
            "serial": {
                "port": "VIRTUAL",
                "baudrate": 115200,
                "autoconnect": self.autoconnect,
                "timeout": {"temperatureAutoreport": 1},
            },
        }
        config_file.write_text(json.dumps(config, indent=2) + "\n")
        # "!" as the password hash: nobody can log in to the UI, the API key is the only way in.
        users = {
            "_version": 2,
            ADMIN_USER: {
                "active": True,
                "apikey": self.api_key,
                "groups": ["admins", "users"],
                "password": "!",
                "permissions": [],
                "settings": {},
            },
        }
        (self.basedir / "users.yaml").write_text(json.dumps(users, indent=2) + "\n")

    def start(self, timeout: float = 120.0) -> None:
        """Start the server and return once ``GET /api/version`` answers 200 with the key.

        While booting OctoPrint can refuse connections, answer 404 or send a
        malformed response, so every failure is retried until ``timeout``; if the
        process dies meanwhile, :class:`OctoPrintLaunchError` carries its output.
        If the port was chosen here and was taken meanwhile, another one is tried
        (only before the first successful start: a restart keeps its URL).
        """
        if self.running:
            return
        for attempt in range(3):
            try:
                self._start_once(timeout)
            except _PortTaken:
                if not self._may_change_port or attempt == 2:
                    raise
                log.info("port %d was taken; trying another", self.port)
                self.port = free_port()
                continue
            self._may_change_port = False
            return

    def _start_once(self, timeout: float) -> None:
        exe = octoprint_executable(self.venv)
        if not exe.exists():
            raise OctoPrintLaunchError(f"{exe} is missing; call ensure_octoprint_venv() first")
        self.write_config()
        out = open(self.basedir / "serve.log", "ab")  # noqa: SIM115 - lives as long as the process
        self._log_offset = out.tell()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
        env["PYTHONUNBUFFERED"] = "1"
        cmd = [
            str(exe),
            "serve",
            "--iknowwhatimdoing",  # we run as root in CI and in containers
            "--basedir",
            str(self.basedir),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        log.info("starting OctoPrint on %s (basedir %s)", self.url, self.basedir)
        # Its own session: stop() signals the whole group, and a Ctrl-C in the demo's terminal is ours.
        self._proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        out.close()
        deadline = time.monotonic() + timeout
        last_problem = "no answer yet"
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                rc, self._proc = self._proc.returncode, None
                if "Address already in use" in self._log_tail(800):
                    raise _PortTaken(f"port {self.port} is taken")
                raise OctoPrintLaunchError(
                    f"OctoPrint exited with {rc} while starting; "
                    f"{self.basedir / 'serve.log'}:\n{self._log_tail()}"
                )
            try:
                resp = self._http.get(self.url + "/api/version", timeout=5)
                if resp.status_code == 200 and "server" in resp.json():
                    log.info("OctoPrint %s is up on %s", resp.json()["server"], self.url)
                    return
                last_problem = f"HTTP {resp.status_code}"
            except (requests.RequestException, ValueError) as exc:
                last_problem = str(exc)
            time.sleep(0.3)
        self.stop()
        raise OctoPrintLaunchError(f"OctoPrint did not answer within {timeout:.0f} s ({last_problem})")

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL after ``timeout``); a no-op if it is not running."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGCONT)  # in case it was frozen by freeze()
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        self._proc = None

    def freeze(self) -> None:
        """Stop the process with SIGSTOP: it keeps its socket but never answers (a hung server)."""
        if self._proc is not None and self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        """Undo :meth:`freeze`."""
        if self._proc is not None and self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGCONT)

    def __enter__(self) -> VirtualOctoPrint:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _log_tail(self, chars: int = 3000) -> str:
        """The end of what the current (or last) start wrote to ``serve.log``."""
        try:
            with open(self.basedir / "serve.log", "rb") as f:
                f.seek(self._log_offset)
                return f.read().decode(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    # -- driving the printer (admin-side helpers, plain REST) ---------------

    def request(self, method: str, path: str, **kwargs: object) -> requests.Response:
        """One authenticated request to this server; raises for HTTP errors."""
        kwargs.setdefault("timeout", 10)
        resp = self._http.request(method, self.url + path, **kwargs)  # type: ignore[arg-type]
        if resp.status_code >= 400:
            raise OctoPrintLaunchError(f"{method} {path} -> {resp.status_code}: {resp.text[:300]}")
        return resp

    def printer_flags(self) -> dict[str, bool]:
        """The ``state.flags`` of ``/api/printer``, or ``{}`` while the printer is not connected."""
        resp = self._http.get(self.url + "/api/printer", params={"exclude": "sd,temperature"}, timeout=10)
        if resp.status_code == 409:
            return {}
        resp.raise_for_status()
        return dict(resp.json()["state"]["flags"])

    def wait_for(self, condition: str, timeout: float = 60.0) -> dict[str, bool]:
        """Wait until printer flag ``condition`` (e.g. ``"ready"``, ``"printing"``) is true."""
        deadline = time.monotonic() + timeout
        flags: dict[str, bool] = {}
        while time.monotonic() < deadline:
            with contextlib.suppress(requests.RequestException, ValueError, KeyError):
                flags = self.printer_flags()
                if flags.get(condition):
                    return flags
            time.sleep(0.2)
        raise OctoPrintLaunchError(f"printer flag {condition!r} not set within {timeout:.0f} s: {flags}")

    def wait_for_disconnected(self, timeout: float = 60.0) -> None:
        """Wait until the printer is no longer connected (``/api/printer`` answers 409)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(requests.RequestException, ValueError, KeyError):
                if not self.printer_flags():
                    return
            time.sleep(0.2)
        raise OctoPrintLaunchError(f"printer still connected after {timeout:.0f} s")

    def connect_printer(self, timeout: float = 60.0) -> None:
        """Connect OctoPrint to its ``VIRTUAL`` port and wait until the printer is ready."""
        self.request(
            "POST", "/api/connection", json={"command": "connect", "port": "VIRTUAL", "baudrate": 115200}
        )
        self.wait_for("ready", timeout)

    def upload(self, name: str, gcode: str, *, select: bool = False, print_: bool = False) -> dict:
        """Upload ``gcode`` as ``name`` to local storage, optionally selecting and printing it.

        Uses a multipart form like OctoPrint's own UI does: octorest 0.4's
        ``upload(select=, print=)`` silently drops those flags (§8 gap 2).
        """
        resp = self.request(
            "POST",
            "/api/files/local",
            files={"file": (name, gcode.encode(), "application/octet-stream")},
            data={"select": str(select).lower(), "print": str(print_).lower()},
        )
        return dict(resp.json())

    def upload_and_print(self, name: str, gcode: str, *, timeout: float = 60.0) -> None:
        """Upload ``gcode``, start printing it and wait until the printer reports printing."""
        self.upload(name, gcode, select=True, print_=True)
        self.wait_for("printing", timeout)

    def send_gcode(self, *commands: str) -> None:
        """Send raw commands (``!!DEBUG:…`` injects Virtual Printer faults); fire-and-forget."""
        self.request("POST", "/api/printer/command", json={"commands": list(commands)})

    def job_command(self, command: str, action: str | None = None) -> None:
        """``POST /api/job`` as a person at OctoPrint's UI would (e.g. ``"pause", "resume"``)."""
        body: dict[str, str] = {"command": command}
        if action:
            body["action"] = action
        self.request("POST", "/api/job", json=body)


_DEMO_PARTS = ("benchy", "cable-clip", "phone-stand", "gear-m2-z20", "hinge-bracket", "lamp-shade")


class DemoPrinter:
    """Keeps one :class:`VirtualOctoPrint` busy for a live demo: print, rest, print again.

    With ``job_requests`` (a callable giving the next job request ``{"seconds", "name"}`` or None,
    :mod:`firmware_bridge.simulators.demo_control`) it prints only what is asked for, uploading
    and starting each print through OctoPrint's REST API as a maker's slicer would.

    ``run()`` blocks until :meth:`close` (use :meth:`start_thread` to run it in the
    background). Print length and rests vary a little so several printers do not
    move in lock step. Errors are logged and retried; the demo never dies of one.
    """

    def __init__(
        self,
        server: VirtualOctoPrint,
        *,
        name: str = "demo",
        print_s: tuple[float, float] = (90.0, 240.0),
        rest_s: tuple[float, float] = (20.0, 60.0),
        job_requests: Callable[[], dict[str, Any] | None] | None = None,
    ) -> None:
        self.server = server
        self.job_requests = job_requests
        self.name = name
        self.print_s = print_s
        self.rest_s = rest_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start_thread(self) -> threading.Thread:
        self._thread = threading.Thread(target=self.run, name=f"demo-printer-{self.name}", daemon=True)
        self._thread.start()
        return self._thread

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def run(self) -> None:
        import random

        count = 0
        while not self._stop.is_set():
            try:
                flags = self.server.printer_flags()
                if not flags:
                    self.server.connect_printer()
                elif flags.get("ready") and not flags.get("printing") and not flags.get("paused"):
                    if self.job_requests is not None:
                        request = self.job_requests()
                        if request is not None:
                            name = (
                                request["name"]
                                if request["name"].endswith(".gcode")
                                else f"{request['name']}.gcode"
                            )
                            self.server.upload(name, demo_gcode(request["seconds"]), select=True, print_=True)
                        self._stop.wait(2.0)
                        continue
                    part = _DEMO_PARTS[count % len(_DEMO_PARTS)]
                    count += 1
                    seconds = random.uniform(*self.print_s)
                    # A handful of names, overwritten in turn: a long demo does not pile up files.
                    self.server.upload(f"{part}.gcode", demo_gcode(seconds), select=True, print_=True)
                    self._stop.wait(seconds + random.uniform(*self.rest_s))
                    continue
            except Exception as exc:  # a demo keeps going whatever one attempt hit
                log.warning("demo printer %s: %s", self.name, exc)
            self._stop.wait(2.0)


def main(argv: list[str] | None = None) -> int:
    """``python -m firmware_bridge.simulators.octoprint_server [--venv PATH]``: build the virtualenv."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--venv", default=str(DEFAULT_VENV), help="virtualenv path (default %(default)s)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        venv = ensure_octoprint_venv(args.venv, quiet=False)
    except OctoPrintLaunchError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"OctoPrint {OCTOPRINT_VERSION} ready in {venv}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
