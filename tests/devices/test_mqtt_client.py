"""The hub reads ``MQTT_URL`` with the bridge's own parser: one set of rules for a broker URL."""

from __future__ import annotations

import pytest

from devices.mqtt_client import MqttTarget
from firmware_bridge import config, protocol


def test_the_hub_and_the_bridge_read_a_broker_url_alike():
    url = "mqtts://hub%40lab:p%3Ass%2Fw@broker.example.org"
    target = MqttTarget.parse(url)
    assert (target.host, target.port, target.tls, target.username, target.password) == (
        "broker.example.org",
        8883,
        True,
        "hub@lab",
        "p:ss/w",
    )
    assert (
        config.parse_mqtt_url(url)
        == protocol.parse_mqtt_url(url)
        == (
            "broker.example.org",
            8883,
            True,
            "hub@lab",
            "p:ss/w",
        )
    )
    plain = MqttTarget.parse("mqtt://127.0.0.1:18830")
    assert (plain.port, plain.tls, plain.username, plain.password) == (18830, False, None, None)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://broker:1883", "must start with mqtt:// or mqtts://"),
        ("mqtt://", "has no host"),
        ("mqtt://broker:1883/fablab", "must not have a path"),
        ("mqtt://broker:99999", "has an invalid port"),
    ],
)
def test_a_wrong_mqtt_url_is_refused_with_its_name_and_reason(url, why):
    with pytest.raises(ValueError, match=f"^MQTT_URL {why}"):
        MqttTarget.parse(url)


def test_the_hubs_client_sends_small_packets_at_once(broker):
    """TCP_NODELAY on the hub's socket: its PUBACKs and commands are not held back by Nagle's algorithm."""
    import socket
    import threading

    connected = threading.Event()
    client = MqttTarget.parse(broker.url()).client("nodelay-hub", buffered=True)
    client.on_connect = lambda *args: connected.set()
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        assert connected.wait(30)
        assert client.socket().getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        client.disconnect()
        client.loop_stop()
