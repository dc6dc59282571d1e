#!/usr/bin/env bash
# Brings the whole thing up on this machine: the SCIM server on its embedded database, a
# Kubernetes control plane (unless the current kubeconfig reaches a cluster), the CRDs, the
# operator, and the examples; ends with `kubectl get scimusers,managedteams,rolemappings`
# showing them Ready. Stays up until Ctrl-C when run from a terminal.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
cache="${SCIM_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/scim-operator}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target}"
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

echo "==> building scim-operator"
cargo build --locked --quiet
bin="$CARGO_TARGET_DIR/debug/scim-operator"

echo "==> Kubernetes"
if command -v kubectl >/dev/null && kubectl version --request-timeout=5s >/dev/null 2>&1; then
  KUBECTL=kubectl
  echo "    using the cluster of the current kubeconfig"
else
  bash tests/env/control-plane.sh build
  cp_dir="$work/control-plane"
  bash tests/env/control-plane.sh start "$cp_dir" >/dev/null
  # shellcheck disable=SC1091
  source "$cp_dir/env"
  echo "    started a local control plane (kubeconfig: $KUBECONFIG)"
fi

echo "==> SCIM server on an embedded database"
"$bin" keys create --db "$work/scim.db" --name operator | tail -n 1 > "$work/token"
"$bin" serve --db "$work/scim.db" --listen 127.0.0.1:18080 > "$work/server.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 50); do curl -fsS http://127.0.0.1:18080/readyz >/dev/null 2>&1 && break; sleep 0.2; done

echo "==> CRDs and operator"
$KUBECTL apply --server-side -f crds/ >/dev/null
$KUBECTL wait --for=condition=Established crd/scimusers.scim.dev crd/managedteams.scim.dev crd/rolemappings.scim.dev >/dev/null
"$bin" controller --scim-url http://127.0.0.1:18080/scim/v2 --token-file "$work/token" \
  --metrics-listen 127.0.0.1:18081 --trusted-namespaces default > "$work/operator.log" 2>&1 &
pids+=($!)

echo "==> examples"
$KUBECTL apply -f examples/ >/dev/null
$KUBECTL wait --for=condition=Ready --timeout=60s scimuser --all -n default >/dev/null
$KUBECTL wait --for=condition=Ready --timeout=60s managedteam --all -n default >/dev/null
$KUBECTL wait --for=condition=Ready --timeout=60s rolemapping --all >/dev/null
$KUBECTL get scimusers,managedteams,rolemappings -A

if [ -t 0 ]; then
  echo
  echo "SCIM API: http://127.0.0.1:18080/scim/v2 (bearer token in $work/token); logs in $work. Ctrl-C stops everything."
  wait
fi
