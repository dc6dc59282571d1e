#!/usr/bin/env bash
# Targets benchmark: ScimUsers and ManagedTeams provisioned into one target, then into three, then
# into three of which one is slow; on the real test control plane (tests/env/control-plane.sh),
# with this project's server as `default` and two scim2-server instances (the Python peer from
# tests/env/python-tools.sh) as ClusterScimTargets `scim2-a` and `scim2-b`, each behind a
# counting proxy (bench/target_proxy.py). Not part of the test command.
#
# usage: bench/targets.sh RESULTS.jsonl
#
# Runs, each on a fresh control plane, server and peers:
#   one     spec.targets [default]
#   three   spec.targets [default, scim2-a, scim2-b]
#   slowed  the same, with scim2-b's proxy letting through BENCH_TGT_SLOW_RATE requests/s
# Measured per run: seconds until every object is Ready and, per target, until every ScimUser's
# entry for it is ready (the load client's watch, bench/kube_load.rs), requests each target
# received (the proxies' counts; the server's own request counter for default), and the
# operator's peak memory (VmHWM). A slow target must not hold the others back: the
# `slowed_vs_three` row gives, per fast target, its time to ready in `slowed` over `three`.
#
# Knobs: BENCH_TGT_USERS (1000), BENCH_TGT_TEAMS (20), BENCH_TGT_MEMBERS (50),
# BENCH_TGT_CONCURRENCY (16: creates in flight and the operator's --concurrency),
# BENCH_TGT_SLOW_RATE (50), BENCH_TGT_TIMEOUT (1800 s), BENCH_TGT_RUNS ("one three slowed").
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
results=${1:?usage: bench/targets.sh RESULTS.jsonl}
cache="${SCIM_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/scim-operator}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target}"
users=${BENCH_TGT_USERS:-1000}
teams=${BENCH_TGT_TEAMS:-20}
members=${BENCH_TGT_MEMBERS:-50}
conc=${BENCH_TGT_CONCURRENCY:-16}
slow=${BENCH_TGT_SLOW_RATE:-50}
timeout=${BENCH_TGT_TIMEOUT:-1800}
runs=${BENCH_TGT_RUNS:-one three slowed}
work=$(mktemp -d)
pids=()
cp_dir=""
stop_all() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pids=()
  [ -n "$cp_dir" ] && bash "$root/tests/env/control-plane.sh" stop "$cp_dir" >/dev/null 2>&1 || true
  cp_dir=""
}
cleanup() { stop_all; rm -rf "$work"; }
trap cleanup EXIT
say() { printf '[bench-targets] %s\n' "$*" >&2; }
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 1 300); do curl -fs -o /dev/null "$1" && return 0; sleep 0.1; done; echo "no answer from $1" >&2; return 1; }
wait_port() { for _ in $(seq 1 300); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "nothing listens on $1" >&2; return 1; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

bash tests/env/control-plane.sh build >&2
py=$(bash tests/env/python-tools.sh)
say "building (release)"
cargo build --release --locked --quiet --bin scim-operator --example bench-kube-load
bin="$CARGO_TARGET_DIR/release/scim-operator"
load="$CARGO_TARGET_DIR/release/examples/bench-kube-load"
common="\"commit\":\"$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src Cargo.toml Cargo.lock bench || echo -dirty)\",\"users\":$users,\"teams\":$teams,\"members\":$members,\"concurrency\":$conc"

# peer NAME RATE: a scim2-server behind a counting proxy; sets peer_url_NAME and peer_count_NAME.
peer() {
  local name=$1 rate=$2 up proxy
  up=$(port); proxy=$(port)
  "$py/scim2-server" --hostname 127.0.0.1 --port "$up" --bearer-token "token-$name" > "$work/$name.log" 2>&1 &
  pids+=($!)
  python3 bench/target_proxy.py "$proxy" "$up" "$rate" "$work/$name.count" > "$work/$name-proxy.log" 2>&1 &
  pids+=($!)
  wait_port "$up"
  wait_port "$proxy"
  printf -v "peer_url_${name//-/_}" '%s' "http://127.0.0.1:$proxy"
}

# cluster_target NAME URL PROFILE TOKEN_FILE_OR_VALUE: a ClusterScimTarget reading its token from
# a Secret of the operator's namespace, usable from every namespace.
cluster_target() {
  $KUBECTL -n scim-system create secret generic "$1" --from-literal=token="$4" >/dev/null
  $KUBECTL apply -f - >/dev/null <<EOF
apiVersion: scim.dev/v1alpha1
kind: ClusterScimTarget
metadata: {name: $1}
spec:
  baseUrl: $2
  profile: $3
  credentials: {bearerToken: {name: $1, key: token}}
  budget: {requestsPerSecond: 2000, maxConcurrency: 8}
  namespaces: {allowed: {names: ["*"]}}
EOF
}

server_requests() { curl -fsS "$1/metrics" | awk '/^[a-z_]*http_requests_total/ {s += $2} END {print s + 0}'; }

one_run() { # NAME TARGETS(comma) SLOW(0|1)
  local name=$1 targets=$2 slowed=$3
  stop_all
  cp_dir="$work/cp-$name"
  bash tests/env/control-plane.sh start "$cp_dir" >/dev/null
  # shellcheck disable=SC1091
  . "$cp_dir/env"
  $KUBECTL apply --server-side -f crds/ >/dev/null
  $KUBECTL wait --for=condition=Established crd/scimusers.scim.dev crd/managedteams.scim.dev \
    crd/clusterscimtargets.scim.dev >/dev/null
  $KUBECTL create namespace scim-system >/dev/null
  local p mp db="$work/$name.db"
  p=$(port)
  "$bin" keys create --db "$db" --name operator --preset operator | tail -n 1 > "$work/token"
  "$bin" serve --db "$db" --listen "127.0.0.1:$p" --log-format json > "$work/$name-server.log" 2>&1 &
  local server=$!; pids+=($server)
  wait_http "http://127.0.0.1:$p/readyz"
  cluster_target default "http://127.0.0.1:$p/scim/v2" ScimOperator "$(cat "$work/token")"
  peer scim2-a 0
  peer scim2-b "$([ "$slowed" = 1 ] && echo "$slow" || echo 0)"
  cluster_target scim2-a "$peer_url_scim2_a" Generic token-scim2-a
  cluster_target scim2-b "$peer_url_scim2_b" Generic token-scim2-b
  mp=$(port)
  "$bin" controller --scim-url "http://127.0.0.1:$p/scim/v2" --token-file "$work/token" \
    --operator-namespace scim-system --metrics-listen "127.0.0.1:$mp" \
    --concurrency "$conc" --rate-limit 1000 --max-in-flight 16 > "$work/$name-operator.log" 2>&1 &
  local op=$!; pids+=($op)
  wait_http "http://127.0.0.1:$mp/readyz"
  $KUBECTL wait --for=condition=Ready clusterscimtarget/scim2-a clusterscimtarget/scim2-b --timeout=60s >/dev/null
  local r0 la out
  r0=$(server_requests "http://127.0.0.1:$p")
  la=$(loadavg)
  say "$name: $users ScimUsers, $teams ManagedTeams of $members, targets [$targets] (load $la)"
  if ! out=$(BENCH_KUBE_TARGETS=$targets "$load" apply bench-targets "$users" "$teams" "$members" "$conc" "$timeout" 2> "$work/load.err"); then
    cat "$work/load.err" >&2
    tail -n 20 "$work/$name-operator.log" >&2
    return 1
  fi
  local default_requests a b rss
  default_requests=$(( $(server_requests "http://127.0.0.1:$p") - r0 ))
  a=$(cat "$work/scim2-a.count"); b=$(cat "$work/scim2-b.count")
  rss=$(awk '/VmHWM/ {print $2}' "/proc/$op/status")
  echo "{\"target\":\"operator_targets\",\"workload\":\"$name\",$common,\"targets\":\"$targets\",\"slow_rate\":$([ "$slowed" = 1 ] && echo "$slow" || echo null),\"loadavg_before\":\"$la\",\"result\":$out,\"requests\":{\"ClusterScimTarget/default\":$default_requests,\"ClusterScimTarget/scim2-a\":$a,\"ClusterScimTarget/scim2-b\":$b},\"peak_rss_kb\":$rss,\"loadavg_after\":\"$(loadavg)\"}" >> "$results"
  say "$name: $out; requests default $default_requests, scim2-a $a, scim2-b $b; operator peak RSS $((rss / 1024)) MiB"
}

for r in $runs; do
  case "$r" in
    one) one_run one default 0 ;;
    three) one_run three default,scim2-a,scim2-b 0 ;;
    slowed) one_run slowed default,scim2-a,scim2-b 1 ;;
    *) echo "unknown run $r" >&2; exit 2 ;;
  esac
done

# Per fast target: its time to ready with scim2-b slowed over without.
python3 - "$results" <<'EOF' >> "$results"
import json, sys
rows = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r.get("target") == "operator_targets":
        rows[r["workload"]] = r  # the newest of each run
if "three" in rows and "slowed" in rows:
    t, s = rows["three"]["result"]["user_target_ready_s"], rows["slowed"]["result"]["user_target_ready_s"]
    ratio = {k: round(s[k] / t[k], 3) for k in t if k in s and not k.endswith("scim2-b")}
    print(json.dumps({"target": "operator_targets", "workload": "slowed_vs_three", "ratio": ratio}))
EOF
tail -n 1 "$results" >&2
