"""The ``octoprint`` adapter: a 3D printer behind OctoPrint's REST API.

Options (``[machines.options]``)::

    url = "http://octopi.local"      # http(s)://host[:port][/path]
    api_key = "…"                    # an application key (see hardware_docs/octoprint.md)
    timeout = 5                      # seconds per HTTP request (optional)
    poll_interval = 1                # seconds between polls, at least 1 (optional)
    confirm_timeout_s = 30           # how long a command waits for OctoPrint to show it (optional)

What it reports, once per poll (never more than once a second, because rapid
bursts make OctoPrint reset connections, ``OctoPrint/OctoPrint#4764``):

* state from OctoPrint's state *flags*, never from the text, which varies:
  ``printing``/``finishing``/``cancelling``/``resuming`` → running,
  ``pausing``/``paused`` → paused, ``error`` → error, ``operational`` → idle,
  printer not connected to OctoPrint → offline (``Offline after error`` → error);
  OctoPrint unreachable, hung (timeout) or refusing the key → offline, with the
  reason in ``status.error``; it recovers by itself when OctoPrint answers again;
* telemetry ``temp_nozzle_c``, ``temp_nozzle_target_c``, ``temp_bed_c``,
  ``temp_bed_target_c``, and while a job runs ``progress_pct``, ``print_time_s``,
  ``print_time_left_s``;
* events ``job_started``, ``job_finished``, ``job_failed``, ``job_cancelled``,
  derived from the flags and ``/api/job`` (polling sees the state, not
  OctoPrint's push events): a job that stops at 100 % finished; one that stops
  short while the printer stays operational was cancelled; one that ends in an
  error, a disconnected printer, or while OctoPrint was out of reach failed.

Commands ``pause``, ``resume`` and ``cancel`` send ``POST /api/job`` with an
explicit ``action`` (never the toggling bare ``pause``); 409 becomes the
``invalid_state`` ack code, every other failure ``device_error``. OctoPrint
answers 204 before the printer has done anything, and silently ignores some
requests (``printer/standard.py`` ``resume_print`` returns unless the state is
*Paused*, so a resume during *Pausing* is lost), so a command returns only once
OctoPrint's state flags show the result, read every half second for at most
``confirm_timeout_s``: ``pause`` → *Paused*; ``resume`` → *Printing* (a resume
during *Pausing* first waits for *Paused*, then sends the resume); ``cancel`` →
no job any more. Otherwise the ack is ``not_confirmed`` with what OctoPrint
still shows, never ``ok``.

Interlock (``interlock = true``): there is no start command in the contract, so
what the bridge enforces is that **nothing goes from not-printing to printing
while the machine is disabled**: a print started at OctoPrint's UI (or resumed
there) while disabled is paused at the next poll, and a ``resume`` command is
refused. A print that was already running when ``disable`` arrived is left to
finish, so a booking that ends does not ruin a part. ``set_enabled`` only
records the state and never sends anything to the printer, so restoring it at
bridge start (``initial=True``) cannot toggle anything.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from firmware_bridge.adapters.base import (
    ERROR,
    IDLE,
    OFFLINE,
    PAUSED,
    RUNNING,
    Adapter,
    AdapterSink,
    CommandError,
    ErrorInfo,
    JobInfo,
    register,
)
from firmware_bridge.adapters.octoprint.client import (
    DEFAULT_TIMEOUT_S,
    OctoPrintAuthError,
    OctoPrintBadResponse,
    OctoPrintClient,
    OctoPrintConflict,
    OctoPrintError,
    OctoPrintNotFound,
    OctoPrintTimeout,
    OctoPrintUnreachable,
    flags_of,
)
from firmware_bridge.protocol import JOB_ACTIONS, NOT_CONFIRMED

log = logging.getLogger(__name__)

#: Never poll OctoPrint more often than this, whatever the bridge's loop does.
MIN_POLL_INTERVAL_S = 1.0
#: After a refused key, ask again only this often (the key may be fixed in OctoPrint meanwhile).
AUTH_RETRY_S = 10.0
#: Longest wait between two attempts while OctoPrint is unreachable.
MAX_BACKOFF_S = 5.0
#: Default of ``confirm_timeout_s``: a pause waits for the moves already sent to the printer, and a
#: resume for the resume script; both take seconds on a real printer.
CONFIRM_TIMEOUT_S = 30.0
#: How often a command reads OctoPrint's state while it waits for confirmation.
CONFIRM_POLL_S = 0.5

_OPTIONS = ("url", "api_key", "timeout", "poll_interval", "confirm_timeout_s")
# Flags under which OctoPrint has a job in hand.
_ACTIVE_FLAGS = ("printing", "paused", "pausing", "cancelling", "finishing", "resuming")


def _active(flags: Mapping[str, bool]) -> bool:
    """OctoPrint has a job in hand (printing, paused or on the way to or from either)."""
    return any(flags.get(f) for f in _ACTIVE_FLAGS)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _dict(value: Any) -> dict[str, Any]:
    """``value`` if OctoPrint sent an object there, else an empty one (a malformed reply is not fatal)."""
    return value if isinstance(value, dict) else {}


def _number(value: Any) -> float | None:
    """A finite float from OctoPrint's JSON, or None (null, strings, NaN are dropped)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


@dataclasses.dataclass
class _Job:
    """A print this adapter has seen start, until it reports how it ended."""

    id: str
    name: str
    origin: str | None
    path: str | None
    started_ts: int
    progress_pct: float | None = None
    print_time_s: float | None = None
    cancel_requested: bool = False
    lost_contact: bool = False
    finishing_seen: bool = False  # OctoPrint had sent the whole file

    def info(self) -> JobInfo:
        progress = None if self.progress_pct is None else round(self.progress_pct, 1)
        return JobInfo(id=self.id, name=self.name, started_ts=self.started_ts, progress_pct=progress)

    def same_file(self, file: Mapping[str, Any]) -> bool:
        return (file.get("origin"), file.get("path") or file.get("name")) == (self.origin, self.path)


@dataclasses.dataclass(frozen=True)
class _Snapshot:
    """What one poll read from OctoPrint."""

    connected: bool  # the printer is connected to OctoPrint (/api/printer answered)
    flags: dict[str, bool]
    printer: dict[str, Any]
    job: dict[str, Any] | None
    #: ``prints.last`` of the tracked job's file, read when that job may have ended.
    last_print: dict[str, Any] | None = None

    @property
    def active(self) -> bool:
        return any(self.flags.get(f) for f in _ACTIVE_FLAGS)

    @property
    def printing(self) -> bool:
        """Really moving: printing and not on its way to a pause or an end."""
        f = self.flags
        return bool(f.get("printing")) and not any(f.get(k) for k in ("paused", "pausing", "cancelling"))


@register
class OctoPrintAdapter(Adapter):
    """A printer driven by OctoPrint; see the module docstring for the contract."""

    name = "octoprint"
    #: ``POST /api/job`` pause, resume and cancel (see :meth:`command`).
    capabilities = JOB_ACTIONS
    poll_interval_s = MIN_POLL_INTERVAL_S

    def __init__(
        self,
        machine: str,
        options: Mapping[str, Any],
        sink: AdapterSink,
        *,
        interlock: bool = False,
        enabled: bool = True,
    ) -> None:
        super().__init__(machine, options, sink, interlock=interlock, enabled=enabled)
        self.url = str(options["url"]).rstrip("/")
        self.timeout = float(options.get("timeout", DEFAULT_TIMEOUT_S))
        self.poll_interval_s = max(MIN_POLL_INTERVAL_S, float(options.get("poll_interval", 1.0)))
        self.confirm_timeout_s = float(options.get("confirm_timeout_s", CONFIRM_TIMEOUT_S))
        self._client: OctoPrintClient | None = None
        self._job: _Job | None = None
        self._was_printing: bool | None = None  # None: not known yet (bridge start, or never seen)
        self._link: str | None = None  # None until the first poll; "ok" or the reason it is down
        self._failures = 0
        self._next_attempt = 0.0
        self._last_cycle = -math.inf
        self._io_lock = threading.Lock()

    @classmethod
    def validate_options(cls, options: Mapping[str, Any]) -> list[str]:
        """One ``key: problem`` line per wrong, missing or unknown option."""
        problems: list[str] = []
        url = options.get("url")
        if url is None:
            problems.append("url: is required (e.g. http://octopi.local)")
        elif not isinstance(url, str):
            problems.append("url: must be a string")
        else:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                problems.append(f"url: must be http(s)://host[:port][/path], not {url!r}")
            else:
                try:
                    parts.port  # noqa: B018 - raises ValueError on a bad port
                except ValueError:
                    problems.append(f"url: has an invalid port: {url!r}")
        key = options.get("api_key")
        if key is None:
            problems.append("api_key: is required (an OctoPrint application key)")
        elif not isinstance(key, str) or not key.strip():
            problems.append("api_key: must be a non-empty string")
        elif key != key.strip():
            problems.append("api_key: has leading or trailing spaces")
        timeout = options.get("timeout")
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0.5 <= timeout <= 120
        ):
            problems.append("timeout: must be a number of seconds between 0.5 and 120")
        interval = options.get("poll_interval")
        if interval is not None and (
            isinstance(interval, bool)
            or not isinstance(interval, int | float)
            or not MIN_POLL_INTERVAL_S <= interval <= 3600
        ):
            problems.append(
                f"poll_interval: must be a number of seconds, at least {MIN_POLL_INTERVAL_S:g} "
                "(faster polling makes OctoPrint reset connections)"
            )
        confirm = options.get("confirm_timeout_s")
        if confirm is not None and (
            isinstance(confirm, bool) or not isinstance(confirm, int | float) or not 0 < confirm <= 300
        ):
            problems.append("confirm_timeout_s: must be a number of seconds above 0, at most 300")
        for unknown in sorted(set(options) - set(_OPTIONS)):
            problems.append(f"{unknown}: unknown option (known: {', '.join(_OPTIONS)})")
        return problems

    # -- life cycle ---------------------------------------------------------

    def setup(self) -> None:
        """Create the HTTP client; no I/O, so OctoPrint being down is reported by :meth:`poll`."""
        if self._client is None:
            self._client = OctoPrintClient(self.url, str(self.options["api_key"]), timeout=self.timeout)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def poll(self) -> None:
        """Read OctoPrint once and report; never raises for OctoPrint's or the network's faults."""
        now = time.monotonic()
        # The bridge may call faster (a per-machine override); OctoPrint must not see more than 1 Hz.
        if now - self._last_cycle < MIN_POLL_INTERVAL_S - 0.05 or now < self._next_attempt:
            return
        self._last_cycle = now
        self.setup()
        assert self._client is not None
        try:
            with self._io_lock:
                snapshot = self._read(self._client)
        except OctoPrintAuthError as exc:
            self._link_down(
                "auth",
                ErrorInfo(
                    "auth_failed",
                    f"OctoPrint at {self.url} refused the API key (HTTP {exc.status}: {exc.message}); "
                    "create an application key for the bridge and put it in bridge.toml",
                ),
                retry_s=AUTH_RETRY_S,
            )
            return
        except OctoPrintTimeout as exc:
            self._link_down(
                "timeout",
                ErrorInfo("unreachable", f"OctoPrint at {self.url} did not answer within {self.timeout:g} s"),
                retry_s=self._backoff(),
                detail=exc.message,
            )
            return
        except OctoPrintUnreachable as exc:
            reason = exc.message.removeprefix("cannot reach OctoPrint: ")
            self._link_down(
                "unreachable",
                ErrorInfo("unreachable", f"OctoPrint at {self.url} is unreachable: {reason}"),
                self._backoff(),
            )
            return
        except OctoPrintError as exc:
            # 404 (wrong URL path), 500, a reverse proxy's HTML page: OctoPrint is not usable.
            self._link_down(
                f"http-{exc.status}",
                ErrorInfo("octoprint_error", f"OctoPrint at {self.url} answered badly: {exc}"),
                self._backoff(),
            )
            return
        except Exception as exc:  # a malformed reply must not kill the adapter's thread
            self._link_down(
                "bug",
                ErrorInfo("octoprint_error", f"unexpected reply from OctoPrint at {self.url}: {exc!r}"),
                self._backoff(),
            )
            log.debug("%s: reading OctoPrint failed", self.machine, exc_info=True)
            return
        self._link_up()
        try:
            self._report(snapshot)
        except Exception:  # same: log it, keep polling
            log.exception("%s: could not interpret OctoPrint's state", self.machine)

    # -- reading ------------------------------------------------------------

    def _read(self, client: OctoPrintClient) -> _Snapshot:
        try:
            printer = client.printer(exclude=("sd",))
            connected = True
        except OctoPrintConflict:
            # 409: "Printer is not operational": the serial link is closed or in error.
            printer, connected = {}, False
        flags = flags_of(printer)
        active = any(flags.get(f) for f in _ACTIVE_FLAGS)
        # /api/job is only needed around a job and to explain a closed link; idle polls skip it.
        job = client.job() if (active or self._job is not None or not connected) else None
        last_print = None
        tracked = self._job
        file = _dict(_dict(_dict(job).get("job")).get("file"))
        if (
            tracked is not None
            and connected
            and tracked.origin == "local"
            and tracked.path
            and (not active or not tracked.same_file(file))
        ):
            # OctoPrint records how each print of a file ended: the surest verdict there is.
            try:
                prints = client.file_info(tracked.path).get("prints")
                last = prints.get("last") if isinstance(prints, dict) else None
                last_print = last if isinstance(last, dict) else None
            except (OctoPrintConflict, OctoPrintNotFound, OctoPrintBadResponse) as exc:
                log.debug("%s: no print record for %s: %s", self.machine, tracked.path, exc)
        return _Snapshot(connected=connected, flags=flags, printer=printer, job=job, last_print=last_print)

    def _backoff(self) -> float:
        return min(MAX_BACKOFF_S, 2.0 ** max(0, self._failures - 1))

    def _link_down(self, reason: str, error: ErrorInfo, retry_s: float, detail: str = "") -> None:
        with self._lock:
            self._failures += 1
            self._next_attempt = time.monotonic() + retry_s
            changed = self._link != reason
            self._link = reason
            if self._job is not None:
                self._job.lost_contact = True
        # One warning per change of condition, not one per poll: a dead OctoPrint must not flood the log.
        if changed:
            log.warning("%s: %s%s", self.machine, error.message, f" ({detail})" if detail else "")
        else:
            log.debug("%s: still %s", self.machine, reason)
        self.sink.set_status(state=OFFLINE, job=None, error=error)

    def _link_up(self) -> None:
        with self._lock:
            was = self._link
            self._link = "ok"
            self._failures = 0
            self._next_attempt = 0.0
        if was != "ok":
            server = "?"
            try:
                assert self._client is not None
                server = str(self._client.version().get("server"))
            except OctoPrintError as exc:
                log.debug("%s: version probe failed: %s", self.machine, exc)
            log.info(
                "%s: OctoPrint %s at %s answers%s",
                self.machine,
                server,
                self.url,
                f" again (was {was})" if was else "",
            )

    # -- reporting ----------------------------------------------------------

    def _report(self, snap: _Snapshot) -> None:
        ts = _now_ms()
        state, error = self._state_of(snap)
        job_data = snap.job or {}
        file = _dict(_dict(job_data.get("job")).get("file"))
        progress = _dict(job_data.get("progress"))
        completion = _number(progress.get("completion"))
        print_time = _number(progress.get("printTime"))
        time_left = _number(progress.get("printTimeLeft"))

        events: list[tuple[str, JobInfo, dict[str, Any]]] = []
        with self._lock:
            job = self._job
            # A different file, or the same file restarted, while we were looking away: the old job ended.
            if (
                job is not None
                and snap.active
                and (
                    not job.same_file(file)
                    or (
                        print_time is not None
                        and job.print_time_s is not None
                        and print_time + 5 < job.print_time_s
                    )
                )
            ):
                events.append(self._end_job(job, snap, state, error, completion=None))
                job = self._job = None
            if job is None and snap.active:
                job = self._job = self._start_job(file, print_time, ts)
                events.append(("job_started", job.info(), self._start_detail(job, print_time)))
            elif job is not None and not snap.active:
                # Someone may have selected the next file already: its completion says nothing of this job.
                own_completion = completion if job.same_file(file) else None
                events.append(self._end_job(job, snap, state, error, completion=own_completion))
                job = self._job = None
            if job is not None:
                if completion is not None:
                    job.progress_pct = completion
                if print_time is not None:
                    job.print_time_s = print_time
                job.lost_contact = False if snap.connected else job.lost_contact
                job.finishing_seen = job.finishing_seen or bool(snap.flags.get("finishing"))
            hold = self._interlock_check(snap)
            # A disconnected printer prints nothing; only a fresh bridge does not know (None).
            self._was_printing = snap.printing
            job_info = job.info() if job else None

        # The sink is called outside the lock: it may take its own locks and read self.enabled.
        for kind, info, detail in events:
            log.info("%s: %s: %s", self.machine, kind, info.name)
            self.sink.event(kind, job=info, detail=detail, ts=ts)
        self.sink.set_status(state=state, job=job_info, error=error, ts=ts)
        values = self._telemetry(snap, job, completion, print_time, time_left)
        if values:
            self.sink.telemetry(values, ts=ts)
        if hold:
            self._hold(job)

    def _state_of(self, snap: _Snapshot) -> tuple[str, ErrorInfo | None]:
        f = snap.flags
        if not snap.connected:
            job_data = snap.job or {}
            text = str(job_data.get("state") or "not connected")
            reason = job_data.get("error")
            if (isinstance(reason, str) and reason.strip()) or "error" in text.lower():
                return ERROR, ErrorInfo("printer_error", str(reason or text).strip())
            return OFFLINE, ErrorInfo(
                "printer_disconnected", f"OctoPrint runs but is not connected to the printer ({text})"
            )
        if f.get("error"):
            printer_state = _dict(snap.printer.get("state"))
            reason = printer_state.get("error") or printer_state.get("text")
            return ERROR, ErrorInfo("printer_error", str(reason or "printer error"))
        if f.get("paused") or f.get("pausing"):
            return PAUSED, None
        if snap.active:
            return RUNNING, None
        if f.get("operational"):
            return IDLE, None
        # closedOrError without error: the link is closing or opening.
        return OFFLINE, ErrorInfo("printer_disconnected", "the printer is not connected to OctoPrint")

    def _telemetry(
        self,
        snap: _Snapshot,
        job: _Job | None,
        completion: float | None,
        print_time: float | None,
        time_left: float | None,
    ) -> dict[str, float]:
        values: dict[str, float] = {}
        temps = snap.printer.get("temperature")
        if isinstance(temps, dict):
            for heater, prefix in (("tool0", "temp_nozzle"), ("bed", "temp_bed")):
                reading = temps.get(heater)
                if not isinstance(reading, dict):
                    continue
                actual, target = _number(reading.get("actual")), _number(reading.get("target"))
                if actual is not None:
                    values[f"{prefix}_c"] = actual
                if target is not None:
                    values[f"{prefix}_target_c"] = target
        if job is not None:
            if completion is not None:
                values["progress_pct"] = round(completion, 2)
            if print_time is not None:
                values["print_time_s"] = print_time
            if time_left is not None:
                values["print_time_left_s"] = time_left
        return values

    # -- jobs ---------------------------------------------------------------

    def _start_job(self, file: Mapping[str, Any], print_time: float | None, ts: int) -> _Job:
        name = str(file.get("display") or file.get("name") or file.get("path") or "unnamed job")
        origin = file.get("origin")
        path = file.get("path") or file.get("name")
        # When the bridge attaches to a print that is under way, its start lies in the past.
        started = ts - int((print_time or 0) * 1000)
        digest = hashlib.sha256(
            f"{self.machine}|{origin}|{path}|{file.get('date')}|{started // 1000}".encode()
        )
        job = _Job(
            id=digest.hexdigest()[:16],
            name=name,
            origin=str(origin) if origin is not None else None,
            path=str(path) if path is not None else None,
            started_ts=started,
            print_time_s=print_time,
        )
        return job

    def _start_detail(self, job: _Job, print_time: float | None) -> dict[str, Any]:
        detail: dict[str, Any] = {"origin": job.origin}
        if (print_time or 0) > 2 * self.poll_interval_s + 5:
            detail["attached"] = True  # already running when the bridge first saw it
        return detail

    def _end_job(
        self,
        job: _Job,
        snap: _Snapshot,
        state: str,
        error: ErrorInfo | None,
        *,
        completion: float | None,
    ) -> tuple[str, JobInfo, dict[str, Any]]:
        """Decide how ``job`` ended: finished at 100 %, failed on error/loss, else cancelled."""
        detail: dict[str, Any] = {}
        if job.print_time_s is not None:
            detail["print_time_s"] = job.print_time_s
        recorded = self._recorded_outcome(job, snap.last_print)
        if recorded is True or (
            recorded is None
            and (
                (completion is not None and completion >= 100.0)
                or (state != ERROR and (job.finishing_seen or (job.progress_pct or 0) >= 100.0))
            )
        ):
            job.progress_pct = 100.0
            kind = "job_finished"
        elif state == ERROR:
            kind = "job_failed"
            detail["reason"] = error.message if error else "printer error"
        elif job.lost_contact:
            kind = "job_failed"
            detail["reason"] = "OctoPrint was out of reach while printing, and the job is gone"
        elif not snap.connected:
            kind = "job_failed"
            detail["reason"] = "the printer was disconnected from OctoPrint"
        elif snap.active and recorded is None:
            # Another file is printing now, and how the old one ended was not seen.
            kind = "job_failed"
            detail["reason"] = "ended while the bridge was not looking"
        else:
            kind = "job_cancelled"
            detail["by"] = "bridge" if job.cancel_requested else "octoprint"
        return kind, job.info(), detail

    @staticmethod
    def _recorded_outcome(job: _Job, last_print: dict[str, Any] | None) -> bool | None:
        """OctoPrint's own record (``prints.last.success``) if it is about this job, else None."""
        if not last_print or not isinstance(last_print.get("success"), bool):
            return None
        date = _number(last_print.get("date"))
        # The record must be younger than the job (with slack for a clock read a poll late).
        if date is None or date * 1000 < job.started_ts - 5000:
            return None
        return bool(last_print["success"])

    # -- interlock ----------------------------------------------------------

    def _interlock_check(self, snap: _Snapshot) -> bool:
        """True when a print went from not-printing to printing while the machine is disabled."""
        if not self.interlock or self._enabled or not snap.printing:
            return False
        # None means the bridge has just (re)started: a print that is already running is left alone.
        return self._was_printing is False

    def _hold(self, job: _Job | None) -> None:
        name = job.name if job else "?"
        try:
            with self._io_lock:
                assert self._client is not None
                self._client.pause()
        except OctoPrintError as exc:
            log.warning("%s: interlock could not pause %s: %s", self.machine, name, exc)
            self.sink.event(
                "interlock_hold_failed", job=job.info() if job else None, detail={"reason": str(exc)}
            )
            return
        log.warning("%s: machine is disabled: paused %s, started at OctoPrint", self.machine, name)
        self.sink.event(
            "interlock_hold",
            job=job.info() if job else None,
            detail={"reason": "a print started while the machine is disabled"},
        )

    # -- commands -----------------------------------------------------------

    def command(self, action: str, params: Mapping[str, Any] | None = None) -> None:
        """``pause``, ``resume``, ``cancel`` (and ``enable``/``disable`` with an interlock).

        Returns once OctoPrint's flags show the result (see the module docstring); raises
        :class:`CommandError` ``invalid_state``, ``device_error`` or ``not_confirmed``.
        """
        if action not in ("pause", "resume", "cancel"):
            super().command(action, params)
            return
        if action == "resume" and self.interlock and not self._enabled:
            raise CommandError("invalid_state", f"{self.machine} is disabled: enable it before resuming")
        self.setup()
        deadline = time.monotonic() + self.confirm_timeout_s
        if action == "resume":
            flags = self._flags(action)
            if flags.get("pausing"):
                # OctoPrint drops a resume while Pausing (resume_print() only acts when Paused).
                flags = self._await(action, deadline, lambda f: not f.get("pausing"), "to finish pausing")
            if self._printing(flags):
                return  # already printing: nothing to resume, and OctoPrint shows it
        with self._lock:
            job = self._job
            if action == "cancel" and job is not None:
                job.cancel_requested = True
        self._send(action, job)
        log.info("%s: %s sent to OctoPrint", self.machine, action)
        if action == "pause":
            flags = self._await(
                action, deadline, lambda f: bool(f.get("paused")) or not _active(f), "to pause"
            )
            if not flags.get("paused"):
                raise CommandError("invalid_state", "cannot pause: the print ended first")
        elif action == "resume":
            self._await(action, deadline, lambda f: self._printing(f) or not _active(f), "to print again")
            # A print that ended meanwhile is reported by the poll; the resume itself was done.
        else:
            self._await(action, deadline, lambda f: not _active(f), "to end the print")

    @staticmethod
    def _printing(flags: Mapping[str, bool]) -> bool:
        return bool(flags.get("printing")) and not any(
            flags.get(k) for k in ("paused", "pausing", "resuming", "cancelling")
        )

    def _send(self, action: str, job: _Job | None) -> None:
        assert self._client is not None
        try:
            with self._io_lock:
                getattr(self._client, action)()
        except OctoPrintConflict as exc:
            if action == "cancel" and job is not None:
                job.cancel_requested = False
            raise CommandError("invalid_state", f"OctoPrint refused to {action}: {exc.message}") from exc
        except OctoPrintError as exc:
            if action == "cancel" and job is not None:
                job.cancel_requested = False
            raise CommandError("device_error", f"OctoPrint could not {action}: {exc}") from exc

    def _flags(self, action: str) -> dict[str, bool]:
        """OctoPrint's state flags now (``{}`` when the printer is not connected)."""
        assert self._client is not None
        try:
            with self._io_lock:
                return flags_of(self._client.printer(exclude=("sd", "temperature")))
        except OctoPrintConflict:
            return {}
        except OctoPrintError as exc:
            raise CommandError("device_error", f"OctoPrint could not be read during {action}: {exc}") from exc

    def _await(
        self, action: str, deadline: float, done: Callable[[dict[str, bool]], bool], what: str
    ) -> dict[str, bool]:
        """Read the flags every :data:`CONFIRM_POLL_S` until ``done(flags)``; ``not_confirmed`` at ``deadline``."""
        while True:
            flags = self._flags(action)
            if not flags:
                # No printer behind OctoPrint any more: nothing can confirm the command, and "no
                # job is active" would otherwise read as a resume or cancel that worked.
                raise CommandError(
                    "device_error", f"{action}: the printer is no longer connected to OctoPrint"
                )
            if done(flags):
                return flags
            if time.monotonic() >= deadline:
                shown = ", ".join(sorted(k for k, v in flags.items() if v)) or "not connected"
                raise CommandError(
                    NOT_CONFIRMED,
                    f"{action}: OctoPrint did not get the printer {what} within "
                    f"{self.confirm_timeout_s:g} s (its state: {shown})",
                )
            time.sleep(CONFIRM_POLL_S)

    def set_enabled(self, enabled: bool, *, initial: bool = False) -> None:
        """Record the interlock state; it is enforced at the next poll, never by a command sent now."""
        with self._lock:
            changed = self._enabled != enabled
            super().set_enabled(enabled, initial=initial)
        if changed and not initial:
            log.info("%s: %s", self.machine, "enabled" if enabled else "disabled (new prints will be held)")
