"""The environment the test suite runs in, set before pytest-django reads the settings.

Loaded as a plugin (``-p tests.environment`` in pyproject.toml) because pytest-django
imports ``fablab.settings`` before any conftest.py. The suite tests the development
settings (``make run``'s): ``DEBUG`` defaults to off, which would require a secret key,
redirect every test request to HTTPS and mark the cookies Secure. The production
settings have their own tests, in subprocesses (tests/test_settings_production.py).
Subprocesses the tests start (the hub, ``manage.py``) inherit this environment.
"""

import os

os.environ["DEBUG"] = "true"
