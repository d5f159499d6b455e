#!/bin/sh
# The gRPC inference server (KServe V2 and TF Serving over gRPC, grpc.health.v1 for probes), started as
# `manage.py runstack` starts it; the tests in tests/docker/ hold the two to the same command. One process per
# container: its router and warm models are its own. Extra arguments go on to `manage.py servegrpc`.
set -eu
. "$(dirname -- "$0")/common.sh"
prometheus_dir_reset
exec python manage.py servegrpc \
    --host 0.0.0.0 \
    --port "${MODELDECK_GRPC_PORT:-8001}" \
    "$@"
