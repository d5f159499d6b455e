#!/bin/sh
# Apply the database migrations and exit (compose's migrate service, the Kubernetes Job).
set -eu
. "$(dirname -- "$0")/common.sh"
exec python manage.py migrate --noinput
