#!/usr/bin/env bash
# Operator benchmark on the real test control plane (tests/env/control-plane.sh). Run by
# `bench/run.sh` (BENCH_ONLY=operator runs only this half); alone: bench/operator.sh RESULTS.jsonl
#
# 1. Ceiling: on a fresh control plane with the CRDs and no operator, the load client
#    (bench/kube_load.rs) creates the ScimUsers and ManagedTeams and writes each one's status
#    subresource to Ready=True itself, at concurrency BENCH_OP_CONCURRENCY, and times it until a
#    watch has seen every object Ready. That is the least any operator could take.
# 2. Operator: on another fresh control plane, the SCIM server (release build, SQLite in a
#    temporary directory) and the operator (`scim-operator controller`, release build) run; the
#    load client creates the same objects at the same concurrency and waits for a watch to see
#    every object Ready. Then the operator is left idle for BENCH_OP_IDLE seconds.
# Measured: time to all Ready for both, the operator's reconciles per second (its /metrics), its
# peak memory (VmHWM) and its CPU while idle (utime+stime from /proc, % of one core).
# Appends JSON lines (target "kube_ceiling" and "operator") to RESULTS.jsonl.
#
# Knobs: BENCH_OP_USERS (10000), BENCH_OP_TEAMS (100), BENCH_OP_MEMBERS (100),
# BENCH_OP_CONCURRENCY (16: creates in flight in the load client, and the operator's
# --concurrency), BENCH_OP_RATE_LIMIT (1000: the operator's --rate-limit, SCIM requests/s),
# BENCH_OP_MAX_IN_FLIGHT (16: the operator's --max-in-flight), BENCH_OP_IDLE (60 s),
# BENCH_OP_TIMEOUT (3600 s to wait for Ready), BENCH_OP_BIN (the scim-operator binary to run;
# default: the release build of this tree; set it to compare with another build),
# BENCH_OP_FINALIZER_POLICY (1: both control planes serve MutatingAdmissionPolicy and the
# operator run installs the chart's finalizer policy, as the chart does on Kubernetes 1.36;
# 0: neither, the operator adds each finalizer with a PATCH, as on older clusters),
# BENCH_OP_PROFILE (a directory: a 30 s CPU profile of the API server is taken 5 s into each
# run, `go tool pprof -top` reads it).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
results=${1:?usage: bench/operator.sh RESULTS.jsonl}
cache="${SCIM_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/scim-operator}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target}"
users=${BENCH_OP_USERS:-10000}
teams=${BENCH_OP_TEAMS:-100}
members=${BENCH_OP_MEMBERS:-100}
conc=${BENCH_OP_CONCURRENCY:-16}
rate=${BENCH_OP_RATE_LIMIT:-1000}
in_flight=${BENCH_OP_MAX_IN_FLIGHT:-16}
idle=${BENCH_OP_IDLE:-60}
timeout=${BENCH_OP_TIMEOUT:-3600}
finalizer_policy=${BENCH_OP_FINALIZER_POLICY:-1}
extra_flags=()
[ "$finalizer_policy" = 1 ] && extra_flags+=(--feature-gates=MutatingAdmissionPolicy=true --runtime-config=admissionregistration.k8s.io/v1beta1=true)
[ -n "${BENCH_OP_PROFILE:-}" ] && mkdir -p "$BENCH_OP_PROFILE" && extra_flags+=(--profiling=true)
export KUBE_APISERVER_EXTRA_FLAGS="${extra_flags[*]}"
# profile NAME: in the background, the API server's CPU profile from 5 s to 35 s from now.
profile() {
  [ -n "${BENCH_OP_PROFILE:-}" ] || return 0
  (sleep 5 && $KUBECTL get --raw "/debug/pprof/profile?seconds=30" > "$BENCH_OP_PROFILE/apiserver-$1.pprof") &
}
work=$(mktemp -d)
pids=()
cp_dir=""
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "$cp_dir" ] && bash "$root/tests/env/control-plane.sh" stop "$cp_dir" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
say() { printf '[bench-operator] %s\n' "$*" >&2; }
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 1 300); do curl -fs -o /dev/null "$1" && return 0; sleep 0.1; done; echo "no answer from $1" >&2; return 1; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
# cpu_snapshot NAME=PID...: prints NAME=TICKS for each; cpu_json BEFORE AFTER: {"NAME": seconds, ...}
cpu_snapshot() { local a; for a in "$@"; do printf '%s=%s ' "${a%%=*}" "$(cpu_ticks "${a#*=}")"; done; }
cpu_json() {
  python3 -c 'import json,sys
b=dict(x.split("=") for x in sys.argv[1].split()); a=dict(x.split("=") for x in sys.argv[2].split())
print(json.dumps({k: round((int(a[k]) - int(b[k])) / int(sys.argv[3]), 2) for k in b}))' "$1" "$2" "$hz"
}
# run_load ARGS...: runs the load client; its JSON on stdout gains "cpu_s" (its own CPU seconds)
run_load() {
  local TIMEFORMAT='%U %S'
  { time "$load" "$@" > "$work/load.out" 2> "$work/load.err"; } 2> "$work/load.time" || { cat "$work/load.err" >&2; return 1; }
  python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); u,s=open(sys.argv[2]).read().split()[:2]; r["cpu_s"]=round(float(u)+float(s),2); print(json.dumps(r))' "$work/load.out" "$work/load.time"
}
reconciles() { curl -fsS "$1/metrics" | awk '/^scim_operator_reconciles_total/ {s += $2} END {print s + 0}'; }

bash tests/env/control-plane.sh build >&2
say "building (release)"
cargo build --release --locked --quiet --bin scim-operator --example bench-kube-load
bin="${BENCH_OP_BIN:-$CARGO_TARGET_DIR/release/scim-operator}"
load="$CARGO_TARGET_DIR/release/examples/bench-kube-load"

fresh_control_plane() {
  [ -n "$cp_dir" ] && bash tests/env/control-plane.sh stop "$cp_dir" >/dev/null 2>&1
  cp_dir="$work/cp-$1"
  bash tests/env/control-plane.sh start "$cp_dir" >/dev/null
  # shellcheck disable=SC1091
  . "$cp_dir/env"
  $KUBECTL apply --server-side -f crds/ >/dev/null
  $KUBECTL wait --for=condition=Established crd/scimusers.scim.dev crd/managedteams.scim.dev >/dev/null
}

common="\"commit\":\"$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src Cargo.toml Cargo.lock || echo -dirty)\",\"custom_binary\":$([ -n "${BENCH_OP_BIN:-}" ] && echo true || echo false),\"users\":$users,\"teams\":$teams,\"members\":$members,\"concurrency\":$conc"

# api_requests: the API server's request counter (apiserver_request_total) by verb and resource
# (and by code when it is an error),
# as JSON; api_delta BEFORE AFTER: what was asked in between (10 or more), largest first.
api_requests() {
  $KUBECTL get --raw /metrics | python3 -c '
import json, re, sys
counts = {}
for line in sys.stdin:
    if not line.startswith("apiserver_request_total{"):
        continue
    labels = dict(re.findall(r"(\w+)=\"([^\"]*)\"", line))
    key = labels.get("verb", "?") + " " + labels.get("resource", "?") + ("/" + labels["subresource"] if labels.get("subresource") else "")
    if labels.get("code", "200")[0] in "45":
        key += " " + labels["code"]
    counts[key] = counts.get(key, 0) + float(line.rsplit(" ", 1)[1])
print(json.dumps(counts))'
}
api_delta() {
  python3 -c '
import json, sys
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
d = {k: int(v - a.get(k, 0)) for k, v in b.items() if v - a.get(k, 0) >= 10}
print(json.dumps(dict(sorted(d.items(), key=lambda kv: -kv[1]))))' "$1" "$2"
}

# --- ceiling: the load client writes the statuses itself, no operator
fresh_control_plane ceiling
say "ceiling: $users ScimUsers, $teams ManagedTeams of $members, concurrency $conc (load $(loadavg))"
la=$(loadavg)
procs=(etcd="$ETCD_PID" kube_apiserver="$KUBE_APISERVER_PID")
s0=$(cpu_snapshot "${procs[@]}")
a0=$(api_requests)
profile ceiling
out=$(run_load ceiling bench-ceiling "$users" "$teams" "$members" "$conc" "$timeout")
cpu=$(cpu_json "$s0" "$(cpu_snapshot "${procs[@]}")")
api=$(api_delta "$a0" "$(api_requests)")
say "ceiling: $out; CPU seconds: $cpu; API requests: $api"
echo "{\"target\":\"kube_ceiling\",\"workload\":\"apply\",$common,\"loadavg_before\":\"$la\",\"result\":$out,\"cpu_s\":$cpu,\"api_requests\":$api}" >> "$results"

# --- the operator
fresh_control_plane operator
p=$(port)
"$bin" keys create --db "$work/scim.db" --name operator --preset operator | tail -n 1 > "$work/token"
"$bin" serve --db "$work/scim.db" --listen "127.0.0.1:$p" --log-format json > "$work/server.log" 2>&1 &
server=$!; pids+=($server)
wait_http "http://127.0.0.1:$p/readyz"
mp=$(port)
tuning=(--concurrency "$conc" --rate-limit "$rate" --max-in-flight "$in_flight")
if [ "$finalizer_policy" = 1 ]; then
  # The chart's own manifest, as `helm install` renders it on a cluster that serves the API.
  $HELM template bench charts/scim-operator --show-only templates/finalizer-policy.yaml \
    --api-versions admissionregistration.k8s.io/v1beta1/MutatingAdmissionPolicy | $KUBECTL apply -f - >/dev/null
fi
"$bin" controller --scim-url "http://127.0.0.1:$p/scim/v2" --token-file "$work/token" \
  --metrics-listen "127.0.0.1:$mp" "${tuning[@]}" > "$work/operator.log" 2>&1 &
op=$!; pids+=($op)
wait_http "http://127.0.0.1:$mp/readyz"
say "operator: $users ScimUsers, $teams ManagedTeams of $members, concurrency $conc (load $(loadavg))"
la=$(loadavg)
r0=$(reconciles "http://127.0.0.1:$mp")
procs=(etcd="$ETCD_PID" kube_apiserver="$KUBE_APISERVER_PID" scim_server="$server" operator="$op")
s0=$(cpu_snapshot "${procs[@]}")
a0=$(api_requests)
profile operator
out=$(run_load apply bench-operator "$users" "$teams" "$members" "$conc" "$timeout")
cpu=$(cpu_json "$s0" "$(cpu_snapshot "${procs[@]}")")
api=$(api_delta "$a0" "$(api_requests)")
r1=$(reconciles "http://127.0.0.1:$mp")
say "operator: $out; CPU seconds: $cpu; API requests: $api"
rss_busy=$(awk '/VmHWM/ {print $2}' "/proc/$op/status")
say "idle for ${idle}s"
c0=$(cpu_ticks "$op"); t0=$(date +%s.%N)
sleep "$idle"
c1=$(cpu_ticks "$op"); t1=$(date +%s.%N)
r2=$(reconciles "http://127.0.0.1:$mp")
rss=$(awk '/VmHWM/ {print $2}' "/proc/$op/status")
idle_pct=$(awk -v a="$c0" -v b="$c1" -v hz="$hz" -v s="$t0" -v e="$t1" 'BEGIN { printf "%.3f", 100 * (b - a) / hz / (e - s) }')
all=$(printf '%s' "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["all_ready_s"])')
rps=$(awk -v n=$((r1 - r0)) -v s="$all" 'BEGIN { printf "%.1f", n / s }')
errors=$(curl -fsS "http://127.0.0.1:$mp/metrics" | awk '/^scim_operator_reconcile_errors_total/ {s += $2} END {print s + 0}')
echo "{\"target\":\"operator\",\"workload\":\"apply\",$common,\"loadavg_before\":\"$la\",\"flags\":\"${tuning[*]}\",\"finalizer_policy\":$([ "$finalizer_policy" = 1 ] && echo true || echo false),\"result\":$out,\"cpu_s\":$cpu,\"api_requests\":$api,\"reconciles\":$((r1 - r0)),\"reconciles_per_s\":$rps,\"reconcile_errors\":$errors,\"peak_rss_kb_at_ready\":$rss_busy,\"peak_rss_kb\":$rss,\"idle_s\":$idle,\"idle_cpu_pct\":$idle_pct,\"idle_reconciles\":$((r2 - r1)),\"loadavg_after\":\"$(loadavg)\"}" >> "$results"
say "operator: $((r1 - r0)) reconciles ($rps/s), $errors errors, peak RSS $((rss / 1024)) MiB, idle CPU $idle_pct% of a core"
