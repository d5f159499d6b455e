"""Serving while PostgreSQL is away: a web process on a private cluster that the test stops and starts again.

Tokens verified within the grace keep their answer (a revoked one stays refused), what cannot be looked up is 503
with Retry-After in the protocol's own shape (never 500, never a 401 or 404 verdict), and serving recovers on its
own when the database is back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from django.core.cache import cache

from deployments.selectors import RELEASE_STAMP_KEY
from teams.tokens import token_generate
from tests.faults.postgres import PrivatePostgres, private_postgres
from tests.registry.test_worker_kill import database_url, wait_until
from tests.serving.test_inference_auth import V2_BODY, bearer, error_body
from tests.test_scale_out import ROOT, Web

# A multi-process or fault-injection suite: `make test-heavy`, not `make test` (CI runs both).
pytestmark = pytest.mark.heavy

TTL = 0.5  # re-checked often: the test sees the database tried, and failing, many times within the grace
GRACE = 8.0
RETRY_AFTER = "5"


def prepare(folder: str) -> None:
    """In a process of its own on the private cluster: deploy team alpha's "iris" and issue tokens.

    Prints the raw tokens: "dev" (used before the outage), "unseen" (valid, first used during it), "revoked", and
    "outsider" (team bravo's).
    """
    from deployments.services import endpoint_create
    from registry import tasks
    from registry.services.versions import registered_model_create
    from teams.choices import Role
    from teams.permissions import Actor
    from teams.services import api_token_create, api_token_revoke
    from tests.deployments.test_endpoint_apis import add_version
    from tests.teams.factories import create_membership, create_team, create_user

    tasks.job_run_task.delay = lambda job_id: None  # no worker here: the version's benchmark job is not needed
    team = create_team(slug="alpha")
    user = create_user(username="dev")
    create_membership(team=team, user=user, role=Role.DEVELOPER)
    actor = Actor(user=user)
    model = registered_model_create(actor=actor, team=team, name="iris")
    endpoint_create(actor=actor, model=model, name="iris", version=add_version(model, actor, Path(folder), 1))
    issued = {name: api_token_create(actor=actor, team=team, name=name, role=Role.VIEWER) for name in ("dev", "unseen")}
    revoked = api_token_create(actor=actor, team=team, name="revoked", role=Role.VIEWER)
    api_token_revoke(actor=actor, token=revoked.token)
    outsider = create_user(username="outsider")
    bravo = create_team(slug="bravo")
    create_membership(team=bravo, user=outsider, role=Role.DEVELOPER)
    other = api_token_create(actor=Actor(user=outsider), team=bravo, name="outsider", role=Role.VIEWER)
    raw = {name: token.raw for name, token in issued.items()}
    print(json.dumps({**raw, "revoked": revoked.raw, "outsider": other.raw}))


@pytest.mark.django_db  # the suite's test database: its schema is copied, it is not used
def test_serving_rides_out_a_postgres_outage_within_the_grace_and_recovers(tmp_path: Path) -> None:
    with private_postgres() as postgres:
        postgres.create_database("modeldeck", schema_from=database_url())  # the suite's test database, migrated
        env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "MODELDECK_VAR_DIR"}}
        env |= {
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "DATABASE_URL": postgres.url("modeldeck"),
            "REDIS_URL": settings.REDIS_URL,
            "MODELDECK_VAR_DIR": str(tmp_path),
            "MODELDECK_PROMETHEUS_DIR": str(tmp_path / "prometheus"),
            "MODELDECK_SERVING_TOKEN_TTL_SECONDS": str(TTL),
            "MODELDECK_SERVING_TOKEN_GRACE_SECONDS": str(GRACE),
            "PYTHONUNBUFFERED": "1",
        }
        code = f"import django; django.setup(); from {__name__} import prepare; prepare({str(tmp_path)!r})"
        done = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180, check=False
        )
        assert done.returncode == 0, done.stdout + done.stderr
        tokens = json.loads(done.stdout.strip().splitlines()[-1])
        web = Web("web", env)
        try:
            web.wait_ready()
            _ride_out(postgres, web, tokens)
        except BaseException:
            print(web.dump())
            raise
        finally:
            web.kill()


def _ride_out(postgres: PrivatePostgres, web: Web, tokens: dict[str, str]) -> None:
    http = httpx.Client(base_url=web.url, timeout=30)

    def infer(token: str, name: str = "iris", path: str = "/v2/models/{name}/infer") -> httpx.Response:
        # The body matters only to a request that gets past authentication: those go to the V2 path.
        return http.post(path.format(name=name), json=V2_BODY, headers=bearer(token))

    def unavailable(path: str, message: str) -> tuple[int, bytes, str]:
        return (
            503,
            error_body(path, 503, f"{message}: the serving database cannot be reached; retry later"),
            RETRY_AFTER,
        )

    def answer(response: httpx.Response) -> tuple[int, bytes, str | None]:
        return response.status_code, response.content, response.headers.get("retry-after")

    response = infer(tokens["dev"])
    assert response.status_code == 200, response.text
    assert infer(tokens["dev"], name="nope").status_code == 404
    # Past the time a remembered answer is used without asking: these are verified against the database now.
    time.sleep(2 * TTL + 0.1)
    verified_after = time.monotonic()
    assert infer(tokens["dev"]).status_code == 200
    assert infer(tokens["revoked"]).status_code == 401  # seen revoked before the outage
    assert infer(tokens["outsider"]).status_code == 404  # another team's endpoint: as a name that does not exist

    postgres.stop()
    time.sleep(2 * TTL + 0.1)  # every answer from here on comes from a failed lookup, not from the short cache

    # Within the grace: the verified token is served, the revoked one stays refused.
    response = infer(tokens["dev"])
    assert (response.status_code, time.monotonic() < verified_after + GRACE) == (200, True), response.text
    for _ in range(3):
        time.sleep(TTL)
        assert infer(tokens["dev"]).status_code == 200
    response = infer(tokens["revoked"])
    assert (response.status_code, response.headers["www-authenticate"]) == (
        401,
        'Bearer realm="modeldeck", error="invalid_token"',
    )
    # A token with no answer within the grace (valid, or made up) gets no verdict: 503, in each protocol's shape.
    for path in ("/v2/models/{name}/infer", "/v1/models/{name}:predict", "/mlflow/{name}/invocations"):
        for token in (tokens["unseen"], token_generate().raw):
            assert answer(infer(token, path=path)) == unavailable(path, "cannot verify the token now")
    # An unknown name: nothing was released since the snapshot (the stamp says so without the database), so 404.
    assert infer(tokens["dev"], name="nope").status_code == 404
    assert infer(tokens["outsider"]).status_code == 404
    # A release the database has and this process could not read: whether the name exists cannot be told.
    cache.set(RELEASE_STAMP_KEY, time.time_ns(), timeout=None)
    assert answer(infer(tokens["dev"], name="nope")) == unavailable(
        "/v2/", "cannot tell whether endpoint 'nope' exists now"
    )
    # Another team's endpoint is answered exactly as a name that does not exist: names cannot be probed.
    assert answer(infer(tokens["outsider"])) == unavailable("/v2/", "cannot tell whether endpoint 'iris' exists now")
    assert http.post("/v2/models/nope/infer", json=V2_BODY).status_code == 401  # no probing without a token
    assert infer(tokens["dev"]).status_code == 200  # a known endpoint still serves
    assert time.monotonic() < verified_after + GRACE, "the checks above took longer than the grace"

    # The grace ends: the token's answer is no longer used, and it gets 503 too.
    ended = time.monotonic() + GRACE + 10
    while (response := infer(tokens["dev"])).status_code == 200 and time.monotonic() < ended:
        time.sleep(0.2)
    assert time.monotonic() >= verified_after + GRACE
    assert answer(response) == unavailable("/v2/", "cannot verify the token now")

    # The database is back: lookups succeed again in the same process, with no restart.
    postgres.start()
    wait_until(lambda: infer(tokens["dev"]).status_code == 200, 30, "serving to recover", poll=0.2)
    assert infer(tokens["unseen"]).status_code == 200
    assert infer(tokens["revoked"]).status_code == 401
    wait_until(lambda: infer(tokens["dev"], name="nope").status_code == 404, 30, "names to be settled again")
    http.close()
