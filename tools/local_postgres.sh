#!/usr/bin/env bash
# A throw-away local PostgreSQL for running the tests against PostgreSQL.
#
#   tools/local_postgres.sh start [DIR]   initdb (first time) + start; prints DATABASE_URL
#   tools/local_postgres.sh url   [DIR]   prints DATABASE_URL of the running server
#   tools/local_postgres.sh stop  [DIR]   stops it (the cluster stays in DIR)
#   tools/local_postgres.sh wipe  [DIR]   stops it and deletes DIR
#
# DIR defaults to $PGLOCAL_DIR, else /tmp/galaxy-pg-$(id -un). The server listens on
# 127.0.0.1 only, on a free port, with trust authentication (tests only: never expose it).
# initdb refuses to run as root, so as root the cluster belongs to the `postgres` user.
#
#   export DATABASE_URL=$(tools/local_postgres.sh start) && make test
set -euo pipefail

ACTION=${1:-}
DIR=${2:-${PGLOCAL_DIR:-/tmp/galaxy-pg-$(id -un)}}
DATABASE=galaxy
USER_NAME=galaxy

die() { echo "error: $*" >&2; exit 1; }

bin_dir() {
    local found
    found=$(command -v pg_ctl 2>/dev/null || true)
    # /usr/local/bin/pg_ctl may be a lone symlink: the other binaries sit beside its target.
    if [[ -n "$found" ]]; then dirname "$(readlink -f "$found")"; return; fi
    found=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    [[ -x "$found/pg_ctl" ]] || die "PostgreSQL server binaries not found (apt-get install postgresql)"
    echo "$found"
}
BIN=$(bin_dir)

# Run a server binary as the cluster's owner: ourselves, or `postgres` when we are root.
as_owner() {
    if [[ $(id -u) -eq 0 ]]; then
        id postgres >/dev/null 2>&1 || die "running as root needs a 'postgres' user to own the cluster"
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

port_of() { cat "$DIR/port" 2>/dev/null || die "no cluster in $DIR: run '$0 start' first"; }

url() { echo "postgresql+psycopg2://$USER_NAME@127.0.0.1:$(port_of)/$DATABASE"; }

running() { [[ -f "$DIR/data/postmaster.pid" ]] && as_owner "$BIN/pg_ctl" -D "$DIR/data" status >/dev/null 2>&1; }

start() {
    if running; then url; return; fi
    mkdir -p "$DIR"
    [[ $(id -u) -eq 0 ]] && chown postgres: "$DIR"
    local port fresh=0
    port=$(free_port)
    if [[ ! -f "$DIR/data/PG_VERSION" ]]; then
        as_owner "$BIN/initdb" -D "$DIR/data" --auth=trust --username=postgres \
            --encoding=UTF8 --locale=C.UTF-8 >"$DIR/initdb.log" 2>&1 \
            || die "initdb failed; see $DIR/initdb.log"
        fresh=1
    fi
    echo "$port" >"$DIR/port"
    # Sockets in DIR (not /var/run/postgresql, which may not exist); TCP on loopback only.
    as_owner "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 30 start \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $DIR -c fsync=off -c full_page_writes=off" \
        >/dev/null || die "the server did not start; see $DIR/server.log"
    if [[ $fresh -eq 1 ]]; then
        as_owner "$BIN/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 -q \
            -c "CREATE ROLE $USER_NAME LOGIN" -c "CREATE DATABASE $DATABASE OWNER $USER_NAME" \
            >/dev/null || die "could not create the $DATABASE database"
    fi
    url
}

stop() {
    if running; then as_owner "$BIN/pg_ctl" -D "$DIR/data" -m fast -w stop >/dev/null; fi
}

case "$ACTION" in
    start) start ;;
    url) running || die "the server in $DIR is not running"; url ;;
    stop) stop ;;
    wipe) stop; rm -rf "$DIR" ;;
    *) echo "usage: $0 start|url|stop|wipe [DIR]" >&2; exit 2 ;;
esac
