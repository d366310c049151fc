"""The server side's layout holds: ``devices`` modules import no circle, the bridge is reached only
through its MQTT contract, and the Django apps depend in one direction (``devices`` → ``booking`` →
``labs``/``members``), with the demo seeding in an app of its own.

Read from the source with :mod:`ast` (every import, also those inside functions), so a new import
that breaks the layout fails here, whether or not a test exercises it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from firmware_bridge import protocol

ROOT = Path(__file__).resolve().parents[2]
#: The modules the hub and its appliers are made of: each small enough to read in one sitting.
SPLIT_MODULES = (
    "alerts", "commands", "events", "hub", "hub_messages", "hub_stats", "hub_writer", "machines",
    "mqtt_client", "plug_topics", "readings", "sessions", "status", "command_publisher",
)  # fmt: skip
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports, absolute, as written (``from a import b`` gives ``a`` and ``a.b``)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def sources(*folders: str) -> list[Path]:
    return sorted(
        p for folder in folders for p in (ROOT / folder).rglob("*.py") if "migrations" not in p.parts
    )


def devices_graph() -> dict[str, set[str]]:
    """``devices.x`` -> the ``devices`` modules it imports (the top-level modules of the app)."""
    modules = {module_name(p): p for p in sorted((ROOT / "devices").glob("*.py"))}
    return {
        name: {m for m in imports_of(path) if m in modules and m != name} for name, path in modules.items()
    }


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph`` as a path that ends where it starts, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_find_cycle_finds_a_circle_and_only_a_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_imports_of_resolves_relative_and_function_level_imports():
    pkg = ROOT / "devices"
    found = imports_of(pkg / "models.py")
    assert "devices.mqtt_names" in found and "devices.plug_topics" in found  # relative, module level
    assert "fablab.labs.models" in found
    live = imports_of(pkg / "live.py")
    assert "devices.models" in live  # imported inside a function


def test_no_devices_module_imports_one_that_imports_it_back():
    graph = devices_graph()
    assert set(graph) >= {f"devices.{m}" for m in SPLIT_MODULES}
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


#: What the web process (pages, API, WebSockets) loads from ``devices``.
WEB_MODULES = ("views", "api", "urls", "routing", "consumers", "board", "live", "commands", "charts")


def test_the_web_process_imports_no_mqtt_client():
    """The web process holds no broker credentials: nothing it loads can publish MQTT.

    Followed through every ``devices`` module the web's modules import, directly or not.
    """
    graph = devices_graph()
    reached: set[str] = set()
    todo = [f"devices.{m}" for m in WEB_MODULES if f"devices.{m}" in graph]
    assert "devices.views" in todo and "devices.commands" in todo
    while todo:
        name = todo.pop()
        if name not in reached:
            reached.add(name)
            todo.extend(graph[name])
    publishers = {"devices.mqtt_client", "devices.hub", "devices.command_publisher"}
    assert not reached & publishers, sorted(reached & publishers)
    paths = {module_name(p): p for p in (ROOT / "devices").glob("*.py")}
    wrong = {}
    for name in sorted(reached):
        path = paths[name]
        paho = sorted(m for m in imports_of(path) if m.split(".")[0] == "paho")
        if paho:
            wrong[name] = paho
    assert wrong == {}


def test_only_the_run_hub_command_imports_the_hub():
    importers = [module_name(p) for p in sources("devices", "fablab") if "devices.hub" in imports_of(p)]
    assert importers == ["devices.management.commands.run_hub"]


def test_devices_and_the_web_apps_reach_the_bridge_only_through_its_mqtt_contract():
    """pyserial, octorest and the adapter registry stay out of the web and hub processes."""
    wrong = {}
    for path in sources("devices", "fablab"):
        if (ROOT / "fablab" / "demo") in path.parents:
            continue  # the demo reads the demo bridges' TOML files; no server process imports it
        bridge = {m for m in imports_of(path) if m.split(".")[0] == "firmware_bridge"}
        extra = bridge - {"firmware_bridge", "firmware_bridge.protocol"}
        if extra:
            wrong[module_name(path)] = sorted(extra)
    assert wrong == {}


@pytest.mark.parametrize("app", ["booking", "labs", "members"])
def test_the_booking_labs_and_members_apps_never_import_devices_or_the_demo(app):
    wrong = {
        module_name(p): sorted(m for m in imports_of(p) if m.split(".")[0] == "devices" or "fablab.demo" in m)
        for p in sources(f"fablab/{app}")
    }
    assert {k: v for k, v in wrong.items() if v} == {}


def test_labs_does_not_import_booking_beyond_its_pages():
    """The labs' data, admin and commands stand without booking; only the lab pages (``views.py``)
    show booking's availability, through its selectors."""
    wrong = {}
    for path in sources("fablab/labs"):
        booking = sorted(m for m in imports_of(path) if m.startswith("fablab.booking"))
        if path.name == "views.py":
            booking = [m for m in booking if m not in ("fablab.booking", "fablab.booking.selectors")]
        if booking:
            wrong[module_name(path)] = booking
    assert wrong == {}


@pytest.mark.parametrize("name", SPLIT_MODULES)
def test_each_module_of_the_hub_stays_readable(name):
    lines = (ROOT / "devices" / f"{name}.py").read_text().count("\n")
    assert lines <= MAX_LINES, f"devices/{name}.py has {lines} lines; split it by concern"


def test_the_power_plug_kinds_are_the_contracts():
    from devices.models import PowerPlug

    assert sorted(PowerPlug.Kind.values) == sorted(protocol.PLUG_KINDS)


@pytest.mark.parametrize("kind", protocol.PLUG_KINDS)
def test_the_plug_rules_in_the_contract_are_what_the_plug_adapter_uses(kind):
    """Until the plug adapters read their topics from the contract, both spellings must agree."""
    from firmware_bridge.adapters import load_all

    adapter = load_all()[kind]
    declared = getattr(adapter, "broker_acl", None)
    if declared is None:
        pytest.skip(f"the {kind} adapter no longer declares its own broker rules")
    assert protocol.plug_acl(kind, "plug-1") == declared("plug-1")


def test_the_plug_rules_refuse_an_unknown_kind():
    with pytest.raises(ValueError, match="not a power plug kind"):
        protocol.plug_acl("octoprint", "x")
