"""Safe defaults: a Content-Security-Policy on every page, HSTS and a closed /metrics under the production settings."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.test import Client

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.django_db
def test_pages_and_api_answers_carry_the_policy(client: Client, settings) -> None:
    policy = client.get("/accounts/login/")["Content-Security-Policy"]
    assert policy == settings.MODELDECK_CONTENT_SECURITY_POLICY
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["default-src"] == "'self'"
    assert directives["object-src"] == "'none'"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert client.get("/api/v1/me")["Content-Security-Policy"] == policy


def test_no_template_holds_an_inline_script_style_or_handler() -> None:
    """The policy admits none, so a page that had one would break in the browser: keep them in static/ files."""
    inline = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>|<style\b|\sstyle=|\son[a-z]+=|javascript:", re.IGNORECASE)
    found = [
        f"{path.relative_to(ROOT)}: {match.group(0)}"
        for path in sorted((ROOT / "templates").rglob("*.html"))
        for match in inline.finditer(path.read_text())
    ]
    assert found == []


@pytest.mark.django_db
def test_metrics_closed_without_a_token_where_one_is_required(client: Client, settings) -> None:
    settings.MODELDECK_METRICS_TOKEN = ""
    settings.MODELDECK_METRICS_REQUIRE_TOKEN = True
    closed = client.get("/metrics")
    assert closed.status_code == 403
    assert b"MODELDECK_METRICS_TOKEN" in closed.content
    assert b"modeldeck_" not in closed.content
    settings.MODELDECK_METRICS_TOKEN = "s3cret"
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret").status_code == 200


PRODUCTION_PROBE = """
import json
import django
from django.conf import settings
from django.test import Client

django.setup()
client = Client()
https = {"HTTP_X_FORWARDED_PROTO": "https"}
# An answer that needs neither the database nor collected static files (the manifest storage has none here): the
# API's JSON 404.
login = client.get("/api/v1/no-such-path/", **https)
plain = client.get("/api/v1/no-such-path/")
metrics = client.get("/metrics", **https)
print(json.dumps({
    "hsts": login.headers.get("Strict-Transport-Security"),
    "hsts_on_plain_http": plain.headers.get("Strict-Transport-Security"),
    "csp": login.headers.get("Content-Security-Policy"),
    "metrics": [metrics.status_code, metrics.content.decode()],
    "metrics_token": settings.MODELDECK_METRICS_TOKEN,
}))
"""


def _production(tmp_path: Path, **extra: str) -> dict:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SECURE_", "MODELDECK_", "DJANGO_", "CSRF_", "SESSION_"))
    }
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.production",
        SECRET_KEY="production-probe-" + "x" * 40,
        ALLOWED_HOSTS="testserver",
        MODELDECK_VAR_DIR=str(tmp_path),
        DATABASE_URL=os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test"),
        **extra,
    )
    result = subprocess.run(
        [sys.executable, "-c", PRODUCTION_PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_production_defaults(tmp_path) -> None:
    probe = _production(tmp_path)
    assert probe["hsts"] == "max-age=31536000"  # a year; subdomains and preload are opt-in
    assert probe["hsts_on_plain_http"] is None  # only HTTPS answers pin the browser to HTTPS
    assert probe["csp"] == django_settings.MODELDECK_CONTENT_SECURITY_POLICY
    assert probe["metrics_token"] == ""
    assert probe["metrics"][0] == 403


def test_production_hsts_opt_ins_and_metrics_token(tmp_path) -> None:
    probe = _production(
        tmp_path,
        SECURE_HSTS_INCLUDE_SUBDOMAINS="true",
        SECURE_HSTS_PRELOAD="true",
        MODELDECK_METRICS_TOKEN="scrape-token",
    )
    assert probe["hsts"] == "max-age=31536000; includeSubDomains; preload"
    assert probe["metrics"][0] == 401  # a token is set: the scrape must carry it
