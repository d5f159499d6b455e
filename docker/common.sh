# Sourced by the start scripts (web.sh, worker.sh, beat.sh, migrate.sh); not run on its own.

# Run from the project root, as `make run` does: manage.py, `-A config` and config.asgi resolve from there.
cd "$(dirname -- "$0")/.."
# config/env.py's VAR_DIR: MODELDECK_VAR_DIR, else var/ beside manage.py.
var_dir=${MODELDECK_VAR_DIR:-$(pwd -P)/var}

# prometheus_client's multiprocess mode sums every *.db file in MODELDECK_PROMETHEUS_DIR, so files an earlier run
# left behind would count twice (runstack empties the folder for the same reason). In a container the folder is
# per-container: inside the image (/var/lib/modeldeck/prometheus) or an emptyDir, never a volume shared with
# another container, whose processes can have the same pids (the files are named by pid). So when a start script
# runs, nothing else writes there and emptying it is safe. Same default chain as config/settings/base.py.
prometheus_dir_reset() {
    prometheus_dir=${MODELDECK_PROMETHEUS_DIR:-${PROMETHEUS_MULTIPROC_DIR:-$var_dir/prometheus}}
    rm -f -- "$prometheus_dir"/*.db
}
