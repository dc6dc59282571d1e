#!/usr/bin/env bash
# Two server binaries, one after the other, on one seeded PostgreSQL database: the A/B behind
# "PostgreSQL no slower" in BENCHMARKS.md, where runs of bench/run.sh on different days (or
# machines) are too far apart to compare. Not part of the test command.
#
#   bash bench/ab_postgres.sh OLD_BINARY NEW_BINARY
#
# Each workload runs BENCH_AB_ROUNDS times (2) for each binary, alternating, BENCH_DURATION
# seconds each (6), with BENCH_CONCURRENCY connections (16), on BENCH_USERS users (100500).
# Besides the rate, each row has the server's CPU time per request (user + system, from
# /proc), which drifts less than the rate on a shared machine. Results go to
# bench/results/ab-postgres-<time>.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 2 ] || { echo "usage: bash bench/ab_postgres.sh OLD_BINARY NEW_BINARY" >&2; exit 2; }
old=$(readlink -f "$1"); new=$(readlink -f "$2")
cache="${SCIM_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/scim-operator}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target}"
rounds=${BENCH_AB_ROUNDS:-2}
duration=${BENCH_DURATION:-6}
conc=${BENCH_CONCURRENCY:-16}
users=${BENCH_USERS:-100500}
work=$(mktemp -d)
pg_dir=$(mktemp -d) # its own directory: the database server's user must be able to enter it
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  wait 2>/dev/null || true
  bash tests/env/postgres.sh stop "$pg_dir" >/dev/null 2>&1 || true
  rm -rf "$work" "$pg_dir"
}
trap cleanup EXIT
say() { printf '[ab] %s\n' "$*" >&2; }
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ticks=$(getconf CLK_TCK)

cargo build --release --locked --quiet --example bench-seed
url=$(bash tests/env/postgres.sh start "$pg_dir")
mkdir -p "$work/seed"
say "seeding $users users"
"$CARGO_TARGET_DIR/release/examples/bench-seed" "$url" "$users" 10000 100000 "$work/seed" >&2
psql "$url" -qc "ANALYZE users, teams, team_members, roles, user_roles, settings, role_mapping_teams" >&2

out="bench/results/ab-postgres-$(date -u +%Y%m%dT%H%M%SZ).jsonl"
: > "$out"
# A workload NAME+excluded is NAME with ?excludedAttributes=members, as in bench/run.sh.
for workload in lookup create put groups_page patch_small+excluded patch_big+excluded patch_small_idp patch_big_idp; do
  query=""; [ "${workload%+excluded}" != "$workload" ] && query="?excludedAttributes=members"
  for round in $(seq 1 "$rounds"); do
    for side in old new; do
      bin=$old; [ "$side" = new ] && bin=$new
      p=$(port)
      "$bin" serve --db "$url" --listen "127.0.0.1:$p" >/dev/null 2>&1 &
      pid=$!
      for _ in $(seq 1 200); do curl -s -o /dev/null "http://127.0.0.1:$p/healthz" && break; sleep 0.1; done
      cpu0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
      result=$(BENCH_WORKLOAD=${workload%+excluded} BENCH_PATCH_QUERY=$query BENCH_DIR=$work/seed BENCH_USERS=100000 BENCH_PREFIX=/scim/v2 BENCH_NGROUPS=10000 \
        wrk -t2 -c"$conc" -d"${duration}s" --timeout 30s -s bench/workloads.lua "http://127.0.0.1:$p" 2>&1 | sed -n 's/^RESULT //p')
      cpu1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
      kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
      [ -n "$result" ] || { say "no result for $side $workload"; continue; }
      line=$(python3 -c 'import json, os, sys
r = json.loads(sys.argv[1])
r.update(side=sys.argv[2], binary=os.path.basename(sys.argv[3]), workload=sys.argv[4], round=int(sys.argv[5]),
         cpu_us_per_req=round((int(sys.argv[7]) - int(sys.argv[6])) * 1e6 / int(sys.argv[8]) / max(1, r["requests"]), 1))
print(json.dumps(r))' "$result" "$side" "$bin" "$workload" "$round" "$cpu0" "$cpu1" "$ticks")
      echo "$line" >> "$out"
      say "$line"
    done
  done
done
python3 - "$out" <<'PY'
import collections, json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
by = collections.defaultdict(list)
for r in rows:
    by[(r["workload"], r["side"])].append(r)
print("| Workload | old req/s | new req/s | old CPU µs/req | new CPU µs/req |")
print("| --- | --- | --- | --- | --- |")
for w in dict.fromkeys(r["workload"] for r in rows):
    o, n = by[(w, "old")], by[(w, "new")]
    mean = lambda xs, k: sum(x[k] for x in xs) / max(1, len(xs))
    print(f"| {w} | {mean(o, 'rps'):.0f} | {mean(n, 'rps'):.0f} | {mean(o, 'cpu_us_per_req'):.0f} | {mean(n, 'cpu_us_per_req'):.0f} |")
PY
say "wrote $out"
