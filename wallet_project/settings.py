"""Wallet settings: everything comes from the environment (see .env.example).

PostgreSQL only. Without DATABASE_URL, development (DEBUG=true) uses the embedded
server that `make run` starts under var/postgres (wallet_project/embedded.py), and
production refuses to start; without REDIS_URL Celery uses a filesystem broker
under var/ and the cache is local memory. Tests and production use PostgreSQL and
Redis.
"""

import ipaddress
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import environ
from celery.schedules import crontab
from csp.constants import NONCE, NONE, SELF
from django.core.exceptions import ImproperlyConfigured
from kombu import Queue

from wallet_project import embedded
from wallet_project.logging import logging_config

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()

DEBUG = env.bool("DEBUG", default=False)
# Production has no default secret: starting without SECRET_KEY and without DEBUG fails.
SECRET_KEY = (
    env.str("SECRET_KEY", default="insecure-development-key-never-use-in-production")
    if DEBUG
    else env.str("SECRET_KEY")
)
# Rotation: the new key in SECRET_KEY, the old one first in SECRET_KEY_FALLBACKS;
# sessions, password-reset links and signed values made with the old key stay
# valid until the fallback is removed (README: Rotating keys).
SECRET_KEY_FALLBACKS = env.list("SECRET_KEY_FALLBACKS", default=[])
# JWTs are signed with a key of their own (rotating SECRET_KEY does not log
# everyone out, and a leaked JWT key does not expose sessions); only DEBUG falls
# back to SECRET_KEY. JWT_SIGNING_KEY_FALLBACKS: old keys that still verify
# (accounts.jwt_keys), until the longest refresh token they signed has expired.
JWT_SIGNING_KEY = (
    env.str("JWT_SIGNING_KEY", default=SECRET_KEY)
    if DEBUG
    else env.str("JWT_SIGNING_KEY")
)
JWT_SIGNING_KEY_FALLBACKS = env.list("JWT_SIGNING_KEY_FALLBACKS", default=[])
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    # django.contrib.admin with the back-office site (dashboard) as admin.site.
    "wallet_project.admin_apps.WalletAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    # Operators' second factor: TOTP devices and single-use recovery codes.
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "rest_framework",
    "rest_framework_simplejwt.token_blacklist",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI and ReDoc served from our static files
    "django_filters",
    "django_celery_beat",
    "djmoney",
    "accounts",
    "wallets",
    "transactions",
    "fees",
]

MIDDLEWARE = [
    # Request id + one JSON access line per request (first: it sees everything).
    "wallet_project.middleware.RequestLogMiddleware",
    # Read-your-writes: a user who writes reads from the primary for a while.
    "wallet_project.replica.ReplicaPinMiddleware",
    # /healthz and /readyz, answered before host validation and the HTTPS redirect.
    "wallet_project.health.HealthCheckMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Content-Security-Policy on the admin and the docs pages (not on the JSON API).
    "wallet_project.middleware.CSPMiddleware",
    # Sessions, the session user and messages serve the admin; the project's
    # subclasses skip them on /api/v1/ (bearer tokens, DRF views).
    "wallet_project.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    # Django's own (manage.py check --deploy looks for it by name): on the API it
    # only passes DRF's csrf_exempt views.
    "django.middleware.csrf.CsrfViewMiddleware",
    "wallet_project.middleware.AuthenticationMiddleware",
    # request.user.is_verified() (django-otp), then: no back-office view without it.
    "wallet_project.middleware.OTPMiddleware",
    "wallet_project.middleware.SecondFactorMiddleware",
    "wallet_project.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "wallet_project.urls"
WSGI_APPLICATION = "wallet_project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------
# PostgreSQL only. Without DATABASE_URL, DEBUG=true means the embedded server of
# `make run` (its socket in EMBEDDED_POSTGRES_DIR), so `manage.py` in another
# terminal finds it; production must name its database, never silently get another.
# (A private name: Django's debug page would show a setting named DATABASE_URL,
# password included.)
_database_url = env.str("DATABASE_URL", default="")
if not _database_url:
    if not DEBUG:
        raise ImproperlyConfigured(
            "Set the DATABASE_URL environment variable (postgres://...); only "
            "DEBUG=true defaults to the embedded server of `make run`."
        )
    _database_url = embedded.database_url(
        embedded.resolve_data_dir(env.str("EMBEDDED_POSTGRES_DIR", default=""))
    )
DATABASES = {"default": env.db_url_config(_database_url)}
if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
    raise ImproperlyConfigured(
        "DATABASE_URL must be a PostgreSQL URL (postgres://...)."
    )
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=0)
# A persistent connection is checked before a request reuses it. With the pool
# (DATABASE_POOL) that check is one more round trip on every request (about 5%
# of a cheap request's CPU under load, make bench), so there it is off by default:
# a pooled connection that died while idle (a database restart) fails the one
# request that gets it with 503 + Retry-After and is then dropped by the pool.
DATABASES["default"]["CONN_HEALTH_CHECKS"] = env.bool(
    "DATABASE_HEALTH_CHECKS", default=not env.bool("DATABASE_POOL", default=False)
)
DATABASES["default"].setdefault("OPTIONS", {})
DATABASES["default"]["OPTIONS"]["connect_timeout"] = env.int(
    "DATABASE_CONNECT_TIMEOUT", default=5
)
# Timeouts of every connection, in seconds (0 = none): a statement that runs too
# long, a lock waited for too long, a transaction left idle (holding its row
# locks) too long are cut by PostgreSQL. Sent as libpq startup options, so every
# connection has them from its first statement: pooled ones, the group commit's
# pipeline, the worker's. These defaults serve the Celery worker, beat and
# management commands; gunicorn.conf.py gives the web process short ones, and the
# fee run and reconcile raise the statement and lock timeouts for their session
# (DATABASE_LONG_*, wallet_project.db.long_running_timeouts).
_DATABASE_TIMEOUTS = {
    "statement_timeout": env.float("DATABASE_STATEMENT_TIMEOUT", default=60),
    "lock_timeout": env.float("DATABASE_LOCK_TIMEOUT", default=10),
    "idle_in_transaction_session_timeout": env.float(
        "DATABASE_IDLE_IN_TRANSACTION_TIMEOUT", default=60
    ),
}
DATABASE_LONG_TIMEOUTS = {
    "statement_timeout": env.float("DATABASE_LONG_STATEMENT_TIMEOUT", default=1800),
    "lock_timeout": env.float("DATABASE_LONG_LOCK_TIMEOUT", default=30),
}
# PgBouncer refuses libpq's `options` startup parameter: behind it (DATABASE_POOLER)
# the timeouts are the database role's (ALTER ROLE ... SET statement_timeout ...)
# and PgBouncer's own idle_transaction_timeout (README: Scaling out).
if not env.str("DATABASE_POOLER", default=""):
    DATABASES["default"]["OPTIONS"]["options"] = " ".join(
        filter(
            None,
            [
                DATABASES["default"]["OPTIONS"].get("options", ""),
                *(
                    f"-c {name}={round(seconds * 1000)}"
                    for name, seconds in _DATABASE_TIMEOUTS.items()
                ),
            ],
        )
    )
if env.bool("DATABASE_POOL", default=False):
    DATABASES["default"]["OPTIONS"]["pool"] = {
        "min_size": env.int("DATABASE_POOL_MIN", default=2),
        "max_size": env.int("DATABASE_POOL_MAX", default=20),
        "timeout": env.float("DATABASE_POOL_TIMEOUT", default=10.0),
    }
# Scaling out (wallet_project/db_router.py and replica.py, README "Scaling out"). A pooler in
# transaction mode (DATABASE_POOLER=pgbouncer) hands each transaction whichever
# server connection is free: nothing may outlive a transaction there, so no
# prepared statements (wallet_project/db.py) and no WITH HOLD cursors.
DATABASE_POOLER = env.str("DATABASE_POOLER", default="")
if DATABASE_POOLER not in ("", "pgbouncer"):
    raise ImproperlyConfigured('DATABASE_POOLER must be "" or "pgbouncer".')
if DATABASE_POOLER:
    DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = True
    DATABASES["default"]["OPTIONS"]["prepare_threshold"] = None
# A streaming replica for the reads views opt in to: the primary's settings, the
# replica's address; never migrated (it replays the primary), and in tests the
# test database itself.
_replica_url = env.str("DATABASE_REPLICA_URL", default="")
if _replica_url:
    DATABASES["replica"] = {
        **DATABASES["default"],
        **env.db_url_config(_replica_url),
        "OPTIONS": {**DATABASES["default"]["OPTIONS"]},
        "TEST": {"MIRROR": "default"},
    }
    if "pool" in DATABASES["replica"]["OPTIONS"]:
        # A replica that is down costs the request that finds out at most this
        # long before it reads from the primary instead.
        DATABASES["replica"]["OPTIONS"]["pool"] = {
            **DATABASES["replica"]["OPTIONS"]["pool"],
            "timeout": env.float("REPLICA_POOL_TIMEOUT", default=2.0),
        }
DATABASE_ROUTERS = ["wallet_project.db_router.PrimaryReplicaRouter"]
# Read-your-writes: a user's reads stay on the primary this long after any write
# of theirs. It must cover the largest lag the replica is read at (plus the second
# a lag reading is kept), or a write could be missing from the replica after it.
REPLICA_PIN_SECONDS = env.int("REPLICA_PIN_SECONDS", default=5)
REPLICA_MAX_LAG_SECONDS = env.float("REPLICA_MAX_LAG_SECONDS", default=3.0)
if _replica_url and REPLICA_PIN_SECONDS < REPLICA_MAX_LAG_SECONDS + 1:
    raise ImproperlyConfigured(
        "REPLICA_PIN_SECONDS must be at least REPLICA_MAX_LAG_SECONDS + 1."
    )
# Diagnostics and tests: `X-Database-Served-By: default,replica` on every response,
# the aliases whose connections ran its queries. Off in production.
DATABASE_ROUTING_HEADER = env.bool("DATABASE_ROUTING_HEADER", default=False)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache and Celery ---------------------------------------------------------------
# REDIS_URL names the Celery broker's database N; the cache takes N + 1 unless
# CACHE_URL says otherwise: a cache.clear() (FLUSHDB) must never empty the queues.
REDIS_URL = env.str("REDIS_URL", default="")


def _next_redis_database(url: str) -> str:
    parts = urlsplit(url)
    number = int(parts.path.strip("/") or 0)
    if number >= 15:
        raise ImproperlyConfigured(
            f"REDIS_URL uses database {number}: the cache takes the next one, so "
            "use 0-14 or set CACHE_URL."
        )
    return urlunsplit(parts._replace(path=f"/{number + 1}"))


if REDIS_URL:
    CACHE_URL = env.str("CACHE_URL", default="") or _next_redis_database(REDIS_URL)
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": CACHE_URL,
            "KEY_PREFIX": env.str("CACHE_KEY_PREFIX", default="wallet"),
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
        }
    }
    CELERY_BROKER_URL = REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # A message a worker took and never acknowledged (acks_late; the worker
        # killed, its host lost) goes back to its queue after this long, and the
        # task runs again (every task is safe to run twice). Keep it above the
        # longest countdown (webhook retries: WEBHOOKS_RETRY_MAX_SECONDS): a
        # message waiting longer is handed out twice.
        "visibility_timeout": env.int(
            "CELERY_VISIBILITY_TIMEOUT_SECONDS", default=3600
        ),
        # Look for such messages at every check (every 10 s) rather than every
        # tenth: a fee run cut by a crash resumes one timeout after, not later.
        "unacked_restore_throttle": 1,
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CELERY_BROKER_URL = "filesystem://"
    _broker_dir = VAR_DIR / "celery"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "store_processed": False,
        "control_folder": str(_broker_dir / "control"),
    }
    for _folder in ("queue", "processed", "control"):
        (_broker_dir / _folder).mkdir(parents=True, exist_ok=True)
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# Every task is stopped after its time limit (seconds): soft raises in the task
# (its DB transaction rolls back), hard kills the worker process. The fee run and
# reconcile have their own, longer ones.
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=300)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=360)
FEE_RUN_SOFT_TIME_LIMIT = env.int("FEE_RUN_SOFT_TIME_LIMIT", default=3 * 3600)
FEE_RUN_TIME_LIMIT = env.int("FEE_RUN_TIME_LIMIT", default=3 * 3600 + 300)
# Emails go to a queue of their own (the compose file runs a worker for it), so
# a fee run never delays a sign-up code. A worker started without -Q consumes
# both queues (make run, tests/stack.py).
CELERY_TASK_DEFAULT_QUEUE = "celery"
CELERY_TASK_QUEUES = [Queue("celery"), Queue("email")]
CELERY_TASK_ROUTES = {"accounts.tasks.*": {"queue": "email"}}
CELERY_TIMEZONE = "UTC"
# Periodic tasks declared in code; django-celery-beat copies them into the
# database on start, where operators edit them in the admin.
CELERY_BEAT_SCHEDULE: dict = {}

# --- Auth -----------------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
# Argon2 first: new passwords, and older (PBKDF2) hashes on their next login.
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
    "django.contrib.auth.hashers.ScryptPasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {
        "NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"
    },
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

REST_FRAMEWORK: dict[str, Any] = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # simplejwt's, optionally without a user query per request (below).
        "accounts.authentication.CachedJWTAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # JSON only: a money API takes no forms, and the schema then offers generated
    # clients one content type per body. The profile image upload adds multipart
    # on its own view (accounts.api.views.MeView); anything else is a 415.
    "DEFAULT_PARSER_CLASSES": ["wallet_project.parsers.StrictJSONParser"],
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "wallet_project.errors.exception_handler",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "UNAUTHENTICATED_USER": None,
}
SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(
        minutes=env.int("JWT_ACCESS_MINUTES", default=15)
    ),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=env.int("JWT_REFRESH_DAYS", default=7)),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "UPDATE_LAST_LOGIN": False,
    "ALGORITHM": "HS256",
    "SIGNING_KEY": JWT_SIGNING_KEY,
}
# Seconds each web process keeps an authenticated user's row instead of reading it
# on every request (accounts/authentication.py); 0 = read it every time. A user
# deactivated in the admin is refused on every process at most this much later.
JWT_USER_CACHE_SECONDS = env.int("JWT_USER_CACHE_SECONDS", default=0)
SPECTACULAR_SETTINGS: dict[str, Any] = {
    # The docs pages' JavaScript and CSS from drf-spectacular-sidecar (our own
    # static files), never a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "TITLE": "Wallet API",
    "DESCRIPTION": (
        "Multi-currency e-wallet and double-entry ledger. Authenticate with "
        "`Authorization: Bearer <access>`; money-moving POSTs accept an "
        "`Idempotency-Key` header."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    # Every error code the API answers, as one enum (wallet_project.api).
    "ENUM_NAME_OVERRIDES": {"ErrorCode": "wallet_project.api.ERROR_CODES"},
}

# --- Internationalisation -----------------------------------------------------------
LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("ru", "Русский")]
LOCALE_PATHS = [BASE_DIR / "locale"]
USE_I18N = True
TIME_ZONE = "UTC"
USE_TZ = True

# --- Static and media -----------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(VAR_DIR / "static")))
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_URL = "/media/"
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(VAR_DIR / "media")))
DATA_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024

# --- Email ------------------------------------------------------------------------------
# Production names its mail server: a forgotten EMAIL_URL must not quietly print
# every sign-up and reset code to a log (or hand it to a development catcher).
if not DEBUG and not env.str("EMAIL_URL", default=""):
    raise ImproperlyConfigured(
        "Set the EMAIL_URL environment variable (smtp://user:password@host:587/"
        "?tls=True, or consolemail:// to print emails on purpose); only DEBUG=true "
        "defaults to printing them."
    )
vars().update(env.email_url("EMAIL_URL", default="consolemail://"))
# Seconds an SMTP connection may block (a stuck server would hold a worker
# process until the task's time limit); the task retries.
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=10)
DEFAULT_FROM_EMAIL = env.str(
    "DEFAULT_FROM_EMAIL", default="Wallet <no-reply@wallet.local>"
)
# The operators: the nightly reconcile mails them when the ledger is not clean
# (and Django mails them unhandled errors). Comma-separated addresses.
ADMINS = [(address, address) for address in env.list("ADMINS", default=[])]
SERVER_EMAIL = env.str("SERVER_EMAIL", default=DEFAULT_FROM_EMAIL)
EMAIL_SUBJECT_PREFIX = "[Wallet] "

# --- Money --------------------------------------------------------------------------------
WALLET_CURRENCIES = env.list("WALLET_CURRENCIES", default=["KZT", "USD", "EUR"])
CURRENCIES = WALLET_CURRENCIES  # django-money's list of allowed currencies
CURRENCY_DECIMAL_PLACES = 2
# One operation may move at most this much (in the wallet's currency).
MAX_OPERATION_AMOUNT = Decimal(env.str("MAX_OPERATION_AMOUNT", default="1000000000.00"))
# A user wallet's balance may not grow past this (well inside NUMERIC(20, 2)).
MAX_WALLET_BALANCE = Decimal(env.str("MAX_WALLET_BALANCE", default="1000000000000.00"))
# Group commit (transactions.ledger.wallet_operation): DEPOSIT/WITHDRAW requests
# that arrive while another is being posted share its next DB transaction (one row
# lock and one COMMIT for many operations, each checked and answered on its own).
LEDGER_COALESCE = env.bool("LEDGER_COALESCE", default=True)
# The lean envelope (wallet_project.lean) for the hot endpoints; false sends every
# request through DRF's pipeline (the same data path: for A/B runs of make bench).
LEAN_REQUESTS = env.bool("LEAN_REQUESTS", default=True)
EXCHANGE_RATES_URL = env.str("EXCHANGE_RATES_URL", default="")
RATE_MAX_AGE = timedelta(seconds=env.int("RATE_MAX_AGE_SECONDS", default=24 * 3600))
# Every conversion keeps this many basis points of the converted amount (50 = 0.5%),
# booked to the `fees` system wallet; 0 turns the spread off. With it, no cycle of
# conversions through the provider's rates (whose round trips can exceed 1 by a
# hair) can return more than it started with.
FX_SPREAD_BPS = env.int("FX_SPREAD_BPS", default=50)
if not 0 <= FX_SPREAD_BPS < 10000:
    raise ImproperlyConfigured("FX_SPREAD_BPS must be between 0 and 9999.")
# Rate provider (exchangerate-api v6 "latest": GET {EXCHANGE_RATES_URL}/{BASE}):
# per-request timeout in seconds, attempts per base currency, first retry delay
# (doubled each retry), and how often the beat task refreshes.
EXCHANGE_RATES_TIMEOUT = env.float("EXCHANGE_RATES_TIMEOUT", default=5.0)
EXCHANGE_RATES_ATTEMPTS = env.int("EXCHANGE_RATES_ATTEMPTS", default=3)
EXCHANGE_RATES_BACKOFF = env.float("EXCHANGE_RATES_BACKOFF", default=1.0)
CELERY_BEAT_SCHEDULE["wallets-refresh-exchange-rates"] = {
    "task": "wallets.tasks.exchange_rates_refresh",
    "schedule": timedelta(
        seconds=env.int("EXCHANGE_RATES_REFRESH_SECONDS", default=3600)
    ),
}
FEE_AMOUNT = Decimal(env.str("FEE_AMOUNT", default="200.00"))
FEE_CURRENCY = env.str("FEE_CURRENCY", default="KZT")
FEE_PERIOD = timedelta(days=env.int("FEE_PERIOD_DAYS", default=30))
# --- Fees: the daily charge run (fees.tasks.fees_charge_due) ----------------------------
# Wallets claimed per batch; each wallet is still charged in its own DB transaction.
FEE_BATCH_SIZE = env.int("FEE_BATCH_SIZE", default=500)
CELERY_BEAT_SCHEDULE["fees-charge-due"] = {
    "task": "fees.tasks.fees_charge_due",
    # Daily at FEE_CHARGE_HOUR:FEE_CHARGE_MINUTE UTC; editable in the admin.
    "schedule": crontab(
        hour=env.int("FEE_CHARGE_HOUR", default=0),
        minute=env.int("FEE_CHARGE_MINUTE", default=30),
    ),
}

# --- Reconcile: the nightly check of the ledger (transactions.tasks.ledger_reconcile) --
CELERY_BEAT_SCHEDULE["transactions-reconcile-ledger"] = {
    "task": "transactions.tasks.ledger_reconcile",
    # Daily at RECONCILE_HOUR:RECONCILE_MINUTE UTC, away from the fee run.
    "schedule": crontab(
        hour=env.int("RECONCILE_HOUR", default=3),
        minute=env.int("RECONCILE_MINUTE", default=0),
    ),
}
RECONCILE_SOFT_TIME_LIMIT = env.int("RECONCILE_SOFT_TIME_LIMIT", default=3600)
RECONCILE_TIME_LIMIT = env.int("RECONCILE_TIME_LIMIT", default=3600 + 300)

# --- Top-ups (payment provider) ---------------------------------------------------------
# A pending top-up older than this is expired by the beat task; the provider can no
# longer decide it.
TOPUP_TTL = timedelta(seconds=env.int("TOPUP_TTL_SECONDS", default=24 * 3600))
# The provider's commission on a paid top-up, in percent of the amount (rounded half
# even to the minor unit), unless the provider states one in its decision.
TOPUP_COMMISSION_PERCENT = Decimal(env.str("TOPUP_COMMISSION_PERCENT", default="0"))
if not Decimal(0) <= TOPUP_COMMISSION_PERCENT <= Decimal(100):
    raise ValueError("TOPUP_COMMISSION_PERCENT must be between 0 and 100")
CELERY_BEAT_SCHEDULE["transactions-expire-topups"] = {
    "task": "transactions.tasks.topups_expire",
    "schedule": timedelta(seconds=env.int("TOPUP_EXPIRE_EVERY_SECONDS", default=300)),
}

# --- Payouts and holds ------------------------------------------------------------------
# A pending payout older than this expires (its hold is released); the provider can no
# longer decide it. Holds expire at their own `expires_at`, checked every minute.
PAYOUT_TTL = timedelta(seconds=env.int("PAYOUT_TTL_SECONDS", default=24 * 3600))
CELERY_BEAT_SCHEDULE["transactions-expire-holds"] = {
    "task": "transactions.tasks.expire_holds",
    "schedule": 60.0,
}

# --- Statements (transactions.statements) -----------------------------------------------
# A JSON or PDF statement is built whole: a period with more entries than these is a 400
# `statement_too_large` pointing to CSV, which streams any period in flat memory.
STATEMENT_JSON_MAX_ENTRIES = env.int("STATEMENT_JSON_MAX_ENTRIES", default=1000)
STATEMENT_PDF_MAX_ENTRIES = env.int("STATEMENT_PDF_MAX_ENTRIES", default=5000)
# The PDF's TrueType fonts (Cyrillic included): DejaVuSans.ttf and DejaVuSans-Bold.ttf,
# from Debian's fonts-dejavu-core.
STATEMENT_PDF_FONT_DIR = env.str(
    "STATEMENT_PDF_FONT_DIR", default="/usr/share/fonts/truetype/dejavu"
)

# --- Events and webhooks (transactions.webhooks) -----------------------------------------
# Webhook URLs whose host resolves to a private, loopback, link-local, reserved or
# metadata address are refused (at creation and at every delivery) unless this is true
# (tests, a receiver on the same private network).
WEBHOOKS_ALLOW_PRIVATE_NETWORKS = env.bool(
    "WEBHOOKS_ALLOW_PRIVATE_NETWORKS", default=False
)
WEBHOOKS_MAX_ENDPOINTS = env.int("WEBHOOKS_MAX_ENDPOINTS", default=5)
# A delivery answered 2xx within this many seconds (connect, then each read) is
# delivered; anything else is retried.
WEBHOOKS_TIMEOUT_SECONDS = env.float("WEBHOOKS_TIMEOUT_SECONDS", default=10.0)
# A claimed delivery is not sent by anyone else for timeout + this margin (a worker
# killed mid-send: the sweep sends it again after that).
WEBHOOKS_LEASE_MARGIN = timedelta(
    seconds=env.int("WEBHOOKS_LEASE_MARGIN_SECONDS", default=30)
)
# Retries: the first after WEBHOOKS_RETRY_FIRST_SECONDS, doubling, at most
# WEBHOOKS_RETRY_MAX_SECONDS apart, for WEBHOOKS_RETRY_FOR_SECONDS from the delivery's
# creation; then it is failed.
WEBHOOKS_RETRY_FIRST = timedelta(
    seconds=env.int("WEBHOOKS_RETRY_FIRST_SECONDS", default=30)
)
WEBHOOKS_RETRY_MAX = timedelta(
    seconds=env.int("WEBHOOKS_RETRY_MAX_SECONDS", default=3600)
)
WEBHOOKS_RETRY_FOR = timedelta(
    seconds=env.int("WEBHOOKS_RETRY_FOR_SECONDS", default=3 * 24 * 3600)
)
# An endpoint whose every delivery has failed for this long is disabled, its owner
# emailed.
WEBHOOKS_DISABLE_AFTER = timedelta(
    seconds=env.int("WEBHOOKS_DISABLE_AFTER_SECONDS", default=3 * 24 * 3600)
)
# After a rotation the previous secret signs too (a second v1) for this long.
WEBHOOKS_SECRET_OVERLAP = timedelta(
    seconds=env.int("WEBHOOKS_SECRET_OVERLAP_SECONDS", default=24 * 3600)
)
# Events read per dispatcher transaction, and transactions per run.
WEBHOOKS_DISPATCH_BATCH = env.int("WEBHOOKS_DISPATCH_BATCH", default=500)
WEBHOOKS_DISPATCH_MAX_BATCHES = env.int("WEBHOOKS_DISPATCH_MAX_BATCHES", default=20)
# Deliveries to one endpoint sent by one task, in turn, over one kept-alive connection.
WEBHOOKS_SEND_BATCH = env.int("WEBHOOKS_SEND_BATCH", default=50)
# Due deliveries the sweep enqueues per run.
WEBHOOKS_SWEEP_BATCH = env.int("WEBHOOKS_SWEEP_BATCH", default=1000)
SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"].update(
    {
        "EventTypeEnum": "transactions.models.Event.Type",
        "WebhookEndpointStatusEnum": "transactions.models.WebhookEndpoint.Status",
    }
)
CELERY_BEAT_SCHEDULE["transactions-webhooks-dispatch"] = {
    "task": "transactions.tasks.webhooks_dispatch",
    "schedule": timedelta(seconds=env.float("WEBHOOKS_DISPATCH_SECONDS", default=1.0)),
    # A run not started within 10 s is dropped (django-celery-beat's expire_seconds),
    # not queued: with the worker down, beat would otherwise pile up one message a
    # second (the next run reads the whole outbox anyway).
    "options": {"expire_seconds": 10},
}
CELERY_BEAT_SCHEDULE["transactions-webhooks-sweep"] = {
    "task": "transactions.tasks.webhooks_sweep",
    "schedule": timedelta(seconds=env.int("WEBHOOKS_SWEEP_SECONDS", default=60)),
}

# --- Accounts: verification codes, login lockout, throttling ----------------------------
VERIFICATION_CODE_TTL = timedelta(
    seconds=env.int("VERIFICATION_CODE_TTL_SECONDS", default=600)
)
VERIFICATION_CODE_MAX_ATTEMPTS = env.int("VERIFICATION_CODE_MAX_ATTEMPTS", default=5)
VERIFICATION_RESEND_INTERVAL = timedelta(
    seconds=env.int("VERIFICATION_RESEND_SECONDS", default=60)
)
# A code whose email has not gone out this long after it was issued (its broker
# message lost with Redis, its worker killed) is sent again by the sweep, which
# runs every VERIFICATION_EMAIL_SWEEP_SECONDS (accounts.emails).
VERIFICATION_EMAIL_RESEND_AFTER = timedelta(
    seconds=env.int("VERIFICATION_EMAIL_RESEND_AFTER_SECONDS", default=30)
)
CELERY_BEAT_SCHEDULE["accounts-verification-emails-sweep"] = {
    "task": "accounts.tasks.verification_emails_sweep",
    "schedule": timedelta(
        seconds=env.int("VERIFICATION_EMAIL_SWEEP_SECONDS", default=30)
    ),
    # With the worker down, beat would pile up one message a run; the next run
    # reads the whole outbox anyway.
    "options": {"expire_seconds": 10},
}
# After this many failed logins for one account within LOGIN_LOCKOUT_SECONDS, the
# account is locked (429 `account_locked`) for LOGIN_LOCKOUT_SECONDS.
LOGIN_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
LOGIN_LOCKOUT = timedelta(seconds=env.int("LOGIN_LOCKOUT_SECONDS", default=900))
# Phone numbers without a +country prefix are read as numbers of this region.
PHONE_DEFAULT_REGION = env.str("PHONE_DEFAULT_REGION", default="KZ")
PROFILE_IMAGE_MAX_BYTES = env.int("PROFILE_IMAGE_MAX_BYTES", default=2 * 1024 * 1024)
PROFILE_IMAGE_MAX_SIDE = env.int("PROFILE_IMAGE_MAX_SIDE", default=4096)
# Throttle rates ("N/second|minute|hour|day"), each from THROTTLE_<SCOPE>: per client
# IP (`_ip`) and per account, i.e. the email or phone number given (`_account`).
_THROTTLE_RATES = {
    "signup_ip": "20/hour",
    "signup_account": "5/hour",
    "resend_ip": "20/hour",
    "resend_account": "10/hour",
    "token_ip": "60/minute",
    "token_account": "20/minute",
    "password_reset_ip": "20/hour",
    "password_reset_account": "5/hour",
    "verify_ip": "30/minute",
    "password_change_user": "10/hour",
}
REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] = {
    scope: env.str(f"THROTTLE_{scope.upper()}", default=rate)
    for scope, rate in _THROTTLE_RATES.items()
}
# Proxies in front of Django that append to X-Forwarded-For (Nginx: 1). With 0
# the client IP is REMOTE_ADDR, and a forged X-Forwarded-For cannot dodge throttles.
REST_FRAMEWORK["NUM_PROXIES"] = env.int("NUM_PROXIES", default=0)

# --- Security (TLS terminates in front of Nginx) ----------------------------------------
BEHIND_TLS_PROXY = env.bool("BEHIND_TLS_PROXY", default=False)
if BEHIND_TLS_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# django-csp, on the admin and the docs pages (wallet_project.middleware.CSPMiddleware):
# nothing from outside, no inline script without the page's nonce, no framing.
# The docs pages relax style-src and worker-src for Swagger UI and ReDoc (urls.py).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, NONCE],
        "style-src": [SELF, NONCE],
        "img-src": [SELF, "data:"],
        "font-src": [SELF, "data:"],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

# --- The back-office: second factor and sessions ------------------------------------------
# Sessions serve only the admin. One slides ADMIN_SESSION_IDLE_SECONDS past the last
# request (saved on every request; the database refuses an expired one) and its
# cookie ends with the browser.
SESSION_COOKIE_AGE = env.int("ADMIN_SESSION_IDLE_SECONDS", default=1800)
SESSION_SAVE_EVERY_REQUEST = True
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
# Wrong second-factor codes in a row before the operator is locked out, and for how
# long (accounts/second_factor.py). django-otp's own growing delays are off: they
# would refuse a right code typed within seconds of a wrong one.
SECOND_FACTOR_FAILURE_LIMIT = 5
SECOND_FACTOR_LOCKOUT = timedelta(minutes=15)
OTP_TOTP_THROTTLE_FACTOR = 0
OTP_STATIC_THROTTLE_FACTOR = 0
OTP_TOTP_ISSUER = "Wallet back-office"

# --- Logging: JSON lines on stderr with the request id (wallet_project/logging.py) ----
LOGGING = logging_config(
    level=env.str("LOG_LEVEL", default="INFO"),
    json=env.str("LOG_FORMAT", default="text" if DEBUG else "json") == "json",
)
# The worker and beat log through LOGGING too (JSON), not Celery's own format.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# --- Prometheus metrics (wallet_project/metrics.py, README "Metrics") -----------------
# /metrics on the web processes and on the worker's exporter: only from these
# addresses, or with `Authorization: Bearer <METRICS_TOKEN>`. Nginx never routes it.
METRICS_ENABLED = env.bool("METRICS_ENABLED", default=True)
METRICS_ALLOWED_IPS = env.list("METRICS_ALLOWED_IPS", default=["127.0.0.1", "::1"])
for _network in METRICS_ALLOWED_IPS:
    try:
        ipaddress.ip_network(_network.strip(), strict=False)
    except ValueError as _exc:
        raise ImproperlyConfigured(
            f"METRICS_ALLOWED_IPS: {_network!r} is not an address or network."
        ) from _exc
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
# The Celery worker's exporter (0: none); compose binds it on the worker's network.
METRICS_WORKER_HOST = env.str("METRICS_WORKER_HOST", default="127.0.0.1")
METRICS_WORKER_PORT = env.int("METRICS_WORKER_PORT", default=0)

# --- Sentry (optional): errors of web and worker, no personal data -------------------
SENTRY_DSN = env.str("SENTRY_DSN", default="")
if SENTRY_DSN:
    from wallet_project.sentry import sentry_init

    sentry_init(
        dsn=SENTRY_DSN,
        environment=env.str("SENTRY_ENVIRONMENT", default="production"),
        release=env.str("SENTRY_RELEASE", default="") or None,
        traces_sample_rate=env.float("SENTRY_TRACES_SAMPLE_RATE", default=0.0),
    )

# The schema and docs are public pages; the API itself requires a token.
SPECTACULAR_SETTINGS["SERVE_PERMISSIONS"] = ["rest_framework.permissions.AllowAny"]
SPECTACULAR_SETTINGS["SERVE_AUTHENTICATION"] = []
# 401/429/503 and the two shapes of a 400, documented on every operation they apply
# to; X-Request-ID, Retry-After and Idempotency-Replayed on the responses that
# carry them.
SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"] = [
    "drf_spectacular.hooks.postprocess_schema_enums",
    "wallet_project.openapi.document_common_responses",
    "wallet_project.openapi.document_response_headers",
]
