#!/usr/bin/env bash
# Installs scim-operator with Helm the way users do and provisions the examples: the image built
# from the Dockerfile, the chart, ScimUsers, ManagedTeams and a RoleMapping, ending with
# `kubectl get scimusers,managedteams,rolemappings` Ready and the SCIM URL and key an identity
# provider needs. Stays up until Ctrl-C when run from a terminal.
#
# Where it installs:
#   - SCIM_IMAGE=registry.example.com/scim-operator:TAG set (an image you built from the
#     Dockerfile and pushed, see README "Install") and the current kubeconfig answering: that
#     cluster;
#   - otherwise a local node on this machine (root; tests/env/control-plane.sh start --with-node:
#     kubelet, containerd, kube-proxy and CoreDNS on an isolated bridge), with the image built by
#     tests/env/image.sh and imported into it. Stopped again on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
ns=scim-system
rel=scim
full=scim-scim-operator
work=$(mktemp -d)
cp_dir=""
pf_pid=""
cleanup() {
  [ -n "$pf_pid" ] && kill "$pf_pid" 2>/dev/null || true
  [ -n "$cp_dir" ] && bash "$root/tests/env/control-plane.sh" stop "$cp_dir" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "==> Kubernetes and the image"
if [ -n "${SCIM_IMAGE:-}" ] && command -v kubectl >/dev/null && kubectl version --request-timeout=5s >/dev/null 2>&1; then
  KUBECTL=kubectl
  HELM=${HELM:-helm}
  image=$SCIM_IMAGE
  pull=IfNotPresent
  echo "    the cluster of the current kubeconfig, image $image"
else
  [ "$(id -u)" = 0 ] || { echo "a local node needs root (or set SCIM_IMAGE and a kubeconfig for your cluster)" >&2; exit 1; }
  bash tests/env/control-plane.sh build --with-node
  cp_dir="$work/cluster"
  bash tests/env/control-plane.sh start "$cp_dir" --with-node >/dev/null
  # shellcheck disable=SC1091
  source "$cp_dir/env"
  echo "    a local node ($NODE_NAME, kubeconfig: $KUBECONFIG); building the image from the Dockerfile"
  image=$(bash tests/env/image.sh "$cp_dir" | tail -n 1)
  pull=Never
fi

echo "==> helm install $rel charts/scim-operator ($image)"
$HELM upgrade --install "$rel" charts/scim-operator --namespace "$ns" --create-namespace \
  --set "image.repository=${image%:*}" --set "image.tag=${image##*:}" --set "image.pullPolicy=$pull" \
  --set "operator.trustedNamespaces={default}" --wait --timeout 5m > "$work/notes.txt"

echo "==> examples"
$KUBECTL apply -f examples/scimuser.yaml -f examples/managedteam.yaml -f examples/rolemapping.yaml >/dev/null
$KUBECTL wait --for=condition=Ready --timeout=120s scimuser --all -n default >/dev/null
$KUBECTL wait --for=condition=Ready --timeout=120s managedteam --all -n default >/dev/null
$KUBECTL wait --for=condition=Ready --timeout=120s rolemapping --all >/dev/null
$KUBECTL get scimusers,managedteams,rolemappings -A

echo
echo "==> for an identity provider (as the chart's NOTES say)"
sed -n '/^SCIM base URL/,/^  http/p' "$work/notes.txt"
# A key of its own for the identity provider (the server's binary, run in its pod; no shell needed).
idp_key=$($KUBECTL -n "$ns" exec "statefulset/$full-server" -- scim-operator keys create --name okta | tail -n 1)
echo "Bearer key for Okta (shown once): $idp_key"

if [ -t 0 ]; then
  $KUBECTL -n "$ns" port-forward "svc/$full-server" 18080:8080 >"$work/port-forward.log" 2>&1 &
  pf_pid=$!
  sleep 1
  echo "From this machine: http://127.0.0.1:18080/scim/v2 (kubectl port-forward). Ctrl-C stops everything."
  wait "$pf_pid" || true
fi
