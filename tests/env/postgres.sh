#!/usr/bin/env bash
# A throwaway PostgreSQL server on loopback for the tests, from Debian's packages.
#   postgres.sh start DIR   installs PostgreSQL if needed, starts it, writes DIR/env
#                           (exports SCIM_TEST_DATABASE_URL) and prints the URL
#   postgres.sh stop DIR    stops it and removes DIR
set -euo pipefail

find_bin() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && { echo "$d"; return 0; }
  done
  return 1
}

install() {
  if ! find_bin >/dev/null; then
    echo "[postgres] installing PostgreSQL from Debian's packages" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq postgresql >&2
  fi
  find_bin
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Runs a command as the database owner (initdb refuses to run as root).
as_owner() {
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

cmd=${1:-}
dir=${2:-}
case "$cmd" in
  start)
    [ -n "$dir" ] || dir=$(mktemp -d)
    bin=$(install)
    mkdir -p "$dir/data" "$dir/socket"
    [ "$(id -u)" = 0 ] && chown -R postgres "$dir" && chmod 755 "$dir"
    port=$(free_port)
    password=$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')
    echo "$password" > "$dir/pwfile"
    [ "$(id -u)" = 0 ] && chown postgres "$dir/pwfile"
    as_owner "$bin/initdb" -D "$dir/data" -U scim --pwfile="$dir/pwfile" -A scram-sha-256 --no-sync >"$dir/initdb.log" 2>&1
    rm -f "$dir/pwfile"
    # Tests need speed, not durability across power loss.
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $port -k $dir/socket -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" start >/dev/null
    url="postgres://scim:$password@127.0.0.1:$port/postgres"
    {
      echo "export SCIM_TEST_DATABASE_URL='$url'"
      echo "export POSTGRES_BIN='$bin'"
    } > "$dir/env"
    echo "$url"
    ;;
  stop)
    [ -n "$dir" ] || { echo "usage: $0 stop DIR" >&2; exit 2; }
    bin=$(find_bin || true)
    if [ -n "$bin" ] && [ -d "$dir/data" ]; then
      as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
    ;;
  *)
    echo "usage: $0 start [DIR] | stop DIR" >&2
    exit 2
    ;;
esac
