#!/usr/bin/env bash
# What each kind of request on a ScimUser costs the API server (CPU from /proc), on a control
# plane of its own that serves MutatingAdmissionPolicy: N creates, GETs at their resourceVersion,
# finalizer PATCHes and status PATCHes (the operator's status and the ceiling's); then N creates
# again with the chart's finalizer policy installed (templates/finalizer-policy.yaml). Explains
# the operator benchmark's API server CPU (bench/operator.sh); not part of the test command.
#
# usage: bench/api_cost.sh RESULTS.jsonl   knobs: BENCH_COST_USERS (3000)
set -euo pipefail
cd "$(dirname "$0")/.."
results=${1:?usage: bench/api_cost.sh RESULTS.jsonl}
n=${BENCH_COST_USERS:-3000}
export KUBE_APISERVER_EXTRA_FLAGS="--feature-gates=MutatingAdmissionPolicy=true --runtime-config=admissionregistration.k8s.io/v1beta1=true"
bash tests/env/control-plane.sh build >/dev/null
dir=$(bash tests/env/control-plane.sh start)
trap 'bash tests/env/control-plane.sh stop "$dir" >/dev/null 2>&1' EXIT
# shellcheck disable=SC1091
. "$dir/env"
$KUBECTL apply --server-side -f crds/ >/dev/null
$KUBECTL wait --for=condition=Established crd/scimusers.scim.dev >/dev/null
# The control plane's CA signs the API server: the machine's CA bundle variables would override it.
run() { env -u REQUESTS_CA_BUNDLE -u CURL_CA_BUNDLE "$@" python3 bench/api_cost.py "$n" | tee -a "$results"; }
echo "{\"commit\":\"$(git rev-parse --short HEAD)\",\"users\":$n,\"loadavg_before\":\"$(cut -d' ' -f1-3 /proc/loadavg)\"}" >> "$results"
run NS=plain LABEL=without-policy PHASES=get_at_rv,finalizer_patch,status_patch
run NS=small LABEL=ceiling-status PHASES=status_small
$HELM template bench charts/scim-operator --show-only templates/finalizer-policy.yaml \
  --api-versions admissionregistration.k8s.io/v1beta1/MutatingAdmissionPolicy | $KUBECTL apply -f - >/dev/null
sleep 5 # the API server compiles a new policy before it applies it
run NS=policy LABEL=with-policy PHASES=get_at_rv
