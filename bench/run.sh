#!/usr/bin/env bash
# Benchmarks the SCIM server side by side with a peer (the Python scim2-server) and a ceiling
# (nginx answering a fixed small JSON body), all on loopback, and writes BENCHMARKS.md with the
# results table, the ratios and a plot. A second ceiling, for writes: the raw durable-commit rate
# of SQLite with the server's pragmas and BENCH_CONCURRENCY writers (bench/sqlite_commit.rs), on
# the file system the server's database is on. Not part of the test command.
#
# Knobs: BENCH_DURATION (s per run, 10), BENCH_CONCURRENCY (16), BENCH_USERS (100500),
# BENCH_BIG (100000), BENCH_GROUPS (10000), BENCH_PEER_USERS/BIG/GROUPS (10200/10000/1000),
# BENCH_POSTGRES (1: also measure the PostgreSQL store).
#
# The same command also runs the operator benchmark (bench/operator.sh: 10,000 ScimUsers and 100
# ManagedTeams of 100 members on the test control plane, against a direct-client ceiling; its
# knobs, BENCH_OP_*, are in its header). BENCH_ONLY=server or BENCH_ONLY=operator runs one half;
# the other half's rows are then carried over from the newest earlier results file that has them.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
cache="${SCIM_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/scim-operator}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target}"
duration=${BENCH_DURATION:-10}
conc=${BENCH_CONCURRENCY:-16}
users=${BENCH_USERS:-100500}
big=${BENCH_BIG:-100000}
ngroups=${BENCH_GROUPS:-10000}
peer_users=${BENCH_PEER_USERS:-10200}
peer_big=${BENCH_PEER_BIG:-10000}
peer_groups=${BENCH_PEER_GROUPS:-1000}
only=${BENCH_ONLY:-all}
case "$only" in all | server | operator) ;; *) echo "BENCH_ONLY must be server or operator" >&2; exit 2 ;; esac
work=$(mktemp -d)
pids=()
pg_dir=""
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "$pg_dir" ] && bash tests/env/postgres.sh stop "$pg_dir" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
say() { printf '[bench] %s\n' "$*" >&2; }
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 1 200); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done; echo "no answer from $1" >&2; return 1; }

results="$work/results.jsonl"
: > "$results"
if [ "$only" != operator ]; then
command -v wrk >/dev/null && command -v nginx >/dev/null || { say "installing wrk and nginx"; apt-get update -qq >/dev/null; apt-get install -y -qq wrk nginx-light >/dev/null; }
tools=$(bash tests/env/python-tools.sh | tail -n 1)
fi
plot_venv="$cache/bench-venv"
[ -x "$plot_venv/bin/python" ] || { python3 -m venv "$plot_venv"; "$plot_venv/bin/pip" install -q matplotlib==3.10.7; }

server_params="duration=${duration}s concurrency=$conc users=$users big_group=$big groups=$ngroups peer_users=$peer_users peer_big=$peer_big peer_groups=$peer_groups"
if [ "$only" != operator ]; then
echo "{\"target\":\"meta\",\"workload\":\"server_params\",\"value\":\"$server_params\"}" >> "$results"
say "building (release)"
cargo build --release --locked --quiet --bin scim-operator --example bench-seed --example bench-sqlite-commit
bin="$CARGO_TARGET_DIR/release/scim-operator"
seed="$CARGO_TARGET_DIR/release/examples/bench-seed"
commit_ceiling="$CARGO_TARGET_DIR/release/examples/bench-sqlite-commit"

# run TARGET WORKLOAD URL PREFIX DIR USERS [PATCH_QUERY]
run() {
  local out
  out=$(BENCH_WORKLOAD=$2 BENCH_DIR=$5 BENCH_USERS=$6 BENCH_PREFIX=$4 BENCH_PATCH_QUERY=${7:-} \
    wrk -t2 -c"$conc" -d"${duration}s" --timeout 30s -s bench/workloads.lua "$3" 2>&1 | sed -n 's/^RESULT //p')
  [ -n "$out" ] || { say "no result for $1 $2"; return; }
  echo "{\"target\":\"$1\",\"workload\":\"$2$([ -n "${7:-}" ] && echo '+excluded')\",${out#\{}" >> "$results"
  say "$1 $2${7:+ (excludedAttributes=members)}: $out"
}

peak() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }
# Peak proportional set size of PID, sampled every 0.5 s into FILE until the process exits.
# Unlike VmHWM it counts a page mapped several times once: each SQLite connection maps the
# database file, and VmHWM counts every mapping of the same page of the page cache.
sample_pss() {
  local pid=$1 out=$2
  echo 0 > "$out"
  (
    top=0
    while [ -r "/proc/$pid/smaps_rollup" ]; do
      v=$(awk '/^Pss:/ {print $2}' "/proc/$pid/smaps_rollup" 2>/dev/null || true)
      if [ -n "$v" ] && [ "$v" -gt "$top" ]; then top=$v; echo "$top" > "$out"; fi
      sleep 0.5
    done
  ) &
  pids+=($!)
}
mem_rows() { # TARGET PID PSS_FILE
  echo "{\"target\":\"$1\",\"workload\":\"peak_rss_kb\",\"value\":$(peak "$2")}" >> "$results"
  echo "{\"target\":\"$1\",\"workload\":\"peak_pss_kb\",\"value\":$(cat "$3")}" >> "$results"
}

scim_suite() { # NAME URL DIR USERS PREFIX GROUPS
  local name=$1 url=$2 dir=$3 n=$4 prefix=$5
  export BENCH_NGROUPS=$6
  run "$name" lookup "$url" "$prefix" "$dir" "$n"
  run "$name" create "$url" "$prefix" "$dir" "$n"
  run "$name" put "$url" "$prefix" "$dir" "$n"
  run "$name" groups_page "$url" "$prefix" "$dir" "$n"
  # The big group last: a server that collapses on it (the peer does) leaves the rest measured.
  run "$name" patch_small "$url" "$prefix" "$dir" "$n" "?excludedAttributes=members"
  # The same membership change as an identity provider sends it: no query, members with display.
  run "$name" patch_small_idp "$url" "$prefix" "$dir" "$n"
  run "$name" patch_big "$url" "$prefix" "$dir" "$n" "?excludedAttributes=members"
  run "$name" patch_big_idp "$url" "$prefix" "$dir" "$n"
  run "$name" patch_big "$url" "$prefix" "$dir" "$n"
}

# --- this project, SQLite
say "seeding SQLite: $users users, $ngroups groups, a $big-member group"
mkdir -p "$work/sqlite"
( time "$seed" "$work/sqlite.db" "$users" "$ngroups" "$big" "$work/sqlite" ) 2>&1 | grep -E "seeded|real" >&2
p=$(port)
"$bin" serve --db "$work/sqlite.db" --listen "127.0.0.1:$p" --log-format json >/dev/null 2>&1 &
pid=$!; pids+=($pid)
sample_pss "$pid" "$work/sqlite.pss"
wait_http "http://127.0.0.1:$p/healthz"
scim_suite sqlite "http://127.0.0.1:$p" "$work/sqlite" "$big" /scim/v2 "$ngroups"
mem_rows sqlite "$pid" "$work/sqlite.pss"
kill $pid

# --- this project, PostgreSQL
if [ "${BENCH_POSTGRES:-1}" = 1 ]; then
  pg_dir=$(mktemp -d)
  url=$(bash tests/env/postgres.sh start "$pg_dir")
  say "seeding PostgreSQL"
  mkdir -p "$work/postgres"
  "$seed" "$url" "$users" "$ngroups" "$big" "$work/postgres" >&2
  # Planner statistics for the bulk-loaded tables, as autovacuum would gather within a minute
  # (without them PostgreSQL plans the groups subquery of a lookup as a scan of every team).
  psql "$url" -qc "ANALYZE users, teams, team_members, roles, user_roles, settings, role_mapping_teams" >&2
  p=$(port)
  "$bin" serve --db "$url" --listen "127.0.0.1:$p" >/dev/null 2>&1 &
  pid=$!; pids+=($pid)
  sample_pss "$pid" "$work/postgres.pss"
  wait_http "http://127.0.0.1:$p/healthz"
  scim_suite postgres "http://127.0.0.1:$p" "$work/postgres" "$big" /scim/v2 "$ngroups"
  mem_rows postgres "$pid" "$work/postgres.pss"
  kill $pid
fi

# --- the peer: scim2-server (Python, in memory)
p=$(port)
"$tools/scim2-server" --hostname 127.0.0.1 --port "$p" --bearer-token peer-token >/dev/null 2>&1 &
pid=$!; pids+=($pid)
sample_pss "$pid" "$work/peer.pss"
wait_http "http://127.0.0.1:$p/ServiceProviderConfig"
mkdir -p "$work/peer"
say "seeding the peer: $peer_users users, $peer_groups groups, a $peer_big-member group"
"$tools/python" bench/seed_peer.py "http://127.0.0.1:$p" peer-token "$peer_users" "$peer_groups" "$peer_big" "$work/peer" >&2
scim_suite peer "http://127.0.0.1:$p" "$work/peer" "$peer_big" "" "$peer_groups"
mem_rows peer "$pid" "$work/peer.pss"
kill $pid

# --- the ceiling: nginx answering a fixed small JSON body
p=$(port)
mkdir -p "$work/nginx"
cat > "$work/nginx/nginx.conf" <<NGINX
worker_processes 2;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $work/nginx;
  server {
    listen 127.0.0.1:$p;
    location / {
      default_type application/scim+json;
      return 200 '{"schemas":["urn:ietf:params:scim:api:messages:2.0:ListResponse"],"totalResults":0,"Resources":[]}';
    }
  }
}
NGINX
nginx -c "$work/nginx/nginx.conf"
wait_http "http://127.0.0.1:$p/"
run ceiling lookup "http://127.0.0.1:$p" "" "$work/sqlite" "$big"
run ceiling create "http://127.0.0.1:$p" "" "$work/sqlite" "$big"
nginx -c "$work/nginx/nginx.conf" -s stop

# --- the write ceiling: SQLite's own durable-commit rate, 16 writers, next to the server's files
say "SQLite commit ceiling: $conc writers"
if out=$("$commit_ceiling" "$work/commit-ceiling" "$duration" "$conc"); then
  echo "$out" >> "$results"
  say "ceiling sqlite_commit: $out"
else
  say "no result for ceiling sqlite_commit"
fi
fi

# --- the operator (bench/operator.sh)
[ "$only" = server ] || bash bench/operator.sh "$results"

# --- carry over the half that did not run from the newest earlier results that have it
mkdir -p bench/results
carry() { # PYTHON-PREDICATE-ON-ROW r
  local f
  # Only the runs of this script (named by their time), not the other benchmarks' results.
  for f in $(ls -r bench/results/[0-9]*.jsonl 2>/dev/null); do
    if python3 -c "import json,sys; rows=[json.loads(l) for l in open(sys.argv[1]) if l.strip()]; sys.exit(0 if any($1 for r in rows) else 1)" "$f"; then
      python3 -c "import json,sys,os
for l in open(sys.argv[1]):
    if not l.strip(): continue
    r=json.loads(l)
    if $1:
        r.setdefault('carried_from', os.path.basename(sys.argv[1])[:-6]); print(json.dumps(r))" "$f" >> "$results"
      say "carried over rows from $f"
      return
    fi
  done
}
[ "$only" != server ] || carry "r['target'] in ('operator', 'kube_ceiling')"
[ "$only" != operator ] || carry "r['target'] not in ('operator', 'kube_ceiling')"

stamp=$(date -u +%Y%m%dT%H%M%SZ)
cp "$results" "bench/results/$stamp.jsonl"
"$plot_venv/bin/python" bench/report.py "bench/results/$stamp.jsonl" BENCHMARKS.md bench/results/throughput.png "$server_params"
say "wrote BENCHMARKS.md and bench/results/throughput.png"
