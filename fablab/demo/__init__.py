"""The demo network that ``make run`` loads (``manage.py seed_demo``): labs, machines, members,
bookings, and the bridges, links and plugs of the demo bridge configurations.

It sits apart from the apps it fills so that none of them imports another for its sake: this
app imports ``labs``, ``members``, ``booking`` and ``devices`` (and reads the bridge's demo
TOML files with ``firmware_bridge.config``); nothing imports it but ``scripts/run_demo.py``.
"""
