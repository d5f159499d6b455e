#!/bin/sh
# The Celery beat scheduler, started as `manage.py runstack` starts it. Run exactly one: two would send every
# periodic task twice.
set -eu
. "$(dirname -- "$0")/common.sh"
prometheus_dir_reset
# settings.CELERY_BEAT_SCHEDULE_FILENAME
exec python -m celery -A config beat -l INFO -s "$var_dir/celerybeat-schedule" "$@"
