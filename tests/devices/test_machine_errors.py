"""What a machine's error says to someone who does not manage the lab: a kind from a fixed list, never the text."""

from __future__ import annotations

import pytest

from devices import board, machine_errors

MAKER = board.Viewer(user_id=7, manager=False)
MANAGER = board.Viewer(user_id=1, manager=True)


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        ("unreachable", "unreachable"),
        ("auth_failed", "auth_failed"),
        ("setup_failed", "setup_failed"),
        ("octoprint_error", "controller_error"),
        ("http_403", "controller_error"),
        ("printer_error", "printer_error"),
        ("printer_disconnected", "printer_disconnected"),
        ("offline", "offline"),
        ("ALARM", "alarm"),
        ("ALARM:9", "alarm"),
        ("alarm_1", "alarm"),
    ],
)
def test_the_adapters_codes_have_their_own_explanation(code, kind):
    assert machine_errors.kind_of(code) == kind
    assert machine_errors.explanation(code) == str(machine_errors.EXPLANATIONS[kind])


@pytest.mark.parametrize("code", ["10.0.0.5", "octopi.local:80", "/dev/ttyUSB0", "", None, 42, "ALARM:1;rm"])
def test_an_unknown_code_is_a_plain_error_and_is_not_repeated(code):
    assert machine_errors.kind_of(code) == "error"
    assert machine_errors.for_makers({"code": code, "message": "x"}) == {"code": "error", "message": None}


def test_for_viewer_keeps_the_message_for_managers_only():
    frame = {
        "type": "machine",
        "machine": "p",
        "job": None,
        "error": {"code": "setup_failed", "message": "ConnectionRefusedError: ('192.168.1.20', 80)"},
    }
    assert board.for_viewer(frame, MANAGER, mine=False) is frame
    for mine in (True, False):
        seen = board.for_viewer(frame, MAKER, mine=mine)
        assert seen["error"] == {"code": "setup_failed", "message": None}
        assert "192.168" not in repr(seen)
    assert frame["error"]["message"].endswith("80)")  # the caller's frame is not changed


def test_every_kind_has_a_client_string():
    strings = machine_errors.client_strings()
    assert set(strings) == set(machine_errors.EXPLANATIONS)
    assert all(isinstance(text, str) and text for text in strings.values())
