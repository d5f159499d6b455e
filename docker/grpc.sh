#!/bin/sh
# The gRPC inference server (KServe V2 and TF Serving over gRPC, grpc.health.v1 for probes), started as
# `manage.py runstack` starts it; the tests in tests/docker/ hold the two to the same command. One process per
# container: its router and warm models are its own. Its Prometheus folder is its own too, so it answers
# GET /metrics itself on MODELDECK_GRPC_METRICS_PORT (8002). Extra arguments go on to `manage.py servegrpc`.
set -eu
. "$(dirname -- "$0")/common.sh"
prometheus_dir_reset
exec python manage.py servegrpc \
    --host 0.0.0.0 \
    --port "${MODELDECK_GRPC_PORT:-8001}" \
    --metrics-port "${MODELDECK_GRPC_METRICS_PORT:-8002}" \
    "$@"
