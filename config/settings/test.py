"""Settings for the test suite: real PostgreSQL and Redis, as CI exports them (local defaults otherwise)."""

from __future__ import annotations

import os
import tempfile

# The suite runs against real services; these defaults match the machine's and CI's.
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")

# Prometheus' multiprocess files of a test run go to a folder of their own, not the developer's var/.
os.environ.setdefault("MODELDECK_PROMETHEUS_DIR", tempfile.mkdtemp(prefix="modeldeck-test-prometheus-"))

from config.settings.base import *  # noqa: F403

SECRET_KEY = "test-only-secret-key-not-for-production"  # noqa: S105
DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES = {
    **STORAGES,  # noqa: F405
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# Static files come straight from the finders: the suite never runs collectstatic.
STATIC_ROOT = None
WHITENOISE_USE_FINDERS = True
# The suite fails logins and tokens on purpose from one address (127.0.0.1) into one shared cache: it must never lock
# itself out. The throttle's own tests lower these.
MODELDECK_LOGIN_FAILURES_PER_ACCOUNT = 1_000_000_000
MODELDECK_LOGIN_FAILURES_PER_ADDRESS = 1_000_000_000
MODELDECK_TOKEN_FAILURES_PER_ADDRESS = 1_000_000_000
