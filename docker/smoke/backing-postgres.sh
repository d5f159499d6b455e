#!/bin/sh
# PostgreSQL for the smoke test's compose stack (docker/smoke/compose.smoke.yml), in the way the official postgres
# image starts: POSTGRES_USER, POSTGRES_PASSWORD and POSTGRES_DB make the cluster on first start. Debian's
# PostgreSQL, on host networking, at 127.0.0.1:$PGPORT.
set -eu
data=/var/lib/postgresql/data
bin=$(ls -d /usr/lib/postgresql/*/bin | tail -n1)
mkdir -p "$data"
chown postgres:postgres "$data"
chmod 0700 "$data"
if [ ! -s "$data/PG_VERSION" ]; then
    password_file=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" >"$password_file"
    chown postgres "$password_file"
    su postgres -s /bin/sh -c "'$bin/initdb' -D '$data' -U '$POSTGRES_USER' --pwfile='$password_file' \
        --auth-host=scram-sha-256 --auth-local=trust" >/dev/null
    rm -f "$password_file"
    echo "CREATE DATABASE \"$POSTGRES_DB\";" | su postgres -s /bin/sh -c "'$bin/postgres' --single -D '$data' postgres" >/dev/null
fi
exec su postgres -s /bin/sh -c "exec '$bin/postgres' -D '$data' -p '$PGPORT' -c listen_addresses=127.0.0.1 \
    -c unix_socket_directories=/tmp"
