"""OctoPrint's REST API through octorest 0.4, with timeouts and typed errors.

octorest covers the endpoints the bridge needs, but as released (0.4, 2020) it
has gaps that matter on lab hardware (read in its source, dougbrion/OctoRest tag v0.4, and
checked against OctoPrint 1.11's REST API, docs/api/*.rst):

* no request timeouts, so a hung OctoPrint would hang the adapter's thread:
  every request here goes through a session that always sets one;
* every HTTP error is a bare ``RuntimeError("Reply for … was not OK: … (409)")``:
  :func:`error_from_reply` parses the status back out and raises a subclass of
  :class:`OctoPrintError` that carries it;
* network failures leak as ``requests`` exceptions: they become
  :class:`OctoPrintUnreachable` (or :class:`OctoPrintTimeout`);
* ``version()`` does not exist (``version`` is a dict filled by the
  constructor, which also probes the server): the key is set on the session and
  :meth:`OctoPrintClient.version` calls ``get_version()``;
* ``upload(select=, print=, path=)`` silently drops those flags: uploads post a
  multipart form themselves;
* a URL path (OctoPrint behind a reverse proxy under ``/octoprint/``) is dropped:
  the session puts it back;
* ``pause()`` is fine (explicit ``action``), but nothing here ever sends the
  bare ``pause`` command, which *toggles*.

Callers get plain dicts as OctoPrint sends them (``docs/api/*.rst@1.11.8``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import requests
from octorest import OctoRest

__all__ = [
    "OctoPrintAuthError",
    "OctoPrintBadResponse",
    "OctoPrintClient",
    "OctoPrintConflict",
    "OctoPrintError",
    "OctoPrintNotFound",
    "OctoPrintTimeout",
    "OctoPrintUnreachable",
    "error_from_reply",
]

T = TypeVar("T")

#: Seconds to wait for OctoPrint's answer unless the caller says otherwise.
DEFAULT_TIMEOUT_S = 5.0
#: Seconds to wait for the TCP connection (a host that is down on the LAN).
CONNECT_TIMEOUT_S = 3.0


class OctoPrintError(Exception):
    """OctoPrint could not do what was asked. ``status`` is the HTTP status, or None without a reply."""

    def __init__(self, status: int | None, message: str) -> None:
        super().__init__(f"{message} (HTTP {status})" if status is not None else message)
        self.status = status
        self.message = message


class OctoPrintUnreachable(OctoPrintError):
    """No HTTP reply at all: connection refused, host down, DNS, TLS, reset."""


class OctoPrintTimeout(OctoPrintUnreachable):
    """OctoPrint accepted the connection (or not) but did not answer in time: it is hung or overloaded."""


class OctoPrintAuthError(OctoPrintError):
    """401/403: the API key is wrong, revoked, or lacks a permission."""


class OctoPrintConflict(OctoPrintError):
    """409: the printer's state does not allow this (not operational, not printing, …)."""


class OctoPrintNotFound(OctoPrintError):
    """404: no such endpoint or file (wrong URL path, old OctoPrint)."""


class OctoPrintBadResponse(OctoPrintError):
    """A 2xx reply whose body is not the JSON OctoPrint documents (a proxy's page, a booting server)."""


_STATUS_CLASSES: dict[int, type[OctoPrintError]] = {
    401: OctoPrintAuthError,
    403: OctoPrintAuthError,
    404: OctoPrintNotFound,
    409: OctoPrintConflict,
}
# octorest: 'Reply for {url} was not OK: {body} ({status})'
_REPLY_RE = re.compile(r"^Reply for (?P<url>\S*) was not OK: (?P<body>.*) \((?P<status>\d{3})\)\s*$", re.S)


def _error_for(status: int | None, message: str) -> OctoPrintError:
    cls = _STATUS_CLASSES.get(status, OctoPrintError) if status is not None else OctoPrintError
    return cls(status, message)


def _body_message(body: str) -> str:
    """OctoPrint's ``{"error": "…"}`` text, or the start of whatever else the body is."""
    body = body.strip()
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return data["error"]
    # An HTML error page says little in its first line; keep it short for logs and acks.
    text = re.sub(r"<[^>]+>", " ", body)
    text = " ".join(text.split())
    return text[:200] or "empty reply"


def error_from_reply(exc: BaseException) -> OctoPrintError:
    """Turn what octorest or requests raised into the matching :class:`OctoPrintError`.

    octorest's ``RuntimeError`` texts end in ``(<status>)``; anything that does
    not match keeps ``status=None``.
    """
    if isinstance(exc, OctoPrintError):
        return exc
    if isinstance(exc, requests.exceptions.JSONDecodeError):  # also a RequestException: test it first
        return OctoPrintBadResponse(None, f"OctoPrint sent a reply that is not JSON: {exc}")
    if isinstance(exc, requests.Timeout):
        return OctoPrintTimeout(None, f"OctoPrint did not answer in time ({exc.__class__.__name__})")
    if isinstance(exc, requests.ConnectionError):
        reason = str(exc)
        # urllib3 wraps the errno text deep inside; the tail is the useful part.
        match = re.search(r"\[Errno -?\d+\] ([^'\")]+)", reason)
        return OctoPrintUnreachable(None, f"cannot reach OctoPrint: {match.group(1) if match else reason}")
    if isinstance(exc, requests.RequestException):
        return OctoPrintUnreachable(None, f"request to OctoPrint failed: {exc}")
    if isinstance(exc, RuntimeError):
        match = _REPLY_RE.match(str(exc))
        if match:
            return _error_for(int(match["status"]), _body_message(match["body"]))
        return OctoPrintError(None, str(exc))
    if isinstance(exc, ValueError):  # requests' JSONDecodeError included
        return OctoPrintBadResponse(None, f"OctoPrint sent a reply that is not JSON: {exc}")
    return OctoPrintError(None, f"{exc.__class__.__name__}: {exc}")


class _OctoPrintSession(requests.Session):
    """A session that never waits forever and keeps the URL's path prefix.

    octorest calls ``session.get(url)`` without a timeout and builds URLs from
    the scheme and host only; both are corrected here, for every request.
    """

    def __init__(self, origin: str, prefix: str, timeout: float) -> None:
        super().__init__()
        self._origin = origin
        self._prefix = prefix
        self.timeout = (min(CONNECT_TIMEOUT_S, timeout), timeout)

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout
        if self._prefix and isinstance(url, str) and url.startswith(self._origin + "/"):
            rest = url[len(self._origin) :]
            if not rest.startswith(self._prefix + "/"):
                url = self._origin + self._prefix + rest
        # Redirects could carry the key to another host; OctoPrint's API does not need them
        # except the /api/users → /api/access/users one, which stays on the same origin.
        return super().request(method, url, *args, **kwargs)


class OctoPrintClient:
    """One OctoPrint server, reached with an API key (user key or application key).

    Construction does no I/O. Every method does one HTTP request (at most
    ``timeout`` seconds) and either returns OctoPrint's answer or raises an
    :class:`OctoPrintError` subclass; nothing else escapes. Thread-safe enough
    for one poller plus occasional commands (requests sessions are).
    """

    def __init__(self, url: str, api_key: str, *, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"OctoPrint URL must be http(s)://host[:port][/path], not {url!r}")
        if not api_key:
            raise ValueError("an OctoPrint API key is required")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.url = url.rstrip("/")
        self.timeout = timeout
        origin = f"{parts.scheme}://{parts.netloc}"
        self.session = _OctoPrintSession(origin, parts.path.rstrip("/"), timeout)
        self.session.headers["User-Agent"] = "fablab-firmware-bridge"
        # Not OctoRest(apikey=…): that probes /api/version in the constructor.
        self.session.headers["X-Api-Key"] = api_key
        self.rest = OctoRest(url=origin, session=self.session)

    def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except (RuntimeError, ValueError, requests.RequestException) as exc:
            raise error_from_reply(exc) from exc

    def _json(self, data: object) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise OctoPrintBadResponse(None, f"expected a JSON object, got {type(data).__name__}")
        return data

    # -- reads --------------------------------------------------------------

    def version(self) -> dict[str, Any]:
        """``GET /api/version``: ``{"api", "server", "text"}``; the liveness and key probe."""
        data = self._json(self._call(self.rest.get_version))
        if "server" not in data:
            raise OctoPrintBadResponse(None, "/api/version has no 'server' field: is this OctoPrint?")
        return data

    def connection(self) -> dict[str, Any]:
        """``GET /api/connection``: ``current.{state,port,baudrate,printerProfile}`` and ``options``."""
        return self._json(self._call(self.rest.connection_info))

    def printer(self, exclude: Iterable[str] = ("sd",)) -> dict[str, Any]:
        """``GET /api/printer``: ``state.{text,flags,error}`` and ``temperature``.

        Raises :class:`OctoPrintConflict` while the printer is not connected.
        """
        return self._json(self._call(self.rest.printer, exclude=list(exclude) or None))

    def job(self) -> dict[str, Any]:
        """``GET /api/job``: ``job.file``, ``progress``, ``state`` (text) and ``error`` after a fault."""
        return self._json(self._call(self.rest.job_info))

    def file_info(self, path: str, location: str = "local") -> dict[str, Any]:
        """``GET /api/files/{location}/{path}``: a file's metadata, with ``prints.last.{date,success}``.

        Raises :class:`OctoPrintNotFound` for an unknown file.
        """
        return self._json(self._call(self.rest.files_info, location, quote(path)))

    # -- commands (all asynchronous in OctoPrint: poll to see the effect) ---

    def pause(self) -> None:
        """Pause the print; a no-op if already paused. 409 if nothing is printing."""
        self._call(self.rest.pause_command, action="pause")

    def resume(self) -> None:
        """Resume a paused print; a no-op if printing. 409 if nothing is printing or paused."""
        self._call(self.rest.pause_command, action="resume")

    def cancel(self) -> None:
        """Cancel the print. 409 if nothing is printing or paused."""
        self._call(self.rest.cancel)

    def start(self) -> None:
        """Start the selected file. 409 while printing or with no file selected."""
        self._call(self.rest.start)

    def connect(self, port: str | None = None, baudrate: int | None = None) -> None:
        """Ask OctoPrint to open the serial port (``VIRTUAL`` for the Virtual Printer)."""
        self._call(self.rest.connect, port=port, baudrate=baudrate)

    def disconnect(self) -> None:
        self._call(self.rest.disconnect)

    def send_gcode(self, commands: str | Iterable[str]) -> None:
        """Send commands to the printer; fire-and-forget (answers come only through push)."""
        lines = [commands] if isinstance(commands, str) else list(commands)
        self._call(self.rest.gcode, lines)

    def upload(
        self,
        name: str,
        data: bytes,
        *,
        select: bool = False,
        print_: bool = False,
        path: str | None = None,
        location: str = "local",
    ) -> dict[str, Any]:
        """Upload a G-code file; with ``print_`` it starts printing at once.

        Posts the multipart form itself: octorest's ``upload`` sends the flags as
        JSON next to ``files=``, which requests drops (§8 gap 2). Returns
        OctoPrint's answer (``done``, ``effectiveSelect``, ``effectivePrint``, ``files``).
        """
        form = {"select": str(select).lower(), "print": str(print_).lower()}
        if path:
            form["path"] = path
        url = f"{self.rest.url}/api/files/{location}"

        def post() -> Any:
            resp = self.session.post(url, files={"file": (name, data, "application/octet-stream")}, data=form)
            self.rest._check_response(resp)  # the same error texts as every other call
            return resp.json()

        return self._json(self._call(post))

    def close(self) -> None:
        self.session.close()

    def __repr__(self) -> str:
        return f"OctoPrintClient({self.url!r})"


def flags_of(printer: Mapping[str, Any]) -> dict[str, bool]:
    """``state.flags`` of a ``/api/printer`` answer as a dict of bools (missing → empty)."""
    state = printer.get("state")
    flags = state.get("flags") if isinstance(state, Mapping) else None
    if not isinstance(flags, Mapping):
        return {}
    return {str(k): bool(v) for k, v in flags.items()}
