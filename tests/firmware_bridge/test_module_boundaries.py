"""Where the bridge's code lives: each device's driver with its adapter, simulators sharing only facts.

A simulator that imported the adapter's parser could hide the same parsing bug on both sides of a
test, so the simulators may import only the firmware's facts from the adapters.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

import firmware_bridge
from firmware_bridge.adapters import ADAPTERS, IMPORT_ERRORS
from firmware_bridge.adapters.grbl.adapter import GrblAdapter
from firmware_bridge.adapters.octoprint.adapter import OctoPrintAdapter

PACKAGE = Path(firmware_bridge.__file__).parent


def bridge_imports(path: Path) -> set[str]:
    """Every ``firmware_bridge…`` module that the file at ``path`` imports."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.level:
                raise AssertionError(f"{path}: relative import of {node.module}")
            found.add(node.module)
            # ``from firmware_bridge.adapters.grbl import facts`` imports the module ``…grbl.facts``.
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.startswith("firmware_bridge")}


@pytest.mark.parametrize(
    ("simulator", "allowed"),
    [
        ("simulators/grbl.py", {"firmware_bridge.adapters.grbl.facts"}),
        ("simulators/plug.py", {"firmware_bridge.adapters.plug_topics"}),
    ],
)
def test_a_simulator_imports_only_firmware_facts_from_the_bridge(simulator: str, allowed: set[str]) -> None:
    imported = bridge_imports(PACKAGE / simulator)
    # The names a module imports from a facts module (``…facts.RX_BUFFER_SIZE``) are facts too.
    outside = {name for name in imported if not any(name == a or name.startswith(f"{a}.") for a in allowed)}
    # The parent packages named on the way (``from firmware_bridge.adapters.grbl import facts``).
    outside -= {"firmware_bridge.adapters.grbl"}
    assert imported, f"{simulator} shares no facts with its adapter any more: update this test"
    assert outside == set()


@pytest.mark.parametrize("facts_module", ["adapters/grbl/facts.py", "adapters/plug_topics.py"])
def test_firmware_facts_import_nothing_from_the_bridge(facts_module: str) -> None:
    assert bridge_imports(PACKAGE / facts_module) == set()


def test_every_adapter_is_registered_by_name_from_its_new_home() -> None:
    assert IMPORT_ERRORS == {}
    assert {"grbl", "octoprint", "tasmota", "shelly", "counter"} <= set(ADAPTERS)
    assert ADAPTERS["grbl"] is GrblAdapter
    assert ADAPTERS["octoprint"] is OctoPrintAdapter


@pytest.mark.parametrize(
    "old_module",
    [
        "firmware_bridge.grbl_protocol",
        "firmware_bridge.passthrough",
        "firmware_bridge.octoprint_client",
    ],
)
def test_the_old_top_level_driver_modules_are_gone(old_module: str) -> None:
    assert importlib.util.find_spec(old_module) is None
