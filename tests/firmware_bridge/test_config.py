"""bridge.toml: every wrong key or value is named on its own line with its path."""

from __future__ import annotations

from pathlib import Path

import pytest

from firmware_bridge.config import ConfigError, check, load, parse_mqtt_url

GOOD = """
[bridge]
id = "bxl-centre-bridge"
spool = "var/spool.sqlite3"
spool_max_messages = 5000

[mqtt]
url = "mqtt://bridge:s%40cret@broker.lan:1884"

[[machines]]
lab = "bxl-centre"
machine = "m-1"
adapter = "counter"
interlock = true
[machines.options]
interval_s = 0.5
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bridge.toml"
    path.write_text(text)
    return path


def test_good_config(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, GOOD))
    assert cfg.bridge.id == "bxl-centre-bridge"
    assert cfg.bridge.spool == tmp_path / "var/spool.sqlite3"  # relative to the file
    assert cfg.bridge.spool_max_messages == 5000
    assert (cfg.mqtt.host, cfg.mqtt.port, cfg.mqtt.tls) == ("broker.lan", 1884, False)
    assert (cfg.mqtt.username, cfg.mqtt.password) == ("bridge", "s@cret")
    assert "s@cret" not in cfg.mqtt.redacted_url() and "s@cret" not in repr(cfg.mqtt)
    (m,) = cfg.machines
    assert (m.lab, m.machine, m.adapter, m.interlock, dict(m.options)) == (
        "bxl-centre",
        "m-1",
        "counter",
        True,
        {"interval_s": 0.5},
    )
    assert cfg.machine("m-1") is m and cfg.machine("bxl-centre/m-1") is m
    assert check(write(tmp_path, GOOD)) == []


def test_interlock_defaults_to_false(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, GOOD.replace("interlock = true\n", "")))
    assert cfg.machines[0].interlock is False


def test_every_problem_on_its_own_line(tmp_path: Path) -> None:
    text = """
[bridge]
id = "Bad Id"
spool_max_messages = "many"
colour = "blue"

[mqtt]
url = "http://broker"

[[machines]]
lab = "bxl-centre"
machine = "m-1"
adapter = "counter"
[machines.options]
interval_s = "fast"
speed = 3

[[machines]]
lab = "bxl-centre"
machine = "m-1"
adapter = "teleporter"
interlock = "yes"

[[machines]]
machine = "x"
adapter = "counter"
"""
    problems = check(write(tmp_path, text))
    expected = [
        "bridge.id: must match",
        "bridge.spool_max_messages: must be an integer",
        "bridge.colour: unknown key",
        "mqtt.url: must start with mqtt:// or mqtts://",
        "machines[0].options.interval_s: must be a number",
        "machines[0].options.speed: unknown option",
        "machines[1].interlock: must be true or false",
        "machines[1].machine: bxl-centre/m-1 is already machines[0]",
        "machines[1].adapter: unknown adapter 'teleporter'",
        "machines[2].lab: missing",
    ]
    for start in expected:
        assert any(line.startswith(start) for line in problems), (start, problems)
    assert len(problems) == len(expected), problems
    assert all("\n" not in line for line in problems)


def test_missing_sections(tmp_path: Path) -> None:
    problems = check(write(tmp_path, ""))
    assert problems == [
        "bridge: missing section",
        "mqtt: missing section",
        "machines: missing: add at least one [[machines]] table",
    ]


def test_toml_syntax_error_is_one_line(tmp_path: Path) -> None:
    (line,) = check(write(tmp_path, "[bridge\nid = 1"))
    assert "TOML syntax error" in line


def test_unreadable_file(tmp_path: Path) -> None:
    (line,) = check(tmp_path / "absent.toml")
    assert "cannot read" in line


def test_ca_file_must_exist_and_needs_tls(tmp_path: Path) -> None:
    text = GOOD.replace(
        'url = "mqtt://bridge:s%40cret@broker.lan:1884"', 'url = "mqtts://broker.lan"\nca_file = "nope.pem"'
    )
    assert check(write(tmp_path, text)) == [f"mqtt.ca_file: no such file: {tmp_path / 'nope.pem'}"]
    (tmp_path / "ca.pem").write_text("x")
    cfg = load(write(tmp_path, text.replace("nope.pem", "ca.pem")))
    assert cfg.mqtt.tls and cfg.mqtt.port == 8883 and cfg.mqtt.ca_file == tmp_path / "ca.pem"
    plain = GOOD.replace(
        'url = "mqtt://bridge:s%40cret@broker.lan:1884"', 'url = "mqtt://broker.lan"\nca_file = "ca.pem"'
    )
    assert check(write(tmp_path, plain)) == ["mqtt.ca_file: is only used with an mqtts:// url"]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://h", ("h", 1883, False, None, None)),
        ("mqtts://u@h:9", ("h", 9, True, "u", None)),
        ("mqtt://u:p%3Aq@h:1", ("h", 1, False, "u", "p:q")),
    ],
)
def test_parse_mqtt_url(url: str, expected: tuple) -> None:
    assert parse_mqtt_url(url) == expected


@pytest.mark.parametrize("url", ["tcp://h", "mqtt://", "mqtt://h:99999", "mqtt://h/path"])
def test_parse_mqtt_url_rejects(url: str) -> None:
    with pytest.raises(ValueError):
        parse_mqtt_url(url)


def test_mqtt_url_override(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, GOOD), mqtt_url="mqtt://127.0.0.1:1999")
    assert (cfg.mqtt.host, cfg.mqtt.port, cfg.mqtt.username) == ("127.0.0.1", 1999, None)


def test_config_error_lists_problems(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        load(write(tmp_path, GOOD.replace('"counter"', '"nothing"')))
    assert exc.value.problems == [
        "machines[0].adapter: unknown adapter 'nothing' (known: " + exc.value.problems[0].split("(known: ")[1]
    ]


@pytest.mark.parametrize("demo", sorted((Path(__file__).parents[2] / "firmware_bridge/demo").glob("*.toml")))
def test_demo_configs_are_valid(demo: Path) -> None:
    assert check(demo) == []
