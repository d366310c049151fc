"""The machines' server side: the MQTT hub, live status, alerts and usage sessions (see devices/README.md)."""
