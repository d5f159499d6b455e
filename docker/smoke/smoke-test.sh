#!/usr/bin/env bash
# `make docker-test`: build the image from docker/Dockerfile, run docker/compose.yml (web, grpc, worker, beat, migrate,
# PostgreSQL, Redis) on host networking, and drive it through upload -> convert -> deploy -> infer and a worker killed
# mid-job (docker/smoke/smoke.py). Everything is torn down (`down -v`) however it ends. Where Docker cannot be made
# available it says why and exits 0 ("skipped"). docker/README.md describes it.
set -euo pipefail
cd "$(dirname -- "$0")/../.."

# Debian's docker.io client: a newer `docker` earlier on the PATH may lack BuildKit (buildx).
DOCKER=${DOCKER:-/usr/bin/docker}
PYTHON=${PYTHON:-.venv/bin/python}
IMAGE=${SMOKE_IMAGE:-modeldeck:smoke}
PROJECT=modeldeck-smoke
export SMOKE_POSTGRES_PORT=${SMOKE_POSTGRES_PORT:-15432}
export SMOKE_REDIS_PORT=${SMOKE_REDIS_PORT:-16379}
export SMOKE_WEB_PORT=${SMOKE_WEB_PORT:-18000}
export SMOKE_GRPC_PORT=${SMOKE_GRPC_PORT:-18001}
export SMOKE_GRPC_METRICS_PORT=${SMOKE_GRPC_METRICS_PORT:-18002}
# The backing image is named by its start script, so a changed script builds a new one.
SMOKE_BACKING_IMAGE=modeldeck-smoke-backing:$(sha256sum docker/smoke/backing-postgres.sh | cut -c1-12)
export SMOKE_BACKING_IMAGE
# A CA bundle for a TLS-inspecting proxy, handed to the build as the Dockerfile's optional `ca` secret.
CA_BUNDLE=${SMOKE_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}

say() { echo "docker-test: $*"; }
skip() {
    say "skipped: $*"
    exit 0
}
began=$(date +%s)
elapsed() { echo "$(($(date +%s) - began)) s"; }

# --- Docker itself: the client, Compose v1 and a daemon (started here when it is installed but not running) ----------
[ -x "$DOCKER" ] || skip "no Docker client at $DOCKER (Debian: apt-get install docker.io docker-compose debootstrap)"
command -v docker-compose >/dev/null || skip "no docker-compose (Debian: apt-get install docker-compose)"
started_dockerd=""
if ! "$DOCKER" info >/dev/null 2>&1; then
    command -v dockerd >/dev/null || PATH=$PATH:/usr/sbin
    command -v dockerd >/dev/null || skip "the Docker daemon is not running and dockerd is not installed"
    [ "$(id -u)" = 0 ] || skip "the Docker daemon is not running and starting it needs root"
    dockerd_log=${TMPDIR:-/tmp}/modeldeck-docker-test-dockerd.log
    say "starting dockerd (log: $dockerd_log)"
    setsid dockerd >"$dockerd_log" 2>&1 </dev/null &
    started_dockerd=$!
    for _ in $(seq 60); do
        "$DOCKER" info >/dev/null 2>&1 && break
        sleep 1
    done
    "$DOCKER" info >/dev/null 2>&1 || {
        tail -n 20 "$dockerd_log"
        kill "$started_dockerd" 2>/dev/null || true
        skip "dockerd did not come up (see $dockerd_log)"
    }
fi

work=$(mktemp -d)
# docker/compose.yml as Compose v1 takes it on host networking: v1 predates the top-level `name:` (-p names the
# project here) and refuses published ports beside host networking, which publishes nothing anyway. The rest is used
# as it is; the project folder is docker/, so relative paths resolve as for `docker compose -f docker/compose.yml`.
"$PYTHON" - docker/compose.yml "$work/compose.yml" <<'PY'
import sys
from pathlib import Path

import yaml

compose = yaml.safe_load(Path(sys.argv[1]).read_text())
del compose["name"]
for service in compose["services"].values():
    service.pop("ports", None)
Path(sys.argv[2]).write_text(yaml.safe_dump(compose, sort_keys=False))
PY
# An empty env file: a developer's docker/.env must not reach the test stack.
: >"$work/env"
compose=(docker-compose --project-directory docker -p "$PROJECT" --env-file "$work/env"
    -f "$work/compose.yml" -f docker/smoke/compose.smoke.yml)
export MODELDECK_IMAGE=$IMAGE
SECRET_KEY=$("$PYTHON" -c 'import secrets; print(secrets.token_urlsafe(50))')
POSTGRES_PASSWORD=$("$PYTHON" -c 'import secrets; print(secrets.token_hex(24))')
# The production settings close /metrics until a scrape token is set: the smoke test scrapes web and gRPC with it.
MODELDECK_METRICS_TOKEN=$("$PYTHON" -c 'import secrets; print(secrets.token_hex(24))')
export SECRET_KEY POSTGRES_PASSWORD MODELDECK_METRICS_TOKEN ALLOWED_HOSTS=127.0.0.1,localhost

stack_up=""
teardown() {
    status=$?
    if [ "$status" != 0 ]; then
        say "FAILED after $(elapsed)"
        if [ -n "$stack_up" ]; then
            "${compose[@]}" ps || true
            "${compose[@]}" logs --no-color --tail 60 || true
        fi
    fi
    "${compose[@]}" down -v --remove-orphans --timeout 10 >/dev/null 2>&1 || true
    rm -rf -- "$work"
    if [ -n "$started_dockerd" ]; then
        kill "$started_dockerd" 2>/dev/null || true
        wait "$started_dockerd" 2>/dev/null || true
    fi
    exit "$status"
}
trap teardown EXIT
trap 'exit 130' INT TERM

# A stack an interrupted run left behind (it would hold the ports).
"${compose[@]}" down -v --remove-orphans --timeout 10 >/dev/null 2>&1 || true
for port in "$SMOKE_POSTGRES_PORT" "$SMOKE_REDIS_PORT" "$SMOKE_WEB_PORT" "$SMOKE_GRPC_PORT" "$SMOKE_GRPC_METRICS_PORT"; do
    if (: <"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        say "port $port on 127.0.0.1 is taken; set the SMOKE_*_PORT variables to free ones"
        exit 1
    fi
done

# --- images --------------------------------------------------------------------------------------------------------
DOCKER=$DOCKER docker/smoke/local-bases.sh
secret=()
[ -s "$CA_BUNDLE" ] && secret=(--secret "id=ca,src=$CA_BUNDLE")
say "building $IMAGE from docker/Dockerfile"
DOCKER_BUILDKIT=1 "$DOCKER" build --quiet --network host "${secret[@]}" -f docker/Dockerfile -t "$IMAGE" . >/dev/null
say "images ready after $(elapsed)"

# --- the stack -----------------------------------------------------------------------------------------------------
# up waits for PostgreSQL and Redis to be healthy and for migrate to finish before web, worker and beat start.
stack_up=yes
"${compose[@]}" up -d --no-build
url=http://127.0.0.1:$SMOKE_WEB_PORT
for _ in $(seq 120); do
    "$PYTHON" - "$url/v2/health/ready" <<'PY' && break
import sys, urllib.request
try:
    sys.exit(0 if urllib.request.urlopen(sys.argv[1], timeout=3).status == 200 else 1)
except OSError:
    sys.exit(1)
PY
    sleep 1
done
"$PYTHON" -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=3)" "$url/v2/health/ready"
# The gRPC server: its grpc.health.v1 says SERVING (the image's own HEALTHCHECK asks it, inside the container).
for _ in $(seq 60); do
    "${compose[@]}" exec -T grpc python /app/docker/healthcheck.py && break
    sleep 1
done
"${compose[@]}" exec -T grpc python /app/docker/healthcheck.py || { say "the gRPC server never said SERVING"; exit 1; }
say "stack up and ready after $(elapsed)"

"${compose[@]}" exec -T web python manage.py createteam smoke --admin alice >/dev/null
token=$("${compose[@]}" exec -T web python manage.py issuetoken --team smoke --user alice --role developer | tr -d '\r')
"$PYTHON" docker/smoke/smoke.py --url "$url" --token "$token" --docker "$DOCKER" \
    --grpc "127.0.0.1:$SMOKE_GRPC_PORT" --grpc-metrics "http://127.0.0.1:$SMOKE_GRPC_METRICS_PORT/metrics" \
    --metrics-token "$MODELDECK_METRICS_TOKEN" \
    --compose "$(printf '%q ' "${compose[@]}")"
say "passed in $(elapsed)"
