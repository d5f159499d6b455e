"""Settings for production: secrets and hosts must come from the environment, no defaults."""

from __future__ import annotations

from config.env import env
from config.settings.base import *  # noqa: F403

SECRET_KEY = env.str("SECRET_KEY")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS")
DEBUG = False
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=True)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=True)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# HSTS: browsers keep to HTTPS for a year once they have seen the site over HTTPS (the header is sent on HTTPS
# responses only, so a plain-HTTP trial is unaffected). Subdomains and preload are the operator's decision: opt in.
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=365 * 24 * 3600)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
# /metrics names every team's endpoints: without MODELDECK_METRICS_TOKEN it answers 403, not the metrics.
MODELDECK_METRICS_REQUIRE_TOKEN = True
