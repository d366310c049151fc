"""Safe defaults: DEBUG off unless set, the production settings of docs/deploy.md, masked error reports.

The settings are read once per process, so every production case runs in a
subprocess with a clean environment: only PATH, a scratch FABLAB_VAR_DIR and
the variables of the case (the suite itself runs with DEBUG=true, see
tests/environment.py).
"""

from __future__ import annotations

import html
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
from django.views.debug import SafeExceptionReporterFilter

from fablab.error_reporting import CredentialMaskingFilter, mask_url_credentials

REPO = Path(__file__).resolve().parent.parent
DEPLOY_ENV = REPO / "docs" / "deploy.env.example"


def deploy_env() -> dict[str, str]:
    """The variables of docs/deploy.env.example, as systemd's EnvironmentFile= reads them."""
    values = {}
    for line in DEPLOY_ENV.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def new_secret_key() -> str:
    return secrets.token_urlsafe(50)


def run(tmp_path: Path, argv: list[str], **variables: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ["PATH"],
        "PYTHONDONTWRITEBYTECODE": "1",
        "DJANGO_SETTINGS_MODULE": "fablab.settings",
        # Required with DEBUG off; the tests about it leave it out explicitly.
        "SITE_URL": "https://fablab.example.org",
        **variables,
        "FABLAB_VAR_DIR": str(tmp_path / "var"),
    }
    return subprocess.run(
        [sys.executable, *argv], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )


SHOW_SETTINGS = """
import json
from django.conf import settings
names = ["DEBUG", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SESSION_COOKIE_HTTPONLY",
         "CSRF_COOKIE_HTTPONLY", "SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS",
         "SECURE_HSTS_INCLUDE_SUBDOMAINS", "SECURE_HSTS_PRELOAD", "SECURE_PROXY_SSL_HEADER",
         "CSRF_TRUSTED_ORIGINS", "MQTT_URL"]
print(json.dumps({name: getattr(settings, name) for name in names}))
"""


def production_settings(tmp_path: Path, **variables: str) -> dict:
    proc = run(tmp_path, ["-c", SHOW_SETTINGS], **variables)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


# -- DEBUG and the secret key


def test_debug_is_off_when_unset(tmp_path):
    assert production_settings(tmp_path, SECRET_KEY=new_secret_key())["DEBUG"] is False


def test_without_debug_and_without_a_secret_key_the_process_stops_with_one_line_naming_it(tmp_path):
    variables = {**deploy_env(), "SECRET_KEY": ""}
    proc = run(tmp_path, ["manage.py", "check"], **variables)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("configuration error: SECRET_KEY must be set")
    assert not (tmp_path / "var" / "secret_key").exists()  # no silent development key


def test_without_debug_and_without_a_site_url_the_process_stops_with_one_line_naming_it(tmp_path):
    proc = run(tmp_path, ["-c", SHOW_SETTINGS], SECRET_KEY=new_secret_key(), SITE_URL="")
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [
        "configuration error: SITE_URL must be set when DEBUG is off (e.g. https://fablab.example.org)"
    ]


def test_without_debug_a_short_secret_key_is_refused(tmp_path):
    proc = run(tmp_path, ["manage.py", "check"], SECRET_KEY="short-and-guessable")
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        "configuration error: SECRET_KEY must be set to at least 50 random characters "
        "when DEBUG is off (it has 19)"
    )


def test_with_debug_on_a_development_secret_key_is_made_under_var(tmp_path):
    assert production_settings(tmp_path, DEBUG="true")["DEBUG"] is True
    assert len((tmp_path / "var" / "secret_key").read_text().strip()) >= 50


# -- the documented production environment


def test_the_documented_production_settings_pass_the_deploy_check(tmp_path):
    variables = {**deploy_env(), "SECRET_KEY": new_secret_key()}
    assert "DEBUG" not in variables
    proc = run(tmp_path, ["manage.py", "check", "--deploy", "--fail-level", "WARNING"], **variables)
    assert proc.returncode == 0, proc.stderr
    assert "System check identified no issues" in proc.stdout


def test_without_debug_the_web_starts_without_mqtt_credentials(tmp_path):
    # The web process needs no broker account; nothing falls back to var/'s development one.
    variables = {**deploy_env(), "SECRET_KEY": new_secret_key(), "MQTT_URL": ""}
    assert production_settings(tmp_path, **variables)["MQTT_URL"] == ""
    assert not (tmp_path / "var" / "secrets").exists()


def test_without_debug_the_hub_without_mqtt_url_stops_with_one_line_naming_it(tmp_path):
    variables = {**deploy_env(), "SECRET_KEY": new_secret_key(), "MQTT_URL": ""}
    proc = run(tmp_path, [str(REPO / "manage.py"), "run_hub"], **variables)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "CommandError: MQTT_URL must be set for the hub (mqtt://user:password@host:port)"
    ]


# -- cookies, HTTPS and HSTS follow the environment


def test_without_debug_cookies_are_secure_and_http_is_redirected_by_default(tmp_path):
    values = production_settings(tmp_path, SECRET_KEY=new_secret_key())
    assert values["SESSION_COOKIE_SECURE"] is True
    assert values["CSRF_COOKIE_SECURE"] is True
    assert values["SESSION_COOKIE_HTTPONLY"] is True
    assert values["CSRF_COOKIE_HTTPONLY"] is True
    assert values["SECURE_SSL_REDIRECT"] is True
    # HSTS is a promise browsers keep: only when the operator sets it.
    assert values["SECURE_HSTS_SECONDS"] == 0
    assert values["SECURE_PROXY_SSL_HEADER"] is None


def test_cookies_hsts_redirect_and_proxy_header_follow_the_environment(tmp_path):
    values = production_settings(
        tmp_path,
        SECRET_KEY=new_secret_key(),
        SESSION_COOKIE_SECURE="false",
        CSRF_COOKIE_SECURE="false",
        SECURE_SSL_REDIRECT="false",
        SECURE_HSTS_SECONDS="3600",
        SECURE_HSTS_INCLUDE_SUBDOMAINS="true",
        SECURE_HSTS_PRELOAD="true",
        SECURE_PROXY_SSL_HEADER="HTTP_X_FORWARDED_PROTO",
        CSRF_TRUSTED_ORIGINS="https://fablab.example.org, https://lab.example.org",
    )
    assert values["SESSION_COOKIE_SECURE"] is False
    assert values["CSRF_COOKIE_SECURE"] is False
    assert values["SECURE_SSL_REDIRECT"] is False
    assert values["SECURE_HSTS_SECONDS"] == 3600
    assert values["SECURE_HSTS_INCLUDE_SUBDOMAINS"] is True
    assert values["SECURE_HSTS_PRELOAD"] is True
    assert values["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert values["CSRF_TRUSTED_ORIGINS"] == ["https://fablab.example.org", "https://lab.example.org"]


def test_with_debug_on_plain_http_works_without_secure_cookies(tmp_path):
    values = production_settings(tmp_path, DEBUG="true")
    assert values["SESSION_COOKIE_SECURE"] is False
    assert values["CSRF_COOKIE_SECURE"] is False
    assert values["SECURE_SSL_REDIRECT"] is False


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SECURE_HSTS_SECONDS", "one year"),
        ("SECURE_HSTS_SECONDS", "-1"),
        ("SECURE_SSL_REDIRECT", "maybe"),
        ("SECURE_PROXY_SSL_HEADER", "X-Forwarded-Proto"),
        ("CSRF_TRUSTED_ORIGINS", "fablab.example.org"),
    ],
)
def test_a_wrong_security_value_stops_the_process_with_one_line_naming_it(tmp_path, name, value):
    proc = run(tmp_path, ["manage.py", "check"], SECRET_KEY=new_secret_key(), **{name: value})
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith(f"configuration error: {name} "), proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


SERVE = """
import json
from django.test import Client
from django.urls import reverse
client = Client()
login = reverse("members:login")
out = {"login": login}
r = client.get(login)
out["http"] = [r.status_code, r.get("Location")]
r = client.get(login, headers={"x-forwarded-proto": "https"})
out["https"] = [r.status_code, r.get("Strict-Transport-Security"), r.get("X-Frame-Options"),
                r.get("X-Content-Type-Options"), r.get("Referrer-Policy")]
cookie = r.cookies.get("csrftoken")
out["csrf_cookie"] = cookie and [bool(cookie["secure"]), bool(cookie["httponly"])]
print(json.dumps(out))
"""


def test_behind_the_documented_proxy_http_is_redirected_and_https_gets_hsts_and_secure_cookies(tmp_path):
    variables = {**deploy_env(), "SECRET_KEY": new_secret_key(), "ALLOWED_HOSTS": "testserver"}
    variables["DATABASE_URL"] = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    proc = run(tmp_path, ["-c", "import django; django.setup()\n" + SERVE], **variables)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["http"] == [301, f"https://testserver{out['login']}"]
    status, hsts, frame, nosniff, referrer = out["https"]
    assert status == 200
    assert hsts == "max-age=31536000; includeSubDomains; preload"
    assert (frame, nosniff, referrer) == ("DENY", "nosniff", "same-origin")
    assert out["csrf_cookie"] == [True, True]


# -- error reports hide credentials

SECRETS = {
    "DATABASE_URL": ("postgres://fablab:db-S3cret-pw@127.0.0.1:1/fablab", "db-S3cret-pw"),
    "REDIS_URL": ("redis://:redis-S3cret-pw@127.0.0.1:1/0", "redis-S3cret-pw"),
    # Percent-encoded in the URL, decoded when the hub connects: both forms are secret.
    "MQTT_URL": ("mqtts://fablab-hub:mqtt-S3cret%26pw@broker.example.org:8883", "mqtt-S3cret&pw"),
    "INFLUX_TOKEN": ("influx-S3cret-token", "influx-S3cret-token"),
}

REPORT = """
import json, os, sys
from urllib.parse import unquote, urlsplit
from django.conf import settings
from django.test import RequestFactory
from django.views.debug import technical_500_response

def connect_to_broker():
    url = settings.MQTT_URL
    password = unquote(urlsplit(url).password)
    raise ConnectionError(f"cannot reach {url} (password {password!r})")

try:
    connect_to_broker()
except ConnectionError:
    exc_info = sys.exc_info()
# Under runserver (WSGI) request.META carries the whole process environment.
environ = {k: v for k, v in os.environ.items()}
factory = RequestFactory()
html = technical_500_response(factory.get("/boom/", **environ), *exc_info).content.decode()
text = technical_500_response(factory.get("/boom/", HTTP_ACCEPT="text/plain", **environ), *exc_info)
print(json.dumps({"html": html, "text": text.content.decode(), "text_type": text["Content-Type"]}))
"""


def test_the_error_report_shows_no_password_token_or_key_in_settings_meta_or_frames(tmp_path):
    secret_key = new_secret_key()
    variables = {name: value for name, (value, _secret) in SECRETS.items()}
    variables.update(DEBUG="true", SECRET_KEY=secret_key, INFLUX_ORG="lab", INFLUX_BUCKET="fablab")
    proc = run(tmp_path, ["-c", "import django; django.setup()\n" + REPORT], **variables)
    assert proc.returncode == 0, proc.stderr
    reports = json.loads(proc.stdout.strip().splitlines()[-1])
    assert reports["text_type"].startswith("text/plain")
    for kind in ("html", "text"):
        report = reports[kind]
        # It is a full report: the exception, the settings and the request's META are there.
        assert "ConnectionError" in report
        assert "cannot reach mqtts://fablab-hub:" in report
        for name in ("MQTT_URL", "DATABASES", "CHANNEL_LAYERS", "INFLUX_TOKEN", "DATABASE_URL"):
            assert name in report, f"{name} missing from the {kind} report"
        for name, (value, secret) in SECRETS.items():
            for form in {secret, value, html.escape(secret), quote(secret)}:
                assert form not in report, f"{name}'s secret shows in the {kind} report"
        assert secret_key not in report


def test_djangos_own_filter_shows_url_passwords_and_ours_does_not(settings):
    settings.MQTT_URL = "mqtt://fablab-hub:mqtt-S3cret@broker:1883"
    settings.CHANNEL_LAYERS = {
        "default": {"CONFIG": {"hosts": [{"address": "redis://:redis-S3cret@127.0.0.1:6379/0"}]}}
    }
    plain = repr(SafeExceptionReporterFilter().get_safe_settings())
    assert "mqtt-S3cret" in plain and "redis-S3cret" in plain  # why the project needs its own
    masked = CredentialMaskingFilter().get_safe_settings()
    assert "mqtt-S3cret" not in repr(masked) and "redis-S3cret" not in repr(masked)
    assert masked["MQTT_URL"] == SafeExceptionReporterFilter.cleansed_substitute
    host = masked["CHANNEL_LAYERS"]["default"]["CONFIG"]["hosts"][0]["address"]
    assert host == f"redis://:{SafeExceptionReporterFilter.cleansed_substitute}@127.0.0.1:6379/0"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mqtts://hub:pw%40x@broker:8883", "mqtts://hub:********************@broker:8883"),
        (
            "redis://:pw@h/0 and postgres://u:p@db/x",
            "redis://:********************@h/0 and postgres://u:********************@db/x",
        ),
        ("http://127.0.0.1:8086/query?db=fablab", "http://127.0.0.1:8086/query?db=fablab"),
        ("mqtt://bridge@broker:1883", "mqtt://bridge@broker:1883"),
    ],
)
def test_url_passwords_are_masked_and_urls_without_one_are_left_alone(text, expected):
    assert mask_url_credentials(text) == expected
