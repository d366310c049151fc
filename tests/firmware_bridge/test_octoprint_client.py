"""The OctoPrint client against a real OctoPrint 1.11 (Virtual Printer): timeouts and typed errors."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator

import pytest

from firmware_bridge.adapters.octoprint.client import (
    OctoPrintAuthError,
    OctoPrintBadResponse,
    OctoPrintClient,
    OctoPrintConflict,
    OctoPrintError,
    OctoPrintNotFound,
    OctoPrintTimeout,
    OctoPrintUnreachable,
    error_from_reply,
    flags_of,
)
from firmware_bridge.simulators.octoprint_server import (
    OCTOPRINT_VERSION,
    VirtualOctoPrint,
    demo_gcode,
    free_port,
)
from tests.support.octoprint import make_idle, octoprint_server, octoprint_venv  # noqa: F401


@pytest.fixture
def server(octoprint_server: VirtualOctoPrint) -> VirtualOctoPrint:  # noqa: F811
    make_idle(octoprint_server)
    return octoprint_server


@pytest.fixture
def client(server: VirtualOctoPrint) -> Iterator[OctoPrintClient]:
    c = OctoPrintClient(server.url, server.api_key, timeout=10)
    yield c
    c.close()


@pytest.mark.parametrize(
    ("text", "cls", "status", "message"),
    [
        (
            'Reply for http://h/api/job was not OK: {\n  "error": "Printer is neither printing nor paused"\n}\n (409)',
            OctoPrintConflict,
            409,
            "Printer is neither printing nor paused",
        ),
        (
            'Reply for http://h/api/version was not OK: {"error": "You don\'t have the permission"} (403)',
            OctoPrintAuthError,
            403,
            "You don't have the permission",
        ),
        ("Reply for http://h/api/version was not OK:  (401)", OctoPrintAuthError, 401, "empty reply"),
        (
            "Reply for http://h/x was not OK: <html><h1>Not Found</h1></html> (404)",
            OctoPrintNotFound,
            404,
            "Not Found",
        ),
        ("Reply for http://h/x was not OK: boom (500)", OctoPrintError, 500, "boom"),
        ("something else entirely", OctoPrintError, None, "something else entirely"),
    ],
)
def test_octorest_error_texts_become_typed_errors(
    text: str, cls: type, status: int | None, message: str
) -> None:
    err = error_from_reply(RuntimeError(text))
    assert type(err) is cls
    assert err.status == status
    assert err.message == message


def test_version_connection_and_printer(client: OctoPrintClient) -> None:
    assert client.version()["server"] == OCTOPRINT_VERSION
    assert client.connection()["current"]["port"] == "VIRTUAL"
    flags = flags_of(client.printer())
    assert flags["operational"] and flags["ready"] and not flags["printing"]
    assert client.job()["state"] == "Operational"


def test_wrong_key_is_an_auth_error_with_status(server: VirtualOctoPrint) -> None:
    bad = OctoPrintClient(server.url, "WRONG" + server.api_key)
    with pytest.raises(OctoPrintAuthError) as info:
        bad.version()
    assert info.value.status == 403
    assert "permission" in info.value.message


def test_command_in_the_wrong_state_is_a_conflict(client: OctoPrintClient) -> None:
    for command in (client.pause, client.resume, client.cancel):
        with pytest.raises(OctoPrintConflict) as info:
            command()
        assert info.value.status == 409
        assert "neither printing nor paused" in info.value.message


def test_disconnected_printer_gives_409_on_printer(server: VirtualOctoPrint, client: OctoPrintClient) -> None:
    client.disconnect()
    try:
        server.wait_for_disconnected()
        with pytest.raises(OctoPrintConflict):
            client.printer()
        assert client.job()["state"] in ("Offline", "Closed")
    finally:
        server.connect_printer()


def test_nothing_listening_is_unreachable() -> None:
    client = OctoPrintClient(f"http://127.0.0.1:{free_port()}", "KEY", timeout=5)
    with pytest.raises(OctoPrintUnreachable) as info:
        client.version()
    assert info.value.status is None
    assert "Connection refused" in info.value.message


def test_a_server_that_never_answers_times_out() -> None:
    """Accepts the connection, reads the request, never replies: octorest alone would hang forever."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    accepted: list[socket.socket] = []
    done = threading.Event()

    def accept() -> None:
        while not done.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            accepted.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        client = OctoPrintClient(f"http://127.0.0.1:{listener.getsockname()[1]}", "KEY", timeout=1)
        with pytest.raises(OctoPrintTimeout) as info:
            client.job()
        assert isinstance(info.value, OctoPrintUnreachable)
        assert accepted, "the request reached the listener"
    finally:
        done.set()
        listener.close()
        for conn in accepted:
            conn.close()


def test_a_reply_that_is_not_json_is_a_bad_response() -> None:
    class Portal(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<html>Welcome to the guest Wi-Fi</html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Portal)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        client = OctoPrintClient(f"http://127.0.0.1:{httpd.server_address[1]}", "KEY")
        with pytest.raises(OctoPrintBadResponse):
            client.version()
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_url_path_is_kept(server: VirtualOctoPrint) -> None:
    """octorest drops the path of the URL; a reverse-proxy prefix must reach the server."""
    prefixed = OctoPrintClient(server.url + "/octoprint/", server.api_key)
    # This OctoPrint is not behind a proxy, so the prefixed path does not exist there.
    with pytest.raises(OctoPrintNotFound):
        prefixed.version()
    assert OctoPrintClient(server.url + "/", server.api_key).version()["server"] == OCTOPRINT_VERSION


def test_upload_honours_select_and_print_and_cancel_works(
    server: VirtualOctoPrint, client: OctoPrintClient
) -> None:
    answer = client.upload("client-test.gcode", demo_gcode(30).encode(), select=True, print_=True)
    assert answer["done"] is True
    assert answer["effectiveSelect"] is True
    assert answer["effectivePrint"] is True
    server.wait_for("printing")
    assert client.job()["job"]["file"]["name"] == "client-test.gcode"
    with pytest.raises(OctoPrintConflict):
        client.start()  # already printing
    client.cancel()
    server.wait_for("ready")


def test_invalid_construction_is_refused() -> None:
    with pytest.raises(ValueError, match="http"):
        OctoPrintClient("ftp://printer", "KEY")
    with pytest.raises(ValueError, match="key"):
        OctoPrintClient("http://printer", "")


def test_an_application_key_works_as_documented(server: VirtualOctoPrint) -> None:
    """hardware_docs/octoprint.md: generate an app key for "fablab-bridge" and use it."""
    answer = server.request(
        "POST", "/api/plugin/appkeys", json={"command": "generate", "app": "fablab-bridge"}
    )
    app_key = answer.json()["api_key"]
    assert app_key and app_key != server.api_key
    client = OctoPrintClient(server.url, app_key)
    assert client.version()["server"] == OCTOPRINT_VERSION
    assert flags_of(client.printer())["operational"]
