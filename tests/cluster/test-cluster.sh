#!/usr/bin/env bash
# The chart as users install it, on a real node: the image built from the Dockerfile, the
# server StatefulSet and the operator Deployment Ready, the operator (in-cluster config, the
# chart's ServiceAccount and RBAC) provisioning examples/, Okta traffic through the server's
# Service with the key from the chart's Secret, the server pod replaced on the same PVC,
# `helm upgrade` keeping key and data, two operator replicas handing over leadership, and
# `helm uninstall` leaving what the chart's README says.
#
# Usage: tests/cluster/test-cluster.sh IMAGE
# Expects the environment of `tests/env/control-plane.sh start DIR --with-node` (sourced
# DIR/env) and IMAGE imported into the node by `tests/env/image.sh DIR`.
set -euo pipefail
cd "$(dirname "$0")/../.."
image=${1:?usage: test-cluster.sh IMAGE (from tests/env/image.sh)}
: "${KUBECTL:?source the env of a control plane started with --with-node}" "${HELM:?}" "${NODE_NAME:?started without --with-node}"
ns=scim-system
rel=scim
full=scim-scim-operator
chart=charts/scim-operator
k() { "$KUBECTL" "$@"; }
work=$(mktemp -d)
pf_pid=""
cleanup() {
  [[ -n $pf_pid ]] && kill "$pf_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
t_start=$SECONDS
say() { printf '[cluster] %s (+%ss)\n' "$*" "$((SECONDS - t_start))"; }
diagnose() {
  k get pods,pvc,statefulsets,deployments -n "$ns" -o wide >&2 || true
  k get events -n "$ns" --sort-by=.lastTimestamp 2>/dev/null | tail -20 >&2 || true
  local p
  for p in $(k get pods -n "$ns" -o name 2>/dev/null); do
    printf -- '--- logs of %s\n' "$p" >&2
    k logs -n "$ns" "$p" --tail=20 >&2 2>&1 || true
  done
}
fail() { printf '[cluster] FAILED: %s\n' "$*" >&2; diagnose; exit 1; }

repo=${image%:*}
tag=${image##*:}
install_args=(--namespace "$ns" --set "image.repository=$repo" --set "image.tag=$tag"
  --set image.pullPolicy=Never --set "operator.trustedNamespaces={default}")

# Opens a port-forward to the server's Service; sets $base.
forward() {
  [[ -n $pf_pid ]] && { kill "$pf_pid" 2>/dev/null || true; wait "$pf_pid" 2>/dev/null || true; }
  : >"$work/pf.log"
  # kubectl itself, not the k function: a function sent to the background runs in a subshell,
  # and $! would be that subshell, whose kill leaves the port-forward running after the test.
  "$KUBECTL" -n "$ns" port-forward "svc/$full-server" 0:8080 >"$work/pf.log" 2>&1 &
  pf_pid=$!
  local port="" i
  for ((i = 0; i < 100; i++)); do
    port=$(sed -n 's/^Forwarding from 127\.0\.0\.1:\([0-9]*\) .*/\1/p' "$work/pf.log" | head -n 1)
    [[ -n $port ]] && break
    kill -0 "$pf_pid" 2>/dev/null || fail "port-forward exited: $(cat "$work/pf.log")"
    sleep 0.1
  done
  [[ -n $port ]] || fail "port-forward printed no port: $(cat "$work/pf.log")"
  base="http://127.0.0.1:$port/scim/v2"
  for ((i = 0; i < 50; i++)); do
    curl -fsS --max-time 3 "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  fail "the server is not ready through the port-forward"
}
scim() { # METHOD PATH [BODY] -> body on stdout, status in $work/status
  curl -sS --max-time 10 -o "$work/resp" -w '%{http_code}' -X "$1" -H "Authorization: Bearer $(cat "$work/token")" \
    -H 'Content-Type: application/scim+json' ${3:+--data "$3"} "$base$2" >"$work/status"
  cat "$work/resp"
}
key() { k -n "$ns" get secret "$full-key" -o jsonpath='{.data.token}' | base64 -d; }
wait_rollout() {
  k -n "$ns" rollout status "statefulset/$full-server" --timeout=180s >/dev/null ||
    fail "server StatefulSet not Ready"
  k -n "$ns" rollout status "deployment/$full-operator" --timeout=180s >/dev/null ||
    fail "operator Deployment not Ready"
}
lease_holder() { k -n "$ns" get lease scim-operator -o jsonpath='{.spec.holderIdentity}' 2>/dev/null || true; }

say "helm install $chart with $image"
k get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' | grep -qx True ||
  fail "node $NODE_NAME is not Ready"
"$HELM" install "$rel" "$chart" --create-namespace "${install_args[@]}" >/dev/null
wait_rollout
k -n "$ns" get pvc "data-$full-server-0" -o jsonpath='{.status.phase}' | grep -qx Bound || fail "server PVC not Bound"
uid=$(k -n "$ns" get pod "$full-server-0" -o jsonpath='{.spec.securityContext.runAsUser}')
[[ $uid == 65532 ]] || fail "server pod runs as '$uid'"

say "the operator, in-cluster, provisions examples/ to Ready"
k apply -f examples/scimuser.yaml -f examples/managedteam.yaml -f examples/rolemapping.yaml >/dev/null
k wait --for=condition=Ready --timeout=120s scimuser --all -n default >/dev/null ||
  { k get scimusers -A -o yaml >&2; fail "ScimUsers not Ready"; }
k wait --for=condition=Ready --timeout=120s managedteam --all -n default >/dev/null || fail "ManagedTeams not Ready"
k wait --for=condition=Ready --timeout=120s rolemapping --all >/dev/null || fail "RoleMappings not Ready"

say "Okta traffic through the server's Service (port-forward) with the chart's key"
key >"$work/token"
[[ $(wc -c <"$work/token") -ge 32 ]] || fail "the chart's key Secret holds no usable token"
forward
python3 tests/cluster/replay.py "$base" "$work/token" \
  tests/replays/okta_user_lifecycle_patch_mode.json tests/replays/okta_group_push.json ||
  fail "Okta replays failed through the Service"
scim GET "/Users?filter=userName%20eq%20%22ada%40example.com%22" | grep -q '"totalResults":1' ||
  fail "the operator's user ada@example.com is not in the server"
ids=()
for ((i = 0; i < 20; i++)); do
  body="{\"schemas\":[\"urn:ietf:params:scim:schemas:core:2.0:User\"],\"userName\":\"restart.$i@example.com\",\"active\":true}"
  id=$(scim POST /Users "$body" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])') ||
    fail "POST /Users: $(cat "$work/status") $(cat "$work/resp")"
  [[ $(cat "$work/status") == 201 ]] || fail "POST /Users answered $(cat "$work/status")"
  ids+=("$id")
done
check_users() { # every acknowledged user is still there
  local id
  for id in "${ids[@]}"; do
    scim GET "/Users/$id" >/dev/null
    [[ $(cat "$work/status") == 200 ]] || fail "$1: user $id answered $(cat "$work/status")"
  done
}

say "server pod deleted: back on the same PVC with every acknowledged user"
pv=$(k -n "$ns" get pvc "data-$full-server-0" -o jsonpath='{.spec.volumeName}')
old_uid=$(k -n "$ns" get pod "$full-server-0" -o jsonpath='{.metadata.uid}')
k -n "$ns" delete pod "$full-server-0" --wait=true --timeout=90s >/dev/null
for ((i = 0; i < 120; i++)); do
  new_uid=$(k -n "$ns" get pod "$full-server-0" -o jsonpath='{.metadata.uid}' 2>/dev/null || true)
  [[ -n $new_uid && $new_uid != "$old_uid" ]] && break
  sleep 0.5
done
[[ -n $new_uid && $new_uid != "$old_uid" ]] || fail "the StatefulSet did not recreate its pod"
k -n "$ns" wait --for=condition=Ready --timeout=120s "pod/$full-server-0" >/dev/null || fail "new server pod not Ready"
[[ $(k -n "$ns" get pvc "data-$full-server-0" -o jsonpath='{.spec.volumeName}') == "$pv" ]] || fail "the PVC changed volume"
forward
check_users "after the pod was replaced"

say "helm upgrade with a changed value keeps the key and the data"
key_before=$(key)
"$HELM" upgrade "$rel" "$chart" "${install_args[@]}" --set server.maxCount=500 >/dev/null
wait_rollout
k -n "$ns" get statefulset "$full-server" -o yaml | grep -A1 'SCIM_OPERATOR_MAX_COUNT' | grep -q '"500"' ||
  fail "the upgrade did not change server.maxCount"
[[ $(key) == "$key_before" ]] || fail "helm upgrade replaced the key"
forward
check_users "after helm upgrade"
scim GET "/Users?count=1" >/dev/null
[[ $(cat "$work/status") == 200 ]] || fail "the key no longer authenticates after the upgrade"

say "operator.replicas=2: one leader, both Ready, deleting the leader hands over"
"$HELM" upgrade "$rel" "$chart" "${install_args[@]}" --set server.maxCount=500 --set operator.replicas=2 >/dev/null
wait_rollout
sel="app.kubernetes.io/instance=$rel,app.kubernetes.io/component=operator"
# Pods of the previous ReplicaSet may still be terminating (and vanish while waited on): wait
# until exactly two pods that are not being deleted are Ready.
ops=()
for ((i = 0; i < 240; i++)); do
  mapfile -t ops < <(k -n "$ns" get pods -l "$sel" \
    -o jsonpath='{range .items[*]}{.metadata.name}{" "}{.metadata.deletionTimestamp}{" "}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' |
    awk '$2 == "True" && NF == 2 { print $1 }')
  [[ ${#ops[@]} == 2 ]] && break
  sleep 0.5
done
[[ ${#ops[@]} == 2 ]] || fail "expected 2 Ready operator pods, got: ${ops[*]}"
leader=""
for ((i = 0; i < 120; i++)); do
  leader=$(lease_holder)
  [[ " ${ops[*]} " == *" $leader "* ]] && break
  sleep 0.5
done
[[ " ${ops[*]} " == *" $leader "* ]] || fail "the lease holder '$leader' is none of ${ops[*]}"
leading=0
for p in "${ops[@]}"; do
  k -n "$ns" logs "$p" | grep -q '"leading"' && leading=$((leading + 1))
done
((leading == 1)) || fail "$leading operator pods say they are leading, wanted 1"
k -n "$ns" delete pod "$leader" --wait=true --timeout=90s >/dev/null
new_leader=""
for ((i = 0; i < 180; i++)); do
  new_leader=$(lease_holder)
  if [[ -n $new_leader && $new_leader != "$leader" ]] && k -n "$ns" get pod "$new_leader" >/dev/null 2>&1; then break; fi
  sleep 0.5
done
[[ -n $new_leader && $new_leader != "$leader" ]] || fail "leadership stayed with the deleted pod $leader"
k -n "$ns" wait --for=condition=Ready --timeout=120s pod -l "$sel" >/dev/null || fail "operator pods not Ready after handover"
# The new leader reconciles: a new ScimUser becomes Ready.
k -n default apply -f - >/dev/null <<'EOF'
apiVersion: scim.dev/v1alpha1
kind: ScimUser
metadata: {name: after-handover}
spec: {userName: after.handover@example.com}
EOF
k -n default wait --for=condition=Ready --timeout=120s scimuser/after-handover >/dev/null ||
  fail "the new leader $new_leader does not reconcile"
say "leader $leader -> $new_leader"

say "helm uninstall leaves the CRDs, the PVC and the key Secret (charts/scim-operator/README.md)"
k delete -f examples/scimuser.yaml -f examples/managedteam.yaml -f examples/rolemapping.yaml --timeout=120s >/dev/null
k -n default delete scimuser after-handover --timeout=120s >/dev/null
[[ -n $pf_pid ]] && { kill "$pf_pid" 2>/dev/null || true; wait "$pf_pid" 2>/dev/null || true; pf_pid=""; }
"$HELM" uninstall "$rel" --namespace "$ns" --wait --timeout 120s >/dev/null
for ((i = 0; i < 120; i++)); do
  [[ -z $(k -n "$ns" get pods -o name 2>/dev/null) ]] && break
  sleep 0.5
done
left=$(k -n "$ns" get all,secrets,configmaps,serviceaccounts,roles,rolebindings,pvc,poddisruptionbudgets,networkpolicies \
  -o name 2>/dev/null | grep -v -e '^configmap/kube-root-ca.crt$' -e '^serviceaccount/default$' | sort | tr '\n' ' ')
want="persistentvolumeclaim/data-$full-server-0 secret/$full-key "
[[ $left == "$want" ]] || fail "after uninstall the namespace holds '$left', the README says '$want'"
cluster_left=$(k get clusterroles,clusterrolebindings -l "app.kubernetes.io/instance=$rel" -o name 2>/dev/null | tr '\n' ' ')
[[ -z $cluster_left ]] || fail "cluster-scoped objects left: $cluster_left"
for crd in scimusers managedteams rolemappings; do
  k get crd "$crd.scim.dev" >/dev/null || fail "CRD $crd.scim.dev was removed"
done
say "passed"
