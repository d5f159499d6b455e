"""Settings shared by every environment; the environment itself is read in config/env.py."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from config.env import BASE_DIR, VAR_DIR, env

SECRET_KEY: str = env.str("SECRET_KEY", default="")
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS: list[str] = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS: list[str] = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# Proxies whose X-Forwarded-For/-Proto are believed (uvicorn's own variable; config/asgi.py applies it).
FORWARDED_ALLOW_IPS: list[str] = env.list("FORWARDED_ALLOW_IPS", default=["127.0.0.1", "::1"])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "common",
    "teams",
    "webhooks",
    "registry",
    "deployments",
    "serving",
    "monitoring",
]

MIDDLEWARE = [
    "common.middleware.RefuseNulMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "common.middleware.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"
WSGI_APPLICATION = "config.wsgi.application"

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
                "teams.context_processors.team_switcher",
            ],
        },
    },
]

# --- database -----------------------------------------------------------------------------------
# Embedded default: SQLite in WAL mode so the web server, the worker and beat can write side by side.
DATABASE_URL = env.str("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")
DATABASES: dict[str, dict[str, Any]] = {"default": env.db_url_config(DATABASE_URL)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        # IMMEDIATE takes the write lock at BEGIN, so concurrent writers wait instead of failing mid-transaction.
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
else:
    DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
    # A database that hangs (not refusing) must fail a connect in seconds, not when TCP gives up: serving's token
    # grace and 503s (serving/outage.py) depend on hearing about an outage promptly.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("connect_timeout", 5)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- redis: cache, channel layer and broker ----------------------------------------------------
REDIS_URL: str = env.str("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            # A Redis that hangs fails a cache call in seconds (throttling then fails open, /healthz says 503)
            # instead of stalling the request until TCP gives up.
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 5},
        }
    }
    CHANNEL_LAYERS: dict[str, dict[str, Any]] = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [
                    {
                        "address": REDIS_URL,
                        # Every socket's consumer waits in a BZPOPMIN that Redis answers after 5 s when nothing came
                        # (channels_redis' brpop_timeout); redis-py's default read timeout is also 5 s, so an idle
                        # socket's read gave up first and its consumer died. Reads wait three times the block.
                        "socket_timeout": 15,
                        "socket_connect_timeout": 2,
                        # A connection a Redis restart closed is found by the first command to use it: reconnect
                        # and retry it rather than fail (the first websocket connect after a restart was a 500).
                        # Short, as a publisher (a release's live notice) waits through the retries of a Redis away.
                        "retry": Retry(ExponentialBackoff(cap=0.5, base=0.05), 3),
                        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
                        # A connection idle longer than this is PINGed before use instead of failing mid-command.
                        "health_check_interval": 30,
                    }
                ],
            },
        },
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# --- celery --------------------------------------------------------------------------------------
# Embedded default: kombu's filesystem transport, a broker that is a folder under var/ (no server).
CELERY_BROKER_DIR = VAR_DIR / "broker"
CELERY_BROKER_URL: str = env.str("CELERY_BROKER_URL", default=REDIS_URL or "filesystem://")
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, Any] = {}
if CELERY_BROKER_URL.startswith("filesystem://"):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(CELERY_BROKER_DIR / "queue"),
        "data_folder_out": str(CELERY_BROKER_DIR / "queue"),
        "control_folder": str(CELERY_BROKER_DIR / "control"),
        "store_processed": False,
    }
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=15 * 60)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=16 * 60)
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_POOL = "config.celery_pool:TaskPool"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    "worker-heartbeat": {"task": "monitoring.tasks.worker_heartbeat", "schedule": 10.0},
    "artifact-orphans": {"task": "registry.tasks.artifact_orphans_delete_task", "schedule": 3600.0},
    "artifacts-collect": {"task": "registry.tasks.artifacts_collect_task", "schedule": 3600.0},
    "jobs-reap": {"task": "registry.tasks.jobs_reap_task", "schedule": 30.0},
    "metric-minutes-prune": {"task": "monitoring.tasks.metric_minutes_prune_task", "schedule": 3600.0},
    "idempotency-keys-prune": {"task": "common.tasks.idempotency_keys_prune_task", "schedule": 3600.0},
    "webhook-deliveries-sweep": {"task": "webhooks.tasks.webhook_deliveries_sweep_task", "schedule": 30.0},
    "webhook-deliveries-prune": {"task": "webhooks.tasks.webhook_deliveries_prune_task", "schedule": 3600.0},
    "change-requests-expire": {"task": "deployments.tasks.change_requests_expire_task", "schedule": 60.0},
}

# --- auth, sessions, security -------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
# Sent with every Django response (common.middleware): only the site's own scripts, styles, images (and data: icons),
# connections (the live charts' websocket is same-origin) and forms; no plugins, no framing. Empty: no header.
MODELDECK_CONTENT_SECURITY_POLICY: str = env.str(
    "MODELDECK_CONTENT_SECURITY_POLICY",
    default=(
        "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'self'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
)
# Failed logins (per account and per client address) and failed API tokens (per address) are counted in the cache;
# at the limit the account or address is locked for MODELDECK_AUTH_LOCKOUT_SECONDS, doubled with each further
# failure up to the max, and refused with 429 without being checked. Failures are forgotten this long after the
# last one. See docs/security.md.
MODELDECK_AUTH_FAILURE_WINDOW_SECONDS = env.int("MODELDECK_AUTH_FAILURE_WINDOW_SECONDS", default=15 * 60)
MODELDECK_LOGIN_FAILURES_PER_ACCOUNT = env.int("MODELDECK_LOGIN_FAILURES_PER_ACCOUNT", default=5)
MODELDECK_LOGIN_FAILURES_PER_ADDRESS = env.int("MODELDECK_LOGIN_FAILURES_PER_ADDRESS", default=20)
MODELDECK_TOKEN_FAILURES_PER_ADDRESS = env.int("MODELDECK_TOKEN_FAILURES_PER_ADDRESS", default=20)
MODELDECK_AUTH_LOCKOUT_SECONDS = env.int("MODELDECK_AUTH_LOCKOUT_SECONDS", default=60)
MODELDECK_AUTH_LOCKOUT_MAX_SECONDS = env.int("MODELDECK_AUTH_LOCKOUT_MAX_SECONDS", default=15 * 60)
# Team webhooks may point at private, loopback and link-local addresses (a receiver on the same network, the usual
# self-hosted case). False refuses them at creation and before every attempt, so a team admin cannot make the workers
# call internal services (docs/security.md).
MODELDECK_WEBHOOK_ALLOW_PRIVATE = env.bool("MODELDECK_WEBHOOK_ALLOW_PRIVATE", default=True)

# --- i18n, static -------------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT: Path | None = VAR_DIR / "staticfiles"
STORAGES: dict[str, dict[str, Any]] = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
    # Model files and samples, under content-addressed keys.
    "artifacts": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(VAR_DIR / "artifacts"), "file_permissions_mode": 0o640},
    },
}
# ARTIFACT_STORAGE=s3 keeps model files in any S3-compatible object store (AWS, MinIO, Ceph...) instead.
ARTIFACT_STORAGE = env.str("ARTIFACT_STORAGE", default="local")
if ARTIFACT_STORAGE == "s3":
    STORAGES["artifacts"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": env.str("AWS_STORAGE_BUCKET_NAME"),
            "endpoint_url": env.str("AWS_S3_ENDPOINT_URL", default=None),
            "region_name": env.str("AWS_S3_REGION_NAME", default=None),
            "access_key": env.str("AWS_ACCESS_KEY_ID", default=None),
            "secret_key": env.str("AWS_SECRET_ACCESS_KEY", default=None),
            "location": env.str("AWS_LOCATION", default=""),
            # Keys are content hashes: an existing object already holds the same bytes.
            "file_overwrite": False,
            "default_acl": None,
            "querystring_auth": True,
        },
    }
elif ARTIFACT_STORAGE != "local":
    raise ValueError(f"ARTIFACT_STORAGE must be 'local' or 's3', not {ARTIFACT_STORAGE!r}")
# Every upload streams to a temporary file (hashed on the way, see registry/uploads.py), never into memory.
# This also caps the ASGI handler's in-memory body spool: past it the body goes to disk. (0 would mean "no
# limit" to the spool, which then holds a whole upload in memory.)
FILE_UPLOAD_MAX_MEMORY_SIZE = 256 * 1024
FILE_UPLOAD_HANDLERS = ["registry.uploads.HashingUploadHandler"]
# Spooled bodies and uploads go beside the artifacts, not to /tmp (often a RAM-backed tmpfs in a container). Only the
# upload route is let send more than DATA_UPLOAD_MAX_MEMORY_SIZE (registry.uploads.BodyLimitMiddleware).
FILE_UPLOAD_TEMP_DIR = env.str("FILE_UPLOAD_TEMP_DIR", default=str(VAR_DIR / "tmp"))
Path(FILE_UPLOAD_TEMP_DIR).mkdir(parents=True, exist_ok=True)

# --- REST API -----------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "teams.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "common.api_errors.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "common.openapi.ModelDeckAutoSchema",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "ModelDeck API",
    "DESCRIPTION": (
        "Registry, deployments and team administration. Inference is served by the data plane (/v2, /v1, /mlflow)."
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # A conversion's target and a team's auto-convert targets are one choice set: one enum component.
    "ENUM_NAME_OVERRIDES": {
        "ConversionTargetEnum": "registry.formats.base.TARGETS",
        "ChangeRequestStateEnum": "deployments.choices.ChangeRequestState",
        "RolloutStateEnum": "deployments.choices.RolloutState",
    },
}

# --- ModelDeck ----------------------------------------------------------------------------------
MODELDECK_VAR_DIR = VAR_DIR
# Uploads: the largest model file accepted, and the limits that keep a hostile archive from exhausting the disk.
MODELDECK_MAX_UPLOAD_BYTES = env.int("MODELDECK_MAX_UPLOAD_BYTES", default=2 * 1024**3)
# A sample input (.npz or JSON) kept with a version for validation and drift.
MODELDECK_MAX_SAMPLE_BYTES = env.int("MODELDECK_MAX_SAMPLE_BYTES", default=64 * 1024**2)
# How long a version stays archived, its files kept, before the collector deletes them (unless a release keeps it).
MODELDECK_ARTIFACT_RETENTION_DAYS = env.int("MODELDECK_ARTIFACT_RETENTION_DAYS", default=30)
# ONNX and TFLite files up to this size are inspected during the upload request; larger ones (and every format
# that needs TensorFlow or scikit-learn) by a worker, so a web process never holds a big model in memory.
MODELDECK_INLINE_INSPECT_MAX_BYTES = env.int("MODELDECK_INLINE_INSPECT_MAX_BYTES", default=64 * 1024**2)
# Before an ONNX or TFLite version becomes ready, its serving runtime loads and warms it in a child process held
# to this much address space and time; a model that needs more is refused (so it never reaches a web process).
MODELDECK_LOAD_CHECK_MEMORY_MB = env.int("MODELDECK_LOAD_CHECK_MEMORY_MB", default=4096)
MODELDECK_LOAD_CHECK_TIMEOUT_SECONDS = env.float("MODELDECK_LOAD_CHECK_TIMEOUT_SECONDS", default=120.0)
MODELDECK_ZIP_MAX_MEMBERS = env.int("MODELDECK_ZIP_MAX_MEMBERS", default=10_000)
MODELDECK_ZIP_MAX_TOTAL_BYTES = env.int("MODELDECK_ZIP_MAX_TOTAL_BYTES", default=8 * 1024**3)
# Largest uncompressed/compressed ratio of one archive member (real weights compress 1-10x; bombs 1000x+).
MODELDECK_ZIP_MAX_RATIO = env.int("MODELDECK_ZIP_MAX_RATIO", default=200)
# How long a worker heartbeat may be old before /healthz reports the worker as stale.
MODELDECK_WORKER_STALE_SECONDS = env.int("MODELDECK_WORKER_STALE_SECONDS", default=60)

# --- monitoring ----------------------------------------------------------------------------------
# Per-minute inference history kept in the database.
MODELDECK_METRICS_RETENTION_DAYS = env.int("MODELDECK_METRICS_RETENTION_DAYS", default=30)
# How long a change request (a promote or rollout waiting for a second admin) stays open before it expires.
MODELDECK_APPROVAL_TTL_HOURS = env.float("MODELDECK_APPROVAL_TTL_HOURS", default=24.0)
# Record every inference (live stream, Prometheus, history); off only to measure what recording costs.
MODELDECK_RECORD_INFERENCE = env.bool("MODELDECK_RECORD_INFERENCE", default=True)
# Share of requests whose inputs are binned for drift against the version's sample input.
MODELDECK_DRIFT_SAMPLE_RATE = env.float("MODELDECK_DRIFT_SAMPLE_RATE", default=0.1)
# Every open websocket re-checks its session and team access this often (and at once when a membership changes),
# closing with 4401/4403 when they are gone, and renews its channel-layer groups (lost if Redis restarted).
MODELDECK_WS_RECHECK_SECONDS = env.float("MODELDECK_WS_RECHECK_SECONDS", default=60.0)

# --- serving (the data plane) ---------------------------------------------------------------------
# Web (uvicorn) processes `make run` starts; more than one needs REDIS_URL (shared cache and channel layer).
MODELDECK_WEB_WORKERS = env.int("MODELDECK_WEB_WORKERS", default=1)
# The gRPC port (KServe V2 and TF Serving over gRPC, `manage.py servegrpc`), one process beside the web ones.
MODELDECK_GRPC_PORT = env.int("MODELDECK_GRPC_PORT", default=8001)
# A /metrics port on the gRPC process (0: none). `make run` needs none: its processes share one Prometheus folder and
# the web's /metrics covers them; a container's folder is its own, so docker/grpc.sh opens 8002 (Triton's port).
MODELDECK_GRPC_METRICS_PORT = env.int("MODELDECK_GRPC_METRICS_PORT", default=0)
# uvicorn's access log, one line per request (inference included), off by default: at inference rates writing it
# costs a large share of the web process's time (bench/serving.py measures both), and monitoring counts every
# inference anyway. Read by `make run` (common/webserver.py) and docker/web.sh when they start the web process.
MODELDECK_ACCESS_LOG = env.bool("MODELDECK_ACCESS_LOG", default=False)
# Warm runtimes kept per web process; least recently used ones beyond this are unloaded (live ones never).
MODELDECK_SERVING_MEMORY_MB = env.int("MODELDECK_SERVING_MEMORY_MB", default=2048)
# Largest inference request body; bigger ones get 413 before they are read.
MODELDECK_MAX_INFER_BYTES = env.int("MODELDECK_MAX_INFER_BYTES", default=64 * 1024**2)
# Seconds an inference request's body may take to arrive after its headers (408 and the connection closed after).
MODELDECK_BODY_TIMEOUT_SECONDS = env.float("MODELDECK_BODY_TIMEOUT_SECONDS", default=30.0)
# Inference body bytes one web process receives and holds at once; a request that would pass it gets 503.
MODELDECK_MAX_INFLIGHT_BODY_BYTES = env.int("MODELDECK_MAX_INFLIGHT_BODY_BYTES", default=256 * 1024**2)
# JSON/CSV inference bodies larger than this are decoded in a helper process, off the event loop.
MODELDECK_OFFLOOP_DECODE_BYTES = env.int("MODELDECK_OFFLOOP_DECODE_BYTES", default=256 * 1024)
# How often each web process checks the release stamp (a new release is served within about this).
MODELDECK_SERVING_POLL_SECONDS = env.float("MODELDECK_SERVING_POLL_SECONDS", default=0.2)
# Verified API tokens are remembered this long per process (a revoked token stops working within it).
MODELDECK_SERVING_TOKEN_TTL_SECONDS = env.float("MODELDECK_SERVING_TOKEN_TTL_SECONDS", default=5.0)
# While the database cannot be reached, a token verified within this many seconds keeps the answer it had (a
# revoked token stays refused); any other token, and any name the snapshot cannot settle, gets 503.
MODELDECK_SERVING_TOKEN_GRACE_SECONDS = env.float("MODELDECK_SERVING_TOKEN_GRACE_SECONDS", default=300.0)
# Prometheus (/metrics): every process writes its metrics to files in this folder and a scrape sums them
# (prometheus_client's multiprocess mode, which reads PROMETHEUS_MULTIPROC_DIR when it is first imported, so it is
# set here, before any module imports it). `make run` empties the folder before it starts the processes.
# An explicit PROMETHEUS_MULTIPROC_DIR (prometheus_client's own name) is honoured as the default.
MODELDECK_PROMETHEUS_DIR = Path(
    env.str(
        "MODELDECK_PROMETHEUS_DIR",
        default=env.str("PROMETHEUS_MULTIPROC_DIR", default=str(VAR_DIR / "prometheus")),
    )
).resolve()
MODELDECK_PROMETHEUS_DIR.mkdir(parents=True, exist_ok=True)
# Assigned, not defaulted: the folder prometheus_client writes to must be the one `make run` empties.
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(MODELDECK_PROMETHEUS_DIR)
# When set, /metrics answers only `Authorization: Bearer <this token>` (set it in production); empty: open.
MODELDECK_METRICS_TOKEN: str = env.str("MODELDECK_METRICS_TOKEN", default="")
# Without a token /metrics is open here; the production settings close it (403) instead.
MODELDECK_METRICS_REQUIRE_TOKEN = False

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}
