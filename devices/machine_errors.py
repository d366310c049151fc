"""What a machine's error says to whom.

A bridge reports a fault as ``{"code", "message"}`` (the contract's
``status.error``). The message is written for whoever runs the bridge and
often names internal addresses: ``OctoPrint at http://10.0.0.5:5000 is
unreachable``, ``Connection refused ('192.168.1.20', 80)``, ``write to
/dev/ttyUSB0 failed``. Lab managers see it as it came; everyone else sees
only a *kind* of error from a fixed list (:data:`EXPLANATIONS`) and its
translated explanation, never the bridge's text nor its code (an adapter
may put anything in a code).
"""

from __future__ import annotations

import re
from typing import Any

from django.utils.translation import gettext_lazy as _

#: The kinds of error a maker may be told about, with what they read for each. ``error`` is the fallback.
EXPLANATIONS = {
    "offline": _("The machine is not connected to the lab's bridge."),
    "setup_failed": _("The lab's bridge could not connect to the machine."),
    "unreachable": _("The machine's controller does not answer."),
    "auth_failed": _("The machine's controller refused the lab's bridge."),
    "controller_error": _("The machine's controller answered with an error."),
    "printer_error": _("The printer reports an error."),
    "printer_disconnected": _("The printer is not connected to its controller."),
    "alarm": _("The machine stopped on an alarm; a lab manager must check it."),
    "error": _("The machine reports an error."),
}

# The codes the project's adapters send (firmware_bridge/adapters, bridge.py), and the contract's examples.
_KIND_OF_CODE = {
    "offline": "offline",
    "setup_failed": "setup_failed",
    "unreachable": "unreachable",
    "auth_failed": "auth_failed",
    "octoprint_error": "controller_error",
    "printer_error": "printer_error",
    "printer_disconnected": "printer_disconnected",
    "alarm": "alarm",
}
_ALARM = re.compile(r"alarm[:_]?\d{0,3}")
_HTTP = re.compile(r"http_\d{3}")


def kind_of(code: Any) -> str:
    """The key of :data:`EXPLANATIONS` for an error ``code`` as a bridge sent it (``error`` when unknown)."""
    if not isinstance(code, str):
        return "error"
    code = code.strip().lower()
    if code in _KIND_OF_CODE:
        return _KIND_OF_CODE[code]
    if _ALARM.fullmatch(code):
        return "alarm"
    if _HTTP.fullmatch(code):
        return "controller_error"
    return "error"


def for_makers(error: dict[str, Any]) -> dict[str, Any]:
    """``error`` (a frame's ``{"code", "message"}``) as someone who does not manage the lab may see it.

    The code becomes a key of :data:`EXPLANATIONS` and the message is
    dropped; the page shows the key's translated explanation.
    """
    return {"code": kind_of(error.get("code")), "message": None}


def explanation(code: Any) -> str:
    """The translated explanation of an error ``code`` (a kind, or a code as a bridge sent it)."""
    key = code if isinstance(code, str) and code in EXPLANATIONS else kind_of(code)
    return str(EXPLANATIONS[key])


def client_strings() -> dict[str, str]:
    """Every explanation, translated, keyed by kind: for the board's script."""
    return {key: str(text) for key, text in EXPLANATIONS.items()}
