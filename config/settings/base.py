"""Settings shared by every environment; the environment itself is read in config/env.py."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

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
    "registry",
    "deployments",
    "serving",
    "monitoring",
]

MIDDLEWARE = [
    "common.middleware.RefuseNulMiddleware",
    "django.middleware.security.SecurityMiddleware",
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
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- redis: cache, channel layer and broker ----------------------------------------------------
REDIS_URL: str = env.str("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
    CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [REDIS_URL]}},
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
    "jobs-reap": {"task": "registry.tasks.jobs_reap_task", "schedule": 30.0},
    "metric-minutes-prune": {"task": "monitoring.tasks.metric_minutes_prune_task", "schedule": 3600.0},
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
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
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
}

# --- ModelDeck ----------------------------------------------------------------------------------
MODELDECK_VAR_DIR = VAR_DIR
# Uploads: the largest model file accepted, and the limits that keep a hostile archive from exhausting the disk.
MODELDECK_MAX_UPLOAD_BYTES = env.int("MODELDECK_MAX_UPLOAD_BYTES", default=2 * 1024**3)
# A sample input (.npz or JSON) kept with a version for validation and drift.
MODELDECK_MAX_SAMPLE_BYTES = env.int("MODELDECK_MAX_SAMPLE_BYTES", default=64 * 1024**2)
# ONNX and TFLite files up to this size are inspected during the upload request; larger ones (and every format
# that needs TensorFlow or scikit-learn) by a worker, so a web process never holds a big model in memory.
MODELDECK_INLINE_INSPECT_MAX_BYTES = env.int("MODELDECK_INLINE_INSPECT_MAX_BYTES", default=64 * 1024**2)
MODELDECK_ZIP_MAX_MEMBERS = env.int("MODELDECK_ZIP_MAX_MEMBERS", default=10_000)
MODELDECK_ZIP_MAX_TOTAL_BYTES = env.int("MODELDECK_ZIP_MAX_TOTAL_BYTES", default=8 * 1024**3)
# Largest uncompressed/compressed ratio of one archive member (real weights compress 1-10x; bombs 1000x+).
MODELDECK_ZIP_MAX_RATIO = env.int("MODELDECK_ZIP_MAX_RATIO", default=200)
# How long a worker heartbeat may be old before /healthz reports the worker as stale.
MODELDECK_WORKER_STALE_SECONDS = env.int("MODELDECK_WORKER_STALE_SECONDS", default=60)

# --- monitoring ----------------------------------------------------------------------------------
# Per-minute inference history kept in the database.
MODELDECK_METRICS_RETENTION_DAYS = env.int("MODELDECK_METRICS_RETENTION_DAYS", default=30)
# Record every inference (live stream, Prometheus, history); off only to measure what recording costs.
MODELDECK_RECORD_INFERENCE = env.bool("MODELDECK_RECORD_INFERENCE", default=True)
# Share of requests whose inputs are binned for drift against the version's sample input.
MODELDECK_DRIFT_SAMPLE_RATE = env.float("MODELDECK_DRIFT_SAMPLE_RATE", default=0.1)

# --- serving (the data plane) ---------------------------------------------------------------------
# Web (uvicorn) processes `make run` starts; more than one needs REDIS_URL (shared cache and channel layer).
MODELDECK_WEB_WORKERS = env.int("MODELDECK_WEB_WORKERS", default=1)
# Warm runtimes kept per web process; least recently used ones beyond this are unloaded (live ones never).
MODELDECK_SERVING_MEMORY_MB = env.int("MODELDECK_SERVING_MEMORY_MB", default=2048)
# Largest inference request body; bigger ones get 413 before they are read.
MODELDECK_MAX_INFER_BYTES = env.int("MODELDECK_MAX_INFER_BYTES", default=64 * 1024**2)
# How often each web process checks the release stamp (a new release is served within about this).
MODELDECK_SERVING_POLL_SECONDS = env.float("MODELDECK_SERVING_POLL_SECONDS", default=0.2)
# Verified API tokens are remembered this long per process (a revoked token stops working within it).
MODELDECK_SERVING_TOKEN_TTL_SECONDS = env.float("MODELDECK_SERVING_TOKEN_TTL_SECONDS", default=5.0)
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

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}
