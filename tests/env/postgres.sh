#!/usr/bin/env bash
# A throwaway PostgreSQL server on loopback for the tests, from Debian's packages.
#   postgres.sh start DIR   installs PostgreSQL if needed (apt-get), creates a cluster in DIR,
#                           starts it on 127.0.0.1 (free port; unix socket in DIR), creates the
#                           role `scim` (LOGIN CREATEDB, random password) and the database
#                           `scim_test`, writes DIR/env (exports SCIM_TEST_DATABASE_URL) and
#                           prints the URL. Starting an already running DIR prints its URL again.
#   postgres.sh stop DIR    stops the server and removes DIR
# Tests create one database per test through that URL (tests/common/mod.rs).
set -euo pipefail

log() { echo "[postgres] $*" >&2; }

find_bin() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && [ -x "$d/psql" ]; then
      echo "$d"
      return 0
    fi
  done
  return 1
}

install_postgres() {
  if ! find_bin >/dev/null; then
    [ "$(id -u)" = 0 ] || { log "PostgreSQL is not installed and installing it needs root (apt-get install postgresql)"; exit 1; }
    log "installing PostgreSQL from Debian's packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends postgresql >&2
  fi
  find_bin || { log "no initdb under /usr/lib/postgresql/*/bin after installing"; exit 1; }
}

# initdb and postgres refuse to run as root: as root, run them as the `postgres` system user
# (created by the Debian package; created here if missing).
owner() {
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin postgres
    echo postgres
  else
    id -un
  fi
}

as_owner() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

# A port nobody listens on (the server's start fails on the rare race; we then try another).
pick_port() {
  local port
  for _ in $(seq 1 50); do
    port=$(( 20000 + (RANDOM * 32768 + RANDOM) % 40000 ))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return 0
    fi
  done
  log "no free port found"
  exit 1
}

url_of() { sed -n "s/^export SCIM_TEST_DATABASE_URL='\(.*\)'$/\1/p" "$1/env"; }

start() {
  local dir=$1 bin user password port attempt started=
  bin=$(install_postgres)
  if [ -f "$dir/env" ] && as_owner "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
    url_of "$dir"
    return 0
  fi
  user=$(owner)
  mkdir -p "$dir/data" "$dir/socket"
  chmod 700 "$dir/data"
  if [ "$(id -u)" = 0 ]; then
    chown -R "$user" "$dir"
    chmod 755 "$dir"
    as_owner test -w "$dir/data" || { log "user $user cannot write $dir (a parent directory is closed to it); use a DIR under /tmp"; exit 1; }
  fi
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    # Local (socket) connections trust the OS user; TCP connections need a password.
    as_owner "$bin/initdb" -D "$dir/data" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
      --no-sync -E UTF8 --locale=C >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
  fi
  for attempt in 1 2 3 4 5; do
    port=$(pick_port)
    # Speed over durability across power loss: these databases are thrown away.
    if as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 -o \
      "-c listen_addresses=127.0.0.1 -p $port -k $dir/socket -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
      start >/dev/null; then
      started=1
      break
    fi
    log "start on port $port failed (attempt $attempt); see $dir/postgres.log"
  done
  [ -n "$started" ] || { tail -n 20 "$dir/postgres.log" >&2; exit 1; }
  password=$(head -c 32 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 24)
  as_owner "$bin/psql" -X -q -v ON_ERROR_STOP=1 -h "$dir/socket" -p "$port" -U postgres -d postgres >/dev/null <<SQL
CREATE ROLE scim LOGIN CREATEDB PASSWORD '$password';
CREATE DATABASE scim_test OWNER scim;
SQL
  local url="postgres://scim:$password@127.0.0.1:$port/scim_test"
  {
    echo "export SCIM_TEST_DATABASE_URL='$url'"
    echo "export POSTGRES_BIN='$bin'"
    echo "export POSTGRES_PORT='$port'"
  } >"$dir/env"
  chmod 600 "$dir/env"
  log "PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port (data in $dir/data)"
  echo "$url"
}

stop() {
  local dir=$1 bin
  bin=$(find_bin || true)
  if [ -n "$bin" ] && [ -f "$dir/data/postmaster.pid" ]; then
    as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >/dev/null 2>&1 ||
      as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
  fi
  rm -rf "$dir"
}

cmd=${1:-}
dir=${2:-}
case "$cmd" in
  start)
    [ -n "$dir" ] || { echo "usage: $0 start DIR" >&2; exit 2; }
    mkdir -p "$dir"
    start "$(cd "$dir" && pwd)"
    ;;
  stop)
    [ -n "$dir" ] || { echo "usage: $0 stop DIR" >&2; exit 2; }
    if [ -d "$dir" ]; then stop "$(cd "$dir" && pwd)"; fi
    ;;
  *)
    echo "usage: $0 start DIR | stop DIR" >&2
    exit 2
    ;;
esac
