"""Cost of checking an API token, the first thing every authenticated API and inference request does.

Prints per-call latency (p50/p99, microseconds) for the sha256 digest alone and for the whole check
(digest + indexed lookup + the throttled last-used write), on a throw-away SQLite database (the embedded
default; DATABASE_URL is ignored so a benchmark never migrates or writes a real database).
Run: `make bench` or `.venv/bin/python bench/bench_token_auth.py`.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ["MODELDECK_VAR_DIR"] = tempfile.mkdtemp(prefix="modeldeck-bench-")
os.environ.pop("DATABASE_URL", None)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

import django

django.setup()

from django.core.management import call_command  # noqa: E402

from teams.permissions import Actor  # noqa: E402
from teams.services import api_token_authenticate, api_token_create, team_create, user_get_or_create  # noqa: E402
from teams.tokens import token_digest  # noqa: E402


def measure(label: str, fn: Callable[[], object], runs: int) -> None:
    for _ in range(min(200, runs)):
        fn()
    samples = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        fn()
        samples.append((time.perf_counter_ns() - start) / 1000)
    samples.sort()
    p50 = statistics.median(samples)
    p99 = samples[int(len(samples) * 0.99) - 1]
    print(f"{label:<44} p50 {p50:8.1f} us   p99 {p99:8.1f} us   {1e6 / p50:10.0f} /s")


def main() -> None:
    call_command("migrate", verbosity=0)
    user, _ = user_get_or_create(username="bench")
    team = team_create(slug="bench", admin=user)
    raw = api_token_create(actor=Actor(user=user), team=team, name="bench", role="viewer").raw
    print(f"database: {django.db.connection.vendor}")
    measure("sha256 digest of the token", lambda: token_digest(raw), 20000)
    measure("api_token_authenticate (digest + lookup)", lambda: api_token_authenticate(raw=raw), 3000)
    measure("api_token_authenticate, unknown token", lambda: api_token_authenticate(raw=raw[:-4] + "xxxx"), 3000)


if __name__ == "__main__":
    main()
