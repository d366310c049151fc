"""`make run`: start the whole demo on this machine and keep it running.

Private Mosquitto, InfluxDB and Redis instances on the project's own loopback
ports with their data under var/ (each skipped when MQTT_URL, INFLUX_URL or
REDIS_URL point elsewhere), the hub, one simulated bridge per demo lab (its
interlocked machines boot disabled; its machines run the jobs the demo makers
ask for), the web server, the booking scheduler (``run_scheduler``) and the demo's
simulated makers (``run_demo_makers``). Ctrl-C stops everything. Logs go to var/log/.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VAR = Path(os.environ.get("FABLAB_VAR_DIR", ROOT / "var"))
LOG = VAR / "log"
PY = sys.executable
HOST = os.environ.get("HOST", "127.0.0.1")
PORT = int(os.environ.get("PORT", "8000"))
MQTT_PORT, INFLUX_PORT, INFLUX_BIND_PORT, REDIS_PORT = 18830, 18086, 18088, 16379
#: The servers the hub, the bridges and the web write to: started first, stopped last.
SERVERS = ("mosquitto", "influxdb", "redis")
#: What acts on the bookings and the machines (commands, check-ins, jobs): stopped first, so that
#: nothing is asked of a hub or a bridge that is already going.
ACTORS = ("scheduler", "demo_makers")
#: Where the demo makers leave job requests for the simulated machines.
CONTROL = VAR / "demo" / "control"


def say(message: str) -> None:
    print(f"[make run] {message}", flush=True)


def port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def wait_port(port: int, name: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"[make run] {name} stopped at start; see {LOG / (name + '.log')}")
        if not port_free(port):
            return
        time.sleep(0.1)
    raise SystemExit(f"[make run] {name} did not listen on port {port}; see {LOG / (name + '.log')}")


class Supervisor:
    """Starts children in their own process groups and stops them all together."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen, list[str], dict | None, bool]] = []
        LOG.mkdir(parents=True, exist_ok=True)

    def start(self, name: str, argv: list[str], env: dict | None = None, restart: bool = False):
        log = open(LOG / f"{name}.log", "ab")  # noqa: SIM115 - the child owns it
        proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.procs.append((name, proc, argv, env, restart))
        return proc

    def stop_all(self) -> None:
        """Stop the scheduler and the demo makers, then the web, the bridges and the hub, then the
        servers they write to.

        The hub flushes its last batches into InfluxDB and acknowledges them to
        Mosquitto as it stops; both must still be there until it has gone.
        """
        actors = [entry for entry in self.procs if entry[0] in ACTORS]
        clients = [entry for entry in self.procs if entry[0] not in SERVERS + ACTORS]
        servers = [entry for entry in self.procs if entry[0] in SERVERS]
        for group in (actors, clients, servers):
            self._stop(group)

    @staticmethod
    def _stop(group: list) -> None:
        for _name, proc, *_ in reversed(group):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for _name, proc, *_ in reversed(group):
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def watch(self) -> None:
        """Restart what may restart (hub, bridges); stop everything when anything else ends."""
        while True:
            time.sleep(1)
            for i, (name, proc, argv, env, restart) in enumerate(self.procs):
                if proc.poll() is None:
                    continue
                if not restart:
                    say(f"{name} stopped (exit {proc.returncode}); see {LOG / (name + '.log')}")
                    return
                say(f"{name} stopped (exit {proc.returncode}); restarting it")
                time.sleep(2)
                self.procs.pop(i)
                self.start(name, argv, env, restart=True)
                break


def mosquitto_config(root_user: bool) -> Path:
    conf_dir = VAR / "mosquitto"
    (conf_dir / "data").mkdir(parents=True, exist_ok=True)
    conf = conf_dir / "mosquitto.conf"
    from devices.mqtt_names import MOSQUITTO_MAX_PACKET_SIZE  # after sys.path has the repository

    lines = [
        "# Written by `make run`.",
        f"listener {MQTT_PORT} 127.0.0.1",
        "allow_anonymous false",
        f"password_file {conf_dir / 'passwords'}",
        f"acl_file {conf_dir / 'acl'}",
        "persistence true",
        f"persistence_location {conf_dir / 'data'}/",
        # Mosquitto's default of 1000 silently drops messages for a slow
        # subscriber; the hub's persistent session must keep its backlog.
        "max_queued_messages 1000000",
        "max_inflight_messages 1000",
        # The hub's payload limit plus the largest MQTT header: bigger packets are refused.
        f"max_packet_size {MOSQUITTO_MAX_PACKET_SIZE}",
        # Small packets (a command, its ack) go out at once instead of waiting on Nagle's algorithm
        # for the peer's delayed ACK: check-in → unlock in about 110 ms instead of 170 (docs/benchmarks.md).
        "set_tcp_nodelay true",
        f"pid_file {conf_dir / 'mosquitto.pid'}",
        "log_dest stderr",
    ]
    if root_user:
        lines.insert(1, "user root")
    conf.write_text("\n".join(lines) + "\n")
    return conf


def influx_config() -> Path:
    base = VAR / "influxdb"
    for sub in ("meta", "data", "wal"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    conf = base / "influxdb.conf"
    conf.write_text(
        f"""# Written by `make run`.
reporting-enabled = false
bind-address = "127.0.0.1:{INFLUX_BIND_PORT}"
[meta]
  dir = "{base / "meta"}"
[data]
  dir = "{base / "data"}"
  wal-dir = "{base / "wal"}"
  query-log-enabled = false
[http]
  bind-address = "127.0.0.1:{INFLUX_PORT}"
  log-enabled = false
"""
    )
    return conf


def manage(*args: str, env: dict) -> None:
    subprocess.run([PY, "manage.py", *args], cwd=ROOT, env=env, check=True)


def main() -> int:
    sup = Supervisor()
    # The demo runs the development settings, in this process and every child
    # (DEBUG is off unless set); scripts/run.sh sets it too.
    os.environ["DEBUG"] = "true"
    env = dict(os.environ)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fablab.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.conf import settings

    from fablab.demo import machines as demo

    own_mqtt = "MQTT_URL" not in os.environ
    own_influx = "INFLUX_URL" not in os.environ
    own_redis = "REDIS_URL" not in os.environ
    for own, port, what in (
        (own_mqtt, MQTT_PORT, "Mosquitto"),
        (own_influx, INFLUX_PORT, "InfluxDB"),
        (own_redis, REDIS_PORT, "Redis"),
        (True, PORT, "the web server"),
    ):
        if own and not port_free(port):
            raise SystemExit(
                f"[make run] port {port} for {what} is taken: is another `make run` still running?"
            )
    if own_redis:
        env["REDIS_URL"] = f"redis://127.0.0.1:{REDIS_PORT}/0"
    if own_influx:
        env["INFLUX_URL"] = f"http://127.0.0.1:{INFLUX_PORT}"
    env["MQTT_URL"] = settings.MQTT_URL
    # Links in the e-mails and the calendar feed's address name the port the demo really serves.
    # (A server listening on every address is reached, from this machine, on the loopback one.)
    env.setdefault("SITE_URL", f"http://{'127.0.0.1' if HOST in ('0.0.0.0', '::') else HOST}:{PORT}")  # noqa: S104

    manage("migrate", "--no-input", "-v", "0", env=env)
    # A year of past activity (once: a second start finds it), so that the officer's reports are real at once.
    manage("seed_demo", "--history-days", "400", env=env)
    manage("collectstatic", "--no-input", "-v", "0", env=env)
    manage(
        "mqtt_sync",
        "--password-file",
        str(VAR / "mosquitto" / "passwords"),
        "--acl-file",
        str(VAR / "mosquitto" / "acl"),
        env=env,
    )

    def stop(signum, frame):
        raise KeyboardInterrupt

    # Explicitly: a shell that starts this in the background ignores SIGINT for it.
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        if own_mqtt:
            proc = sup.start("mosquitto", ["mosquitto", "-c", str(mosquitto_config(os.geteuid() == 0))])
            wait_port(MQTT_PORT, "mosquitto", proc)
        if own_influx:
            proc = sup.start("influxdb", ["influxd", "run", "-config", str(influx_config())])
            wait_port(INFLUX_PORT, "influxdb", proc)
            db = settings.INFLUX_DATABASE
            for _ in range(100):
                with contextlib.suppress(OSError):
                    urllib.request.urlopen(
                        urllib.request.Request(
                            f"http://127.0.0.1:{INFLUX_PORT}/query",
                            data=f"q=CREATE DATABASE {db}".encode(),
                            method="POST",
                        ),
                        timeout=5,
                    ).read()
                    break
                time.sleep(0.1)
        if own_redis:
            redis_dir = VAR / "redis"
            redis_dir.mkdir(parents=True, exist_ok=True)
            proc = sup.start(
                "redis",
                [
                    "redis-server",
                    "--bind",
                    "127.0.0.1",
                    "--port",
                    str(REDIS_PORT),
                    "--dir",
                    str(redis_dir),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ],
            )
            wait_port(REDIS_PORT, "redis", proc)

        # One hub with plain subscriptions: Mosquitto 2.0 does not restore $share
        # subscriptions after a broker restart (see docs/benchmarks.md).
        sup.start("hub", [PY, "manage.py", "run_hub", "--group", "none"], env=env, restart=True)
        mqtt_host, mqtt_port = "127.0.0.1", MQTT_PORT
        if not own_mqtt:
            from urllib.parse import urlsplit

            parts = urlsplit(env["MQTT_URL"])
            mqtt_host, mqtt_port = parts.hostname or "127.0.0.1", parts.port or 1883
        for config in demo.demo_configs():
            from firmware_bridge.config import load

            cfg = load(config)
            argv = [
                PY,
                "-m",
                "firmware_bridge",
                "simulate",
                "--config",
                str(config),
                "--mqtt-url",
                demo.mqtt_url_for(cfg.bridge.id, mqtt_host, mqtt_port),
                "--workdir",
                str(VAR / "demo" / cfg.bridge.id),
                "--octoprint-venv",
                str(VAR / "octoprint-venv"),
                # Interlocked machines boot disabled; the scheduler unlocks them for a check-in.
                "--start-disabled",
                # The machines run the jobs the demo makers ask for, not jobs of their own.
                "--demo-control",
                str(CONTROL),
            ]
            for m in cfg.machines:
                if m.adapter in demo.PLUG_ADAPTERS:
                    user = demo.plug_user(m.machine)
                    argv += [
                        "--plug-mqtt-url",
                        f"{m.machine}={demo.mqtt_url_for(user, mqtt_host, mqtt_port)}",
                    ]
            sup.start(f"bridge-{cfg.bridge.id}", argv, env=env, restart=True)

        web = sup.start(
            "web",
            [
                PY,
                "-m",
                "uvicorn",
                "fablab.asgi:application",
                "--host",
                HOST,
                "--port",
                str(PORT),
                "--log-level",
                "warning",
            ],
            # The web server holds no broker credentials: it writes commands as rows, the hub publishes them.
            env={k: v for k, v in env.items() if k != "MQTT_URL"},
        )
        wait_port(PORT, "web", web)
        # The scheduler (no-shows, the interlock, the ends of bookings) and the demo's makers.
        sup.start("scheduler", [PY, "manage.py", "run_scheduler"], env=env, restart=True)
        sup.start(
            "demo_makers",
            [PY, "manage.py", "run_demo_makers", "--control-dir", str(CONTROL)],
            env=env,
            restart=True,
        )
        print(
            f"""
  FabLab platform demo: http://{HOST}:{PORT}/
  Floor board:          http://{HOST}:{PORT}/labs/bxl-centre/board/  (log in as manager)
  API docs:             http://{HOST}:{PORT}/api/docs/
  Admin:                http://{HOST}:{PORT}/admin/  (superusers only: manage.py createsuperuser)

  Demo logins (password demo1234 for all):
    maker    certified on every training (kiosk PIN 1234, badge 04A1B2C3)
    newbie   no certification yet (kiosk PIN 1234)
    manager  lab manager of both labs (manager pages at /manage/)
    officer  programme officer

  Logs: {LOG}/   Stop with Ctrl-C.
""",
            flush=True,
        )

        sup.watch()
    except KeyboardInterrupt:
        pass
    finally:
        # A second Ctrl-C or SIGTERM must not cut the shutdown short and
        # leave a server running in the background.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        say("stopping")
        sup.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
