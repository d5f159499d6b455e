#!/bin/sh
# The web server (browser, REST API, websockets, inference), started as `manage.py runstack` starts it; the
# tests in tests/docker/ hold the two to the same command. Extra arguments go on to uvicorn.
set -eu
. "$(dirname -- "$0")/common.sh"
prometheus_dir_reset
# Off where something else migrates first (compose's migrate service, the Kubernetes Job): several replicas
# migrating at once would race each other.
case "$(printf '%s' "${MODELDECK_MIGRATE_ON_START:-true}" | tr '[:upper:]' '[:lower:]')" in
    1 | true | yes | on) python manage.py migrate --noinput ;;
esac
workers=${MODELDECK_WEB_WORKERS:-1}
# The embedded defaults (in-memory channel layer, per-process cache) hold state in one process; several web
# processes need Redis to share it.
[ -n "${REDIS_URL:-}" ] || workers=1
# Off unless MODELDECK_ACCESS_LOG says so, as in `make run` (common/webserver.py says why).
case "$(printf '%s' "${MODELDECK_ACCESS_LOG:-false}" | tr '[:upper:]' '[:lower:]')" in
    1 | true | yes | y | on | ok) access_log=--access-log ;;
    *) access_log=--no-access-log ;;
esac
exec python -m uvicorn config.asgi:application \
    --host 0.0.0.0 \
    --port "${PORT:-8000}" \
    --lifespan on \
    --loop uvloop \
    --http serving.fastpath:DataPlaneProtocol \
    --no-proxy-headers \
    --workers "$workers" \
    --log-level info \
    "$access_log" "$@"
