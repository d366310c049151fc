"""Settings for the FabLab platform, read from the environment.

``DEBUG`` is off unless set: production is the default, and ``make run`` and
``make test`` set ``DEBUG=true`` themselves. With ``DEBUG`` on, every variable
has a default that works on one machine; with it off, ``SECRET_KEY`` is
required and cookies, HSTS and HTTPS follow docs/deploy.md.
A wrong value stops the process at start with one line that names it.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import sys
from pathlib import Path
from urllib.parse import urlsplit

from django.utils.translation import gettext_lazy as _

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("FABLAB_VAR_DIR", BASE_DIR / "var"))


class ConfigurationError(SystemExit):
    """A setting is wrong; the message names it."""


def _fail(name: str, problem: str) -> None:
    raise ConfigurationError(f"configuration error: {name} {problem}")


def env(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    _fail(name, f"must be true or false, not {raw!r}")
    return default


def env_int(name: str, default: int, minimum: int = 0) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        _fail(name, f"must be a whole number of at least {minimum}, not {raw!r}")
    return value


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in env(name, default).split(",") if item.strip()]


def env_url(name: str, default: str, schemes: tuple[str, ...]) -> str:
    value = env(name, default)
    parts = urlsplit(value)
    if parts.scheme not in schemes:
        _fail(name, f"must start with {' or '.join(s + '://' for s in schemes)}, not {value!r}")
    return value


# Off unless set: a forgotten variable must not publish tracebacks and settings.
DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env("SECRET_KEY")
if not DEBUG and len(SECRET_KEY) < 50:
    # Django's own deploy check wants 50 characters; a short key is a guessable one.
    _fail(
        "SECRET_KEY",
        "must be set to at least 50 random characters when DEBUG is off"
        + ("" if not SECRET_KEY else f" (it has {len(SECRET_KEY)})"),
    )
if not SECRET_KEY:
    # A per-checkout key for development, kept out of the repository.
    key_file = VAR_DIR / "secret_key"
    if not key_file.exists():
        import secrets

        VAR_DIR.mkdir(parents=True, exist_ok=True)
        key_file.write_text(secrets.token_urlsafe(50))
    SECRET_KEY = key_file.read_text().strip()


def local_secret(name: str) -> str:
    """A random secret kept under var/ for the services `make run` starts on this machine."""
    import secrets

    path = VAR_DIR / "secrets" / name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(24))
        path.chmod(0o600)
    return path.read_text().strip()


ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")
for _origin in CSRF_TRUSTED_ORIGINS:
    if urlsplit(_origin).scheme not in ("http", "https"):
        _fail(
            "CSRF_TRUSTED_ORIGINS", f"must list origins such as https://fablab.example.org, not {_origin!r}"
        )
# The address members reach the site at, for links in emails and calendar feeds. With DEBUG off
# there is no default: a forgotten variable would send every member links to 127.0.0.1.
SITE_URL = env("SITE_URL", "http://127.0.0.1:8000" if DEBUG else "")
if not SITE_URL:
    _fail("SITE_URL", "must be set when DEBUG is off (e.g. https://fablab.example.org)")
if urlsplit(SITE_URL).scheme not in ("http", "https") or not urlsplit(SITE_URL).netloc:
    _fail("SITE_URL", f"must be an address such as https://fablab.example.org, not {SITE_URL!r}")

# HTTPS. With DEBUG off the cookies are Secure unless a lab serving plain HTTP on its
# own network says otherwise (SESSION_COOKIE_SECURE=false, CSRF_COOKIE_SECURE=false,
# SECURE_SSL_REDIRECT=false). HSTS is never on by default: once a browser has seen
# it, the site cannot go back to HTTP for SECURE_HSTS_SECONDS.
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG)
SESSION_COOKIE_HTTPONLY = True
# No script reads the CSRF cookie: board.js, htmx forms and Swagger UI take the
# token from the page (csrfmiddlewaretoken / {% csrf_token %}).
CSRF_COOKIE_HTTPONLY = True
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"


def _proxy_ssl_header(raw: str) -> tuple[str, str] | None:
    # Only behind a proxy that always sets (overwrites) this header; otherwise a
    # client could send it and pass for HTTPS.
    if not raw:
        return None
    if not re.fullmatch(r"HTTP_[A-Z0-9_]+", raw):
        _fail(
            "SECURE_PROXY_SSL_HEADER",
            f"must name a request header as Django sees it, e.g. HTTP_X_FORWARDED_PROTO, not {raw!r}",
        )
    return (raw, "https")


SECURE_PROXY_SSL_HEADER = _proxy_ssl_header(env("SECURE_PROXY_SSL_HEADER").strip())

# Error reports (the debug page, error mails) hide every *_URL and every password in a URL.
DEFAULT_EXCEPTION_REPORTER_FILTER = "fablab.error_reporting.CredentialMaskingFilter"
DEFAULT_EXCEPTION_REPORTER = "fablab.error_reporting.CredentialMaskingReporter"

INSTALLED_APPS = [
    # Before the admin: it adds the nl/fr/en columns of translated names (each app's translation.py).
    "modeltranslation",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "knox",
    "allauth",
    "allauth.account",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "fablab.labs",
    "fablab.members",
    "fablab.booking",
    "fablab.reports",
    "fablab.trainings",
    "devices",
    "fablab.demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "fablab.members.middleware.MemberLanguageMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "fablab.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "fablab" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]
WSGI_APPLICATION = "fablab.wsgi.application"
ASGI_APPLICATION = "fablab.asgi.application"


def _database(url: str) -> dict:
    import dj_database_url

    try:
        config = dj_database_url.parse(url, conn_max_age=0)
    except Exception as exc:  # dj_database_url raises several types
        _fail("DATABASE_URL", f"is not a database URL ({exc})")
    if config["ENGINE"] == "django.db.backends.sqlite3":
        # Booking integrity on SQLite: every transaction takes the write lock
        # at BEGIN, so "check for overlap, then insert" is serialized; WAL lets
        # readers carry on meanwhile, and the busy timeout makes writers queue
        # instead of failing with "database is locked".
        config["OPTIONS"] = {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;",
        }
        if config["NAME"] and config["NAME"] != ":memory:":
            Path(config["NAME"]).parent.mkdir(parents=True, exist_ok=True)
        # A file, not memory, so that a browser test's server thread sees the same data.
        # One per process, so that parallel test runs do not share it.
        config["TEST"] = {"NAME": str(VAR_DIR / f"test-{os.getpid()}.sqlite3")}
    elif config["ENGINE"] == "django.db.backends.postgresql":
        config.setdefault("OPTIONS", {})["connect_timeout"] = 5
    else:
        _fail("DATABASE_URL", "must be a sqlite:// or postgres:// URL")
    return config


DATABASES = {"default": _database(env("DATABASE_URL", f"sqlite:///{VAR_DIR / 'fablab.sqlite3'}"))}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Login by username or email address (allauth's backend accepts either in "username").
AUTHENTICATION_BACKENDS = ["allauth.account.auth_backends.AuthenticationBackend"]
LOGIN_URL = "members:login"
LOGIN_REDIRECT_URL = "labs:list"
LOGOUT_REDIRECT_URL = "labs:list"

LANGUAGE_CODE = "en"
LANGUAGES = [("en", _("English")), ("nl", _("Dutch")), ("fr", _("French"))]
# Translated data (django-modeltranslation): names of machine types, trainings, initiatives and workshops
# have a column per language; an empty one falls back to English, then to any other.
MODELTRANSLATION_DEFAULT_LANGUAGE = "en"
MODELTRANSLATION_FALLBACK_LANGUAGES = {"default": ("en", "nl", "fr")}
# A name given without a language (a form, the API, a test) fills every language until translated.
MODELTRANSLATION_AUTO_POPULATE = True
LOCALE_PATHS = [BASE_DIR / "locale"]
FORMAT_MODULE_PATH = ["fablab.formats"]
USE_I18N = True
USE_TZ = True
TIME_ZONE = "Europe/Brussels"

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise warns about a missing one
STATICFILES_DIRS = [BASE_DIR / "fablab" / "static"]


def redis_channel_layer(url: str) -> dict:
    # redis-py 8 reads with a 5 s socket timeout by default, and channels_redis
    # waits for messages with a 5 s BZPOPMIN: an idle WebSocket consumer then
    # dies with "Timeout reading from ..." (redis/redis-py#4091). Read longer.
    #
    # capacity: messages that may wait for one web process before channels_redis refuses
    # more ("over capacity"); the board's consumers read at once and repair a loss with a
    # snapshot (devices/live.py), so this only absorbs a process that stalls for seconds.
    # group_expiry: a channel left in a group by a process that died leaves it after a quarter
    # of an hour instead of a day (each group message would try to reach it until then, and
    # be refused as "over capacity" once 1000 wait). Members join again well within it: the
    # boards every 30 s (devices.consumers.REJOIN_EVERY_S), the hub's command wake-ups every
    # 10 minutes (devices.command_publisher).
    return {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            "hosts": [{"address": url, "socket_timeout": 30}],
            "capacity": 1000,
            "group_expiry": 900,
        },
    }


REDIS_URL = env("REDIS_URL")
if REDIS_URL:
    env_url("REDIS_URL", REDIS_URL, ("redis", "rediss", "unix"))
    CHANNEL_LAYERS = {"default": redis_channel_layer(REDIS_URL)}
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# With DEBUG on, the hub's account on the private broker `make run` starts. With it
# off there is no default: the hub and mqtt_sync need MQTT_URL, the web starts without.
MQTT_URL = env("MQTT_URL")
if MQTT_URL:
    env_url("MQTT_URL", MQTT_URL, ("mqtt", "mqtts"))
elif DEBUG:
    MQTT_URL = f"mqtt://fablab-hub:{local_secret('mqtt-hub')}@127.0.0.1:18830"
MQTT_PASSWORD_FILE = Path(env("MQTT_PASSWORD_FILE", str(VAR_DIR / "mosquitto" / "passwords")))
MQTT_ACL_FILE = Path(env("MQTT_ACL_FILE", str(VAR_DIR / "mosquitto" / "acl")))
INFLUX_URL = env_url("INFLUX_URL", "http://127.0.0.1:18086", ("http", "https"))
INFLUX_DATABASE = env("INFLUX_DATABASE", "fablab")
INFLUX_ORG = env("INFLUX_ORG")
INFLUX_BUCKET = env("INFLUX_BUCKET")
INFLUX_TOKEN = env("INFLUX_TOKEN")
# InfluxQL durations (396d, 13w, INF): raw telemetry, and its hourly means (devices/influx_retention.py).
INFLUX_RAW_RETENTION = env("INFLUX_RAW_RETENTION", "396d")
INFLUX_HOURLY_RETENTION = env("INFLUX_HOURLY_RETENTION", "INF")

EMAIL_BACKEND = env("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", "fablab@localhost")
# SMTP (EMAIL_BACKEND=django.core.mail.backends.smtp.EmailBackend). The password is hidden in
# error reports by its name, like every setting whose name holds PASSWORD.
EMAIL_HOST = env("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = env("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
if EMAIL_USE_TLS and EMAIL_USE_SSL:
    _fail("EMAIL_USE_SSL", "cannot be on together with EMAIL_USE_TLS (choose one)")
SERVER_EMAIL = env("SERVER_EMAIL", DEFAULT_FROM_EMAIL)
# Who gets a mail with the (masked) report of every server error: comma-separated addresses.
ADMINS = [("", address) for address in env_list("ADMINS")]

# Accounts (docs/accounts.md): self sign-up with a confirmed email address, reset and change
# of the password through django-allauth; the login page itself stays Django's (members:login).
ACCOUNT_LOGIN_METHODS = {"username", "email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "username*", "password1*", "password2*"]
ACCOUNT_EMAIL_VERIFICATION = "mandatory"
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = True
ACCOUNT_CONFIRM_EMAIL_ON_GET = False
ACCOUNT_ADAPTER = "fablab.members.accounts.AccountAdapter"
ACCOUNT_FORMS = {"signup": "fablab.members.signup.SignupForm"}
ACCOUNT_EMAIL_SUBJECT_PREFIX = "[FabLab] "
ACCOUNT_LOGOUT_REDIRECT_URL = LOGOUT_REDIRECT_URL
# Failed logins are counted by fablab.members.throttle, not by allauth (one counter for every form).
ACCOUNT_RATE_LIMITS = {"login_failed": None}

# Client addresses (login throttling, DRF throttles, allauth's rate limits): REMOTE_ADDR, unless
# this many proxies of ours stand in front; then the address the outermost of them saw, i.e. the
# TRUSTED_PROXY_COUNT-th entry from the right of X-Forwarded-For. Entries further left are whatever
# the client sent and are never used, so a forged header does not reset a throttle.
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0)
ALLAUTH_TRUSTED_PROXY_COUNT = TRUSTED_PROXY_COUNT
# Failed logins allowed per window (seconds), per account and per client address.
LOGIN_THROTTLE_ACCOUNT = (env_int("LOGIN_THROTTLE_ACCOUNT_FAILURES", 10, minimum=1), 15 * 60)
LOGIN_THROTTLE_ADDRESS = (env_int("LOGIN_THROTTLE_ADDRESS_FAILURES", 20, minimum=1), 10 * 60)

# One cache shared by every web process (the login throttle needs that): Redis when there is one.
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "fablab",
        }
    }

# API tokens (django-rest-knox): stored hashed, sent as "Authorization: Token <key>".
REST_KNOX = {
    "TOKEN_TTL": dt.timedelta(days=env_int("API_TOKEN_DAYS", 30, minimum=1)),
    "AUTH_HEADER_PREFIX": "Token",
    "AUTO_REFRESH": False,
}

REST_FRAMEWORK = {
    "NUM_PROXIES": TRUSTED_PROXY_COUNT,
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "knox.auth.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "fablab.booking.api_errors.exception_handler",
    "DEFAULT_PAGINATION_CLASS": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "FabLab platform API",
    "DESCRIPTION": "Labs, machines, availability and bookings.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "fablab.booking.api_schema.document_unsupported_media_type",
    ],
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "filters": {
        "refusals": {"()": "fablab.log_filters.ExpectedRefusalsWithoutTraceback"},
        "require_debug_false": {"()": "django.utils.log.RequireDebugFalse"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
        # Server errors to ADMINS, through the masking reporter (DEFAULT_EXCEPTION_REPORTER).
        "mail_admins": {
            "class": "django.utils.log.AdminEmailHandler",
            "level": "ERROR",
            "filters": ["require_debug_false"],
        },
    },
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", "INFO")},
    "loggers": {
        # Django's default config gives "django" its own console handler (with DEBUG on); the
        # record then reached stderr twice, through it and through root. Root alone writes it.
        "django": {"handlers": [], "level": env("LOG_LEVEL", "INFO"), "propagate": True},
        # An expected 403 is one warning line, not a traceback.
        "django.request": {"handlers": ["mail_admins"], "filters": ["refusals"], "propagate": True},
    },
}

if "pytest" in sys.modules:
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
