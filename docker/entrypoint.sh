#!/bin/sh
# The image's entry point: `web` (default), `grpc`, `worker`, `beat` or `migrate` start a ModelDeck process; any other
# command runs as given (`python manage.py createteam ...`).
set -eu
here=$(dirname -- "$0")
case "${1:-web}" in
    web | grpc | worker | beat | migrate)
        process=${1:-web}
        [ "$#" -gt 0 ] && shift
        exec sh "$here/$process.sh" "$@"
        ;;
    *)
        exec "$@"
        ;;
esac
