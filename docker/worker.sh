#!/bin/sh
# A Celery worker (conversions, parity, benchmarks, housekeeping), started as `manage.py runstack` starts it; the
# tests in tests/docker/ hold the two to the same command. Extra arguments go on to Celery (`worker -Q ...`).
set -eu
. "$(dirname -- "$0")/common.sh"
prometheus_dir_reset
without=""
case "${CELERY_BROKER_URL:-${REDIS_URL:-filesystem://}}" in
    # The filesystem transport has no broadcast exchange for mingle/gossip between workers.
    filesystem://*) without="--without-mingle --without-gossip" ;;
esac
# %h is the container's host name, unique per container and per pod. $without is split into its two flags.
# shellcheck disable=SC2086
exec python -m celery -A config worker -l INFO -n "worker@%h" \
    --concurrency "${CELERY_WORKER_CONCURRENCY:-2}" $without "$@"
