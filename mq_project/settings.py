"""All configuration, read once from the environment with django-environ.

Queue settings (PENDING_TIMEOUT, MQ_*) are plain module attributes read through
``django.conf.settings`` at call time, so ``override_settings`` works in tests.
"""

import os
import secrets
from datetime import timedelta
from importlib.metadata import version
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()


def _local_secret_key() -> str:
    """A key kept in the working directory, so sessions survive restarts and are
    shared by every worker process without any set-up. Only its owner may read it."""
    path = Path("message-queue.secret")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as file:
            file.write(secrets.token_urlsafe(50))
    return path.read_text().strip()


SECRET_KEY = env("SECRET_KEY", default="") or _local_secret_key()
DEBUG = env.bool("DEBUG", default=False)

HOST = env("HOST", default="127.0.0.1")
PORT = env.int("PORT", default=3000)
# The `message-queue` server: processes, and at most this many threads per
# process (started on demand). Each waiting long-poll holds one thread (WSGI), so
# the bound is high; only busy threads compete for the CPU.
MQ_WORKERS = env.int("MQ_WORKERS", default=2)
MQ_THREADS = env.int("MQ_THREADS", default=1024)
# Open connections per process (granian's "backpressure"; its default, 512 with two
# processes, made the 513th connection wait: parked long-polls count).
MQ_CONNECTIONS = env.int("MQ_CONNECTIONS", default=8192)
# Seconds a client may take to send a request's headers, and that an idle
# keep-alive connection stays open (``message-queue``; granian has no timeout
# for reading a body, see the README's "Slow and idle clients").
MQ_CLIENT_TIMEOUT = env.float("MQ_CLIENT_TIMEOUT", default=5)
# One access line per request in ``message-queue``'s log.
MQ_ACCESS_LOG = env.bool("MQ_ACCESS_LOG", default=True)
# Seconds a request waits for a database connection (connect, or the pool)
# before it answers 503.
MQ_DB_TIMEOUT = env.int("MQ_DB_TIMEOUT", default=3)
# Database connections open at once per process, at most (PostgreSQL's pool,
# MariaDB's connection per request); past them a request waits for one, up to
# MQ_DB_TIMEOUT. SQLite keeps a connection per thread and has no such limit.
MQ_DB_CONNECTIONS = env.int("MQ_DB_CONNECTIONS", default=16)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", HOST])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "messages_app",
]

MIDDLEWARE = [
    "messages_app.api.errors.json_method_not_allowed",
    "django.middleware.security.SecurityMiddleware",
    # Static files (the admin's, /api/docs/ scripts), DEBUG or not, straight
    # from the apps' static directories: no collectstatic step.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into its answer.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "mq_project.urls"
# Every error is JSON, a page's form posted without its CSRF token too.
CSRF_FAILURE_VIEW = "messages_app.api.errors.csrf_failure"
WSGI_APPLICATION = "mq_project.wsgi.application"
APPEND_SLASH = False

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

# Default: an SQLite file in the working directory, nothing to set up.
DATABASES = {
    "default": env.db(
        "DATABASE_URL", default="sqlite:///" + str(Path.cwd() / "message-queue.sqlite3")
    )
}
_db = DATABASES["default"]
if _db["ENGINE"] == "django.db.backends.sqlite3":
    # Writers take turns on a lock of ours instead of polling SQLite's (see
    # mq_project/sqlite_backend).
    _db["ENGINE"] = "mq_project.sqlite_backend"
    _db["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=600)
    # WAL lets readers run beside the single writer; IMMEDIATE makes every
    # transaction take the write lock up front, never upgrading a read lock
    # half way (which fails with "database is locked" instead of waiting).
    # synchronous=NORMAL survives a killed process (the WAL is in the OS page
    # cache); FULL also survives a power loss, at a measured price (README).
    _db.setdefault("OPTIONS", {}).update(
        {
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
            "init_command": (
                "PRAGMA journal_mode=WAL;"
                f"PRAGMA synchronous={env('MQ_SQLITE_SYNCHRONOUS', default='NORMAL')};"
            ),
        }
    )
    # The test database is a file, so that real server processes started by
    # the tests share it with the test process.
    _db["TEST"] = {"NAME": str(Path(_db["NAME"]).with_suffix(".test.sqlite3"))}
elif _db["ENGINE"] == "django.db.backends.postgresql":
    # psycopg's pool keeps connections open across requests; a waiting
    # long-poll gives its connection back, so a few per process are enough.
    # A request waits at most MQ_DB_TIMEOUT for one (then 503). While the
    # database is away the pool's reconnection attempts back off, 1 s then 2 s;
    # after a second of failures it gives up, and the next request starts
    # again: a returning database is used within about a second.
    _db.setdefault("OPTIONS", {}).setdefault("connect_timeout", MQ_DB_TIMEOUT)
    _db["OPTIONS"].setdefault(
        "pool",
        {
            "min_size": min(2, MQ_DB_CONNECTIONS),
            "max_size": MQ_DB_CONNECTIONS,
            "timeout": MQ_DB_TIMEOUT,
            "reconnect_timeout": 1,
        },
    )
    # Parameters go apart from the statement (server-side binding; arrays in
    # binary), and a statement run 5 times on a connection is prepared there:
    # not parsed again (a claim: -24 % CPU in PostgreSQL), but still planned
    # for its parameters each time, as a generic plan made once for every queue
    # may leave the queue's index range for a scan of the primary key. A pooler
    # in transaction mode (PgBouncer) cannot keep a prepared statement on one
    # connection: MQ_PG_PREPARED=false there.
    _db["OPTIONS"].setdefault("server_side_binding", True)
    if env.bool("MQ_PG_PREPARED", default=True):
        _db["OPTIONS"].setdefault("prepare_threshold", 5)
        custom = "-c plan_cache_mode=force_custom_plan"
        _db["OPTIONS"]["options"] = f"{_db['OPTIONS'].get('options', '')} {custom}".strip()
elif _db["ENGINE"] == "django.db.backends.mysql":
    # At most MQ_DB_CONNECTIONS connections at once (mq_project/mysql_backend).
    _db["ENGINE"] = "mq_project.mysql_backend"
    _db.setdefault("OPTIONS", {}).setdefault("charset", "utf8mb4")
    _db["OPTIONS"].setdefault("connect_timeout", MQ_DB_TIMEOUT)
    # A connection per request by default: every server thread keeping its own
    # would pass MariaDB's max_connections (151) with a few hundred long-polls.
    _db["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=0)
    _db["CONN_HEALTH_CHECKS"] = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Admin logins are throttled by django-axes: after MQ_LOGIN_FAILURES wrong
# passwords for one username from one address, that pair is refused (429) until
# MQ_LOGIN_COOLOFF seconds pass without another try; a right password resets the count.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("MQ_LOGIN_FAILURES", default=5)
AXES_COOLOFF_TIME = timedelta(seconds=env.int("MQ_LOGIN_COOLOFF", default=900))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "messages_app.api.errors.login_locked_out"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
WHITENOISE_USE_FINDERS = True

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["messages_app.api.auth.BearerToken"],
    "DEFAULT_PERMISSION_CLASSES": ["messages_app.api.auth.HasQueueToken"],
    "DEFAULT_THROTTLE_CLASSES": [],
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "messages_app.api.parsers.ExactJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "messages_app.api.negotiation.AlwaysJSON",
    "EXCEPTION_HANDLER": "messages_app.api.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "messages_app.api.schema.AutoSchema",
}

# The OpenAPI schema at /api/schema/; Swagger UI and Redoc at /api/docs/ load
# their scripts from drf-spectacular-sidecar's static files, not from a CDN.
SPECTACULAR_SETTINGS = {
    "TITLE": "message-queue",
    "DESCRIPTION": "A FIFO message queue over HTTP. Every error is JSON "
    '`{"error": "<code>", "detail": "<text>"}`.',
    "VERSION": version("message-queue"),
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# The queue.
PENDING_TIMEOUT = env.int("PENDING_TIMEOUT", default=10000)  # lease length, milliseconds
MQ_MAX_ATTEMPTS = env.int("MQ_MAX_ATTEMPTS", default=None)  # None: unlimited
MQ_MAX_PAYLOAD_BYTES = env.int("MQ_MAX_PAYLOAD_BYTES", default=262144)
MQ_API_TOKENS = env.list("MQ_API_TOKENS", default=[])
MQ_DEDUP_WINDOW = env.int("MQ_DEDUP_WINDOW", default=300)  # seconds an idempotency key is kept
# The SQS endpoint (/sqs): the account id in queue URLs and ARNs, the region in
# ARNs, and <key id>:<secret> pairs whose SigV4 signatures it accepts (none: unchecked).
MQ_SQS_ACCOUNT = env("MQ_SQS_ACCOUNT", default="000000000000")
MQ_SQS_REGION = env("MQ_SQS_REGION", default="us-east-1")
MQ_SQS_CREDENTIALS = env.list("MQ_SQS_CREDENTIALS", default=[])
MQ_VACUUM_EVERY = env.int("MQ_VACUUM_EVERY", default=1000)  # PostgreSQL: deletes between vacuums
# Seconds between two flushes of a process's counters to the database (messages_app/counters.py);
# 0: no background flush (the tests flush by hand).
MQ_COUNTERS_FLUSH = env.float("MQ_COUNTERS_FLUSH", default=2.0)
# A whole request body (a batch of messages): larger ones get a 413 before they are read.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int(
    "MQ_MAX_REQUEST_BYTES", default=max(4 * 1024 * 1024, 2 * MQ_MAX_PAYLOAD_BYTES + 65536)
)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"timed": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "timed"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="WARNING")},
    # message-queue's lines at start and at stop.
    "loggers": {"mq_project.cli": {"level": "INFO"}},
}
