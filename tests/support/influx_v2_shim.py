"""A loopback shim that speaks InfluxDB's v2 write API in front of a v1 server.

Debian's InfluxDB 1.6 answers 404 to ``/api/v2/*``. To test the store's v2
path (influxdb-client's write API, as used against InfluxDB 2.x/3.x with a
token) against a real server, this shim accepts
``POST /api/v2/write?org=&bucket=&precision=`` with ``Authorization: Token …``,
checks the token and the org, and forwards the body to the real server's
``/write?db=<bucket>&precision=``; ``/query`` (v1 compatibility, as InfluxDB 2
serves it) and ``/ping`` are forwarded too after the same token check.
"""

from __future__ import annotations

import gzip
import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.support.mosquitto import free_port


class InfluxV2Shim:
    def __init__(self, upstream: str, *, token: str, org: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.token = token
        self.org = org
        self.port = free_port()
        self.requests: list[tuple[str, str]] = []  # (method, path with query) seen, for assertions
        shim = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _reply(self, status: int, body: bytes = b"", ctype: str = "application/json") -> None:
                self.send_response(status)
                if body:
                    self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if body:
                    self.wfile.write(body)

            def _authorized(self) -> bool:
                if self.headers.get("Authorization") == f"Token {shim.token}":
                    return True
                self._reply(
                    401, json.dumps({"code": "unauthorized", "message": "unauthorized access"}).encode()
                )
                return False

            def _forward(self, path: str, params: dict[str, str], body: bytes | None, method: str) -> None:
                url = f"{shim.upstream}{path}?{urllib.parse.urlencode(params)}"
                req = urllib.request.Request(url, data=body, method=method)
                if body is not None:
                    req.add_header("Content-Type", self.headers.get("Content-Type", "text/plain"))
                try:
                    with urllib.request.urlopen(req, timeout=30) as resp:
                        self._reply(
                            resp.status, resp.read(), resp.headers.get("Content-Type", "application/json")
                        )
                except urllib.error.HTTPError as exc:
                    self._reply(exc.code, exc.read())
                except OSError as exc:
                    self._reply(503, json.dumps({"code": "unavailable", "message": str(exc)}).encode())

            def _body(self) -> bytes:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    raw = gzip.decompress(raw)
                return raw

            def do_POST(self) -> None:
                parts = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(parts.query))
                shim.requests.append(("POST", self.path))
                body = self._body()
                if not self._authorized():
                    return
                if parts.path == "/api/v2/write":
                    if query.get("org") != shim.org:
                        self._reply(
                            404,
                            json.dumps({"code": "not found", "message": "organization not found"}).encode(),
                        )
                        return
                    if not query.get("bucket"):
                        self._reply(
                            400, json.dumps({"code": "invalid", "message": "bucket is required"}).encode()
                        )
                        return
                    params = {"db": query["bucket"], "precision": query.get("precision", "ns")}
                    self._forward("/write", params, body, "POST")
                elif parts.path == "/query":
                    if body and self.headers.get("Content-Type", "").startswith(
                        "application/x-www-form-urlencoded"
                    ):
                        query.update(dict(urllib.parse.parse_qsl(body.decode())))
                    self._forward("/query", query, b"", "POST")
                else:
                    self._reply(404, b'{"code":"not found"}')

            def do_GET(self) -> None:
                parts = urllib.parse.urlsplit(self.path)
                shim.requests.append(("GET", self.path))
                if parts.path in ("/ping", "/health"):
                    self._forward("/ping", {}, None, "GET")
                    return
                if not self._authorized():
                    return
                if parts.path == "/query":
                    self._forward("/query", dict(urllib.parse.parse_qsl(parts.query)), None, "GET")
                else:
                    self._reply(404, b'{"code":"not found"}')

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> InfluxV2Shim:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> InfluxV2Shim:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
