#!/usr/bin/env bash
# A real PostgreSQL server for the state-backend tests, on 127.0.0.1 with password (SCRAM) authentication,
# so that the tests also prove the password in the URL never reaches any output.
#
#   postgres.sh start   start it unless it runs; prints the admin URL
#   postgres.sh stop    stop it and remove its data
#   postgres.sh clean   stop the servers of test processes that are gone (leftovers of a crash)
#
# Environment: SEALER_TEST_PG_DIR (default /tmp/sealer-postgres), SEALER_TEST_PG_PORT (default 55432),
# SEALER_TEST_PG_OWNER (a pid: the server is stopped and removed once that process is gone; the tests
# give their own, so each test process has a server of its own, on a port and a directory of its own).
set -euo pipefail

dir=${SEALER_TEST_PG_DIR:-/tmp/sealer-postgres}
port=${SEALER_TEST_PG_PORT:-55432}
password=sealer-test-pg-secret
url="postgres://postgres:$password@127.0.0.1:$port/postgres"

die() { echo "postgres.sh: $*" >&2; exit 1; }

bindir() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  [ -n "$d" ] || die "PostgreSQL server not installed (Debian package postgresql)"
  echo "$d"
}

# initdb and postgres refuse to run as root.
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start() {
  local bin; bin=$(bindir)
  mkdir -p "$dir"
  [ "$(id -u)" = 0 ] && chown postgres: "$dir"
  exec 9>"$dir.lock"
  flock 9
  # Written first, so that `clean` finds a server whose owner died while it started.
  [ -z "${SEALER_TEST_PG_OWNER:-}" ] || echo "$SEALER_TEST_PG_OWNER" >"$dir/owner"
  if [ -f "$dir/data/postmaster.pid" ] && as_pg "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
    echo "$url"
    return
  fi
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    rm -rf "$dir/data"
    printf '%s\n' "$password" >"$dir/pwfile"
    [ "$(id -u)" = 0 ] && chown postgres: "$dir/pwfile"
    as_pg "$bin/initdb" -D "$dir/data" -U postgres --auth=scram-sha-256 --pwfile="$dir/pwfile" >"$dir/initdb.log" 2>&1 \
      || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
    rm -f "$dir/pwfile"
  fi
  as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=200 -c fsync=off" start >/dev/null 9>&- \
    || { cat "$dir/server.log" >&2; die "the server did not start"; }
  if [ -n "${SEALER_TEST_PG_OWNER:-}" ]; then
    # The owner (a test process) cannot stop it when it ends: a watcher does, detached from it.
    setsid bash "$0" watch "$SEALER_TEST_PG_OWNER" </dev/null >/dev/null 2>&1 9>&- &
  fi
  echo "$url"
}

# /proc, not `kill -0`: a process of another user is alive too.
alive() { [ -n "$1" ] && [ -d "/proc/$1" ]; }

watch() {
  while alive "$1"; do sleep 1; done
  stop
}

clean() {
  for d in "${dir%/*}"/sealer-postgres-*; do
    [ -d "$d" ] || continue
    alive "$(cat "$d/owner" 2>/dev/null)" || SEALER_TEST_PG_DIR=$d bash "$0" stop
  done
}

stop() {
  local bin; bin=$(bindir)
  [ -d "$dir/data" ] && as_pg "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$dir" "$dir.lock"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  watch) watch "$2" ;;
  clean) clean ;;
  *) die "usage: postgres.sh start|stop|clean" ;;
esac
