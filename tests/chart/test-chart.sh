#!/usr/bin/env bash
# Checks the Helm chart against a real API server: lint, render (default and non-default
# values), the public address (tests/chart/public-address.sh), server-side dry-run, a real
# install, least-privilege RBAC of the operator's ServiceAccount, and one end-to-end scenario
# with the operator running under that identity.
# Expects the environment of `tests/env/control-plane.sh start` (KUBECONFIG, HELM, KUBECTL...).
set -euo pipefail
cd "$(dirname "$0")/../.."
chart=charts/scim-operator
: "${KUBECTL:?source the control plane env first}" "${HELM:?}" "${KUBE_APISERVER_URL:?}" "${KUBE_CA_FILE:?}"
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
say() { printf '[chart] %s\n' "$*"; }
fail() { printf '[chart] FAILED: %s\n' "$*" >&2; exit 1; }

say "CRDs in the chart are the generated ones"
diff -r crds "$chart/crds" >/dev/null || fail "charts/scim-operator/crds differs from crds/ (copy crds/ into the chart)"

say "helm lint"
$HELM lint "$chart" >/dev/null
$HELM lint "$chart" -f "$chart/ci/non-default-values.yaml" >/dev/null

say "every value is documented in the chart README"
python3 - "$chart" <<'PY' || fail "values.yaml has values the chart README does not name"
import re, sys, yaml
chart = sys.argv[1]
named = set(re.findall(r"`([a-zA-Z][\w.]*)`", open(f"{chart}/README.md").read()))
def leaves(values, prefix=""):
    for key, value in values.items():
        path = prefix + key
        # A map the README names as a whole (resources, annotations...) counts as one value.
        if isinstance(value, dict) and value and path not in named:
            yield from leaves(value, path + ".")
        else:
            yield path
missing = [p for p in leaves(yaml.safe_load(open(f"{chart}/values.yaml"))) if p not in named]
assert not missing, f"not in the chart README: {missing}"
PY

say "helm template, default and non-default values"
$HELM template scim "$chart" --namespace scim-system > "$work/default.yaml"
$HELM template scim "$chart" --namespace scim-system -f "$chart/ci/non-default-values.yaml" > "$work/custom.yaml"
grep -q "kind: StatefulSet" "$work/default.yaml" || fail "default install should run the server as a StatefulSet with a volume"
grep -q "kind: Deployment" "$work/custom.yaml" && grep -q "kind: PodDisruptionBudget" "$work/custom.yaml" || fail "external database should give a Deployment with a PDB"
grep -q "kind: ServiceMonitor" "$work/custom.yaml" && grep -q "kind: NetworkPolicy" "$work/custom.yaml" || fail "optional objects missing"
grep -q 'SCIM_OPERATOR_LEADER_ELECTION' "$work/custom.yaml" && grep -A1 'SCIM_OPERATOR_LEADER_ELECTION' "$work/custom.yaml" | grep -q '"true"' || fail "leader election should be on with 2 operator replicas"
for f in default custom; do
  grep -q 'readOnlyRootFilesystem: true' "$work/$f.yaml" && grep -q 'runAsNonRoot: true' "$work/$f.yaml" || fail "$f: pods must be hardened"
done

say "the finalizer policy: rendered only where the cluster serves MutatingAdmissionPolicy, at the API version it serves"
mapi=admissionregistration.k8s.io
! grep -q "kind: MutatingAdmissionPolicy" "$work/default.yaml" || fail "a render without the API lists a MutatingAdmissionPolicy"
$HELM template scim "$chart" --namespace scim-system --api-versions $mapi/v1/MutatingAdmissionPolicy \
  --api-versions $mapi/v1beta1/MutatingAdmissionPolicy > "$work/map.yaml"
[ "$(grep -c "^apiVersion: $mapi/v1$" "$work/map.yaml")" = 2 ] || fail "the policy and its binding should use $mapi/v1 where it is served"
$HELM template scim "$chart" --namespace scim-system --api-versions $mapi/v1/MutatingAdmissionPolicy \
  --set operator.finalizerPolicy=false | grep -q "kind: MutatingAdmissionPolicy" && fail "operator.finalizerPolicy=false still renders the policy"

say "alerts: promtool test rules on the rendered PrometheusRule"
if ! command -v promtool >/dev/null; then
  # Debian's prometheus package ships promtool.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null; } \
    || fail "promtool is missing and the prometheus package could not be installed"
fi
$HELM template scim "$chart" --namespace scim-system --set monitoring.prometheusRule.enabled=true --set monitoring.dashboard.enabled=true \
  --set serviceMonitor.enabled=true > "$work/monitoring.yaml"
python3 - "$work/monitoring.yaml" "$work" <<'PY'
import json, sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
kinds = {d["kind"] for d in docs}
assert {"PrometheusRule", "PodMonitor", "ConfigMap"} <= kinds, kinds
rule = next(d for d in docs if d["kind"] == "PrometheusRule")
yaml.safe_dump(rule["spec"], open(sys.argv[2] + "/rules.yaml", "w"))
board = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-dashboard"))
assert board["metadata"]["labels"].get("grafana_dashboard") == "1", "the sidecar label"
json.dump(json.loads(board["data"]["scim-operator.json"]), open(sys.argv[2] + "/dashboard.json", "w"))
PY
promtool check rules "$work/rules.yaml" >/dev/null || fail "promtool check rules"
cp tests/chart/alerts-test.yaml "$work/alerts-test.yaml"
promtool test rules "$work/alerts-test.yaml" >"$work/promtool.log" 2>&1 || { cat "$work/promtool.log" >&2; fail "promtool test rules"; }
$HELM template scim "$chart" --namespace scim-system | grep -qE "kind: (PrometheusRule|PodMonitor)|grafana_dashboard" \
  && fail "monitoring objects rendered without being asked for"

say "invitation links follow the public URL; metrics on a port of their own"
render() { $HELM template scim "$chart" --namespace scim-system "$@"; }
server_env() { render "$@" | awk '/^kind: (StatefulSet|Deployment)/{k=$2} /name: scim-scim-operator-server$/{s=1} /^---/{s=0} s' ; }
invitation_url() { server_env "$@" | grep -A1 'name: SCIM_OPERATOR_INVITATION_URL' | sed -n 's/.*value: "\(.*\)"/\1/p'; }
[ -z "$(invitation_url)" ] || fail "without server.baseUrl the chart should leave the invitation URL to the server"
got=$(invitation_url --set server.baseUrl=https://scim.example.com/scim/v2/)
[ "$got" = "https://scim.example.com/invitations" ] || fail "invitation URL from server.baseUrl: got '$got'"
got=$(invitation_url --set server.baseUrl=https://example.com/idp/scim/v2)
[ "$got" = "https://example.com/idp/invitations" ] || fail "invitation URL keeps a path prefix: got '$got'"
got=$(invitation_url --set server.baseUrl=https://scim.example.com/scim/v2 --set invitations.url=https://join.example.com/i)
[ "$got" = "https://join.example.com/i" ] || fail "invitations.url wins: got '$got'"
render --set invitations.url=localhost >/dev/null 2>&1 && fail "invitations.url must be an http(s) URL"
render --set metrics.port=9090 --set serviceMonitor.enabled=true > "$work/metrics.yaml"
server_env --set metrics.port=9090 | grep -A1 'SCIM_OPERATOR_METRICS_LISTEN' | grep -q '"0.0.0.0:9090"' || fail "metrics.port should set --metrics-listen"
grep -B2 -A2 'port: 9090' "$work/metrics.yaml" | grep -q 'name: metrics' || fail "metrics.port should add a Service port named metrics"
grep -A1 'endpoints:' "$work/metrics.yaml" | grep -q 'port: metrics' || fail "the ServiceMonitor should scrape the metrics port"
grep -A1 'endpoints:' "$work/default.yaml" "$work/custom.yaml" | grep -q 'port: metrics' && fail "without metrics.port the ServiceMonitor scrapes the API port"
server_env | grep -q SCIM_OPERATOR_METRICS_LISTEN && fail "without metrics.port the server serves /metrics beside the API"

say "one public address: Ingress, HTTPRoute (dry-run with the Gateway API CRDs), console values, refused values"
bash tests/chart/public-address.sh

say "server-side dry-run of the rendered manifests"
$KUBECTL create namespace scim-system --dry-run=client -o yaml | $KUBECTL apply -f - >/dev/null
$KUBECTL apply --server-side -f crds/ >/dev/null
$KUBECTL apply --dry-run=server -n scim-system -f "$work/default.yaml" >/dev/null
# ServiceMonitor needs the Prometheus Operator's CRD, absent here; everything else must apply.
$HELM template scim "$chart" --namespace scim-system -f "$chart/ci/non-default-values.yaml" --set serviceMonitor.enabled=false \
  | $KUBECTL apply --dry-run=server -n scim-system -f - >/dev/null

say "helm install (with leader election, so the Lease permissions are exercised too)"
# The key Secret outlives a release (README: uninstall); start from none, as a first install does.
$KUBECTL -n scim-system delete secret scim-scim-operator-key --ignore-not-found >/dev/null
$HELM install scim "$chart" --namespace scim-system --set operator.leaderElection=true >/dev/null
sa="system:serviceaccount:scim-system:scim-scim-operator-operator"
$KUBECTL -n scim-system get statefulset scim-scim-operator-server >/dev/null
$KUBECTL -n scim-system get deployment scim-scim-operator-operator >/dev/null

say "no render carries a key (Argo CD renders with helm template): two renders are identical"
$HELM template scim "$chart" --namespace scim-system > "$work/render-1.yaml"
$HELM template scim "$chart" --namespace scim-system > "$work/render-2.yaml"
cmp -s "$work/render-1.yaml" "$work/render-2.yaml" || fail "two renders of the same values differ: $(diff "$work/render-1.yaml" "$work/render-2.yaml" | head -5)"
! grep -q "^kind: Secret" "$work/render-1.yaml" || fail "the chart renders a Secret"
! $KUBECTL -n scim-system get secret scim-scim-operator-key >/dev/null 2>&1 || fail "helm install made the key Secret (the operator makes it)"
grep -q "SCIM_OPERATOR_BOOTSTRAP_KEY_ROTATION" "$work/render-1.yaml" || fail "the operator is not told to make the key Secret"
$HELM template scim "$chart" --namespace scim-system --set bootstrapKey.existingSecret=mine | grep -q "SCIM_OPERATOR_BOOTSTRAP_KEY_SECRET" \
  && fail "with bootstrapKey.existingSecret the operator would still make a Secret"

say "least privilege of the operator's ServiceAccount"
can() { $KUBECTL auth can-i --as="$sa" "$@" 2>/dev/null || true; }
for yes in "watch scimusers.scim.dev --all-namespaces" "patch managedteams.scim.dev -n any" "patch scimusers.scim.dev --subresource=status -n any" \
           "update rolemappings.scim.dev --subresource=finalizers" "create events.events.k8s.io -n any" \
           "watch scimtargets.scim.dev --all-namespaces" "patch clusterscimtargets.scim.dev --subresource=status" \
           "get secrets -n any" "get namespaces" "watch namespaces" "create configmaps -n scim-system" "delete configmaps -n scim-system"; do
  # shellcheck disable=SC2086
  [ "$(can $yes)" = yes ] || fail "operator cannot: $yes"
done
for yes in "create secrets -n scim-system" "update secrets/scim-scim-operator-key -n scim-system"; do
  # shellcheck disable=SC2086
  [ "$(can $yes)" = yes ] || fail "operator cannot: $yes (it makes the bootstrap key Secret)"
done
for no in "update secrets/other -n scim-system" "create secrets -n default" "patch secrets -n any" "delete secrets -n any" "list pods -n scim-system" "delete namespaces" \
          "create scimusers.scim.dev -n any" "delete scimusers.scim.dev -n any" "get configmaps -n kube-system" \
          "patch scimtargets.scim.dev -n any" "delete clusterscimtargets.scim.dev"; do
  # shellcheck disable=SC2086
  [ "$(can $no)" = no ] || fail "operator may: $no"
done

serves_map=0
$KUBECTL api-resources --api-group=$mapi -o name | grep -q '^mutatingadmissionpolicies\.' && serves_map=1
if ((serves_map)); then
  say "the API server sets the operator's finalizer when a ScimUser is created (the chart's policy)"
  $KUBECTL get mutatingadmissionpolicy scim-scim-operator-finalizer >/dev/null
  got=""
  # A new policy takes effect once the API server has compiled it.
  for _ in $(seq 1 30); do
    got=$($KUBECTL -n default create --dry-run=server -o jsonpath='{.metadata.finalizers}' -f examples/scimuser.yaml 2>/dev/null | head -c 200 || true)
    [[ $got == *scim.dev/cleanup* ]] && break
    sleep 1
  done
  [[ $got == *scim.dev/cleanup* ]] || fail "a ScimUser created under the chart's policy has finalizers '$got'"
else
  say "this API server serves no MutatingAdmissionPolicy: the chart installed none"
  ! $HELM get manifest scim -n scim-system | grep -q "kind: MutatingAdmissionPolicy" || fail "policy installed on a cluster without the API"
fi

say "the operator, under its own ServiceAccount, through one scenario"
token=$($KUBECTL -n scim-system create token scim-scim-operator-operator --duration=1h)
cat > "$work/kubeconfig" <<KUBE
apiVersion: v1
kind: Config
clusters: [{name: test, cluster: {server: "$KUBE_APISERVER_URL", certificate-authority: "$KUBE_CA_FILE"}}]
users: [{name: operator, user: {token: "$token"}}]
contexts: [{name: operator, context: {cluster: test, user: operator}}]
current-context: operator
KUBE
bin="${CARGO_TARGET_DIR:-target}/debug/scim-operator"
[ -x "$bin" ] || cargo build --locked --quiet
"$bin" keys create --db "$work/scim.db" --name operator --preset operator | tail -n 1 > "$work/token"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin" serve --db "$work/scim.db" --listen "127.0.0.1:$port" > "$work/server.log" 2>&1 &
pids+=($!)
KUBECONFIG="$work/kubeconfig" "$bin" controller --scim-url "http://127.0.0.1:$port/scim/v2" --token-file "$work/token" \
  --leader-election --lease-namespace scim-system --operator-namespace scim-system --metrics-listen "127.0.0.1:$mport" \
  --bootstrap-key-secret scim-scim-operator-key > "$work/operator.log" 2>&1 &
pids+=($!)
ns=chart-e2e
$KUBECTL create namespace $ns --dry-run=client -o yaml | $KUBECTL apply -f - >/dev/null
$KUBECTL -n $ns apply -f examples/scimuser.yaml >/dev/null
if ! $KUBECTL -n $ns wait --for=condition=Ready --timeout=60s scimuser/ada scimuser/grace >/dev/null; then
  grep -E "WARN|ERROR" "$work/operator.log" | tail -5 >&2
  fail "ScimUsers did not become Ready under the chart's RBAC"
fi
if ((serves_map)); then
  # The finalizer came with the create, set by admission, which no field manager records; a
  # PATCH of the operator's would have made it the finalizers' manager.
  owners=$($KUBECTL -n $ns get scimuser ada -o json --show-managed-fields | python3 -c '
import json, sys
u = json.load(sys.stdin)
print(" ".join(sorted({m["manager"] for m in u["metadata"]["managedFields"] if "f:finalizers" in m.get("fieldsV1", {}).get("f:metadata", {})})))')
  [ -z "$owners" ] || fail "the finalizers of ScimUser ada were written by '$owners' (the operator patched them), wanted set at admission"
  [[ $($KUBECTL -n $ns get scimuser ada -o jsonpath='{.metadata.finalizers}') == *scim.dev/cleanup* ]] || fail "ScimUser ada has no finalizer"
fi
say "the operator, under its own ServiceAccount, made the bootstrap key Secret"
made=$($KUBECTL -n scim-system get secret scim-scim-operator-key -o jsonpath='{.data.token}' | base64 -d)
[ "${#made}" -ge 32 ] || fail "the operator's bootstrap key Secret holds no usable token"
$KUBECTL -n $ns delete scimuser ada grace --timeout=60s >/dev/null || { tail -20 "$work/operator.log" >&2; fail "finalizers not removed"; }
grep -q "leading" "$work/operator.log" || fail "the operator did not take the lease"
# The chart's ClusterScimTarget names the release's server Service, which has no endpoints on a
# control plane without nodes: the operator read the key Secret under its RBAC (not
# SecretMissing) and wrote the status (ScimUnavailable).
reason=""
for _ in $(seq 1 60); do
  reason=$($KUBECTL get clusterscimtarget default -o jsonpath='{.status.conditions[?(@.type=="Ready")].reason}' 2>/dev/null || true)
  [ -n "$reason" ] && break
  sleep 1
done
[ "$reason" = ScimUnavailable ] || { tail -20 "$work/operator.log" >&2; fail "ClusterScimTarget default: Ready reason '$reason', wanted ScimUnavailable"; }
$KUBECTL -n scim-system get lease scim-operator >/dev/null

say "every metric the alerts and the dashboard use is one the server or the operator exports"
# A family without samples yet is not in /metrics: the names registered in the source count too.
curl -fsS "http://127.0.0.1:$port/metrics" > "$work/server.metrics" || fail "scraping the server"
curl -fsS "http://127.0.0.1:$mport/metrics" > "$work/operator.metrics" || fail "scraping the operator"
python3 - "$work" <<'PY' || fail "the alerts or the dashboard use a metric nobody exports"
import json, re, sys, yaml
work = sys.argv[1]
suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "gauge": [""]}
exported = {"up"}  # Prometheus's own
scraped = set()
for f in ("server.metrics", "operator.metrics"):
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)", open(f"{work}/{f}").read(), re.M):
        scraped |= {name + s for s in suffixes.get(kind, [""])}
registered = set()
for f in ("src/server/metrics.rs", "src/operator/metrics.rs"):
    src = open(f).read()
    prefix = re.search(r'Registry::with_prefix\("(\w+)"\)', src).group(1)
    kinds = {v: (a or b).lower() for v, a, b in re.findall(r"let (\w+) = (?:Family::<\w+, (\w+)>|(\w+)::)", src)}
    for name, var in re.findall(r'register\(\s*"(\w+)",\s*"(?:[^"\\]|\\.)*",\s*(\w+)\.clone\(\)', src):
        registered |= {f"{prefix}_{name}{s}" for s in suffixes[kinds[var]]}
assert scraped <= registered | {"up"}, f"the source parse misses {sorted(scraped - registered)}"
exported |= scraped | registered
def used(text):
    return set(re.findall(r"\b(scim_[a-z0-9_]+|up)\s*[{\[(,]", text))
exprs = []
board = json.load(open(f"{work}/dashboard.json"))
def walk(panels):
    for p in panels:
        exprs.extend(t["expr"] for t in p.get("targets", []))
        walk(p.get("panels", []))
walk(board["panels"])
exprs.extend(v["query"]["query"] for v in board["templating"]["list"] if isinstance(v.get("query"), dict))
rules = yaml.safe_load(open(f"{work}/rules.yaml"))
exprs.extend(r["expr"] for g in rules["groups"] for r in g["rules"])
names = set().union(*map(used, exprs))
missing = sorted(names - exported)
print(f"[chart] {len(names)} metric names used, {len(exported)} exported; missing: {missing}")
assert len(names) >= 10 and not missing
PY

say "the binary takes the console environment the chart renders, and the login-link command NOTES print works in it"
# The server's environment for a console with single sign-on, with the pod's paths moved here.
$HELM template scim "$chart" --namespace scim-system --set publicAddress.host=scim.example.com --set console.enabled=true \
  --set console.oidc.issuer=https://login.example.com/oauth2/default --set console.oidc.clientId=scim-console \
  --set console.oidc.clientSecret.existingSecret=scim-console-oidc --set console.oidc.claim=preferred-username \
  | python3 -c '
import shlex, sys, yaml
docs = [d for d in yaml.safe_load_all(sys.stdin) if d]
server = next(d for d in docs if d["kind"] == "StatefulSet")
for e in server["spec"]["template"]["spec"]["containers"][0]["env"]:
    print("export %s=%s" % (e["name"], shlex.quote(e["value"])))
' > "$work/console.env"
grep -q SCIM_OPERATOR_CONSOLE_OIDC_CLIENT_SECRET_FILE "$work/console.env" || fail "no console environment rendered"
cport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
echo "a-client-secret" > "$work/client-secret"
(
  # shellcheck disable=SC1091
  source "$work/console.env"
  export SCIM_OPERATOR_LISTEN="127.0.0.1:$cport" SCIM_OPERATOR_DB="$work/console.db" \
    SCIM_OPERATOR_BOOTSTRAP_KEY_FILE="$work/token" SCIM_OPERATOR_CONSOLE_OIDC_CLIENT_SECRET_FILE="$work/client-secret"
  exec "$bin" serve
) > "$work/console-server.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do curl -fsS "http://127.0.0.1:$cport/readyz" >/dev/null 2>&1 && break; sleep 0.2; done
curl -fsS "http://127.0.0.1:$cport/console/signin" > "$work/signin.html" || { cat "$work/console-server.log" >&2; fail "the console did not start with the chart's environment"; }
grep -q 'href="/console/login"' "$work/signin.html" || fail "the console does not offer single sign-on with the chart's OIDC values"
grep -q '"single_sign_on":true' "$work/console-server.log" && grep -q 'https://scim.example.com/console' "$work/console-server.log" \
  || { cat "$work/console-server.log" >&2; fail "the server did not report the console URL and single sign-on"; }
curl -fsS -X POST "http://127.0.0.1:$cport/scim/v2/Users" -H "Authorization: Bearer $(cat "$work/token")" \
  -H 'Content-Type: application/scim+json' \
  -d '{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"first.admin@example.com"}' >/dev/null \
  || fail "provisioning the first administrator"
link=$(
  # shellcheck disable=SC1091
  source "$work/console.env"
  SCIM_OPERATOR_DB="$work/console.db" "$bin" console login-link --user first.admin@example.com 2>"$work/link.err" | tail -n 1
)
[[ $link == https://scim.example.com/console/link/* ]] || fail "console login-link in the chart's environment printed '$link'"

say "uninstall"
$HELM uninstall scim --namespace scim-system >/dev/null
$KUBECTL delete namespace $ns --wait=false >/dev/null

say "CRDs on upgrade: helm upgrade leaves them; the documented server-side apply upgrades them"
# The previous chart (the main branch's), then this chart with a test-only printer column.
prev="$work/prev" next="$work/next"
mkdir -p "$prev" "$next"
git archive main "$chart" | tar -x -C "$prev" || fail "reading the previous chart from the main branch"
mkdir -p "$next/charts" && cp -r "$chart" "$next/charts/"
python3 - "$next/$chart/crds/scimusers.scim.dev.yaml" <<'PY'
import sys, yaml
path = sys.argv[1]
crd = yaml.safe_load(open(path))
for v in crd["spec"]["versions"]:
    v.setdefault("additionalPrinterColumns", []).append({"name": "UpgradeTest", "type": "string", "jsonPath": ".spec.userName"})
yaml.safe_dump(crd, open(path, "w"), sort_keys=False)
PY
columns() { $KUBECTL get crd scimusers.scim.dev -o jsonpath='{.spec.versions[0].additionalPrinterColumns[*].name}'; }
$HELM install scimup "$prev/$chart" --namespace scim-upgrade --create-namespace >/dev/null
columns | grep -qw UpgradeTest && fail "the test column exists before the upgrade"
$HELM upgrade scimup "$next/$chart" --namespace scim-upgrade >/dev/null
columns | grep -qw UpgradeTest && fail "helm upgrade changed a CRD: the README's procedure is out of date"
$KUBECTL apply --server-side --force-conflicts -f "$next/$chart/crds/" >/dev/null
$HELM upgrade scimup "$next/$chart" --namespace scim-upgrade >/dev/null
columns | grep -qw UpgradeTest || fail "the documented server-side apply did not upgrade the CRD"
$KUBECTL -n scim-upgrade create -f - >/dev/null <<YAML || fail "the upgraded CRD does not serve ScimUsers"
apiVersion: scim.dev/v1alpha1
kind: ScimUser
metadata: {name: upgraded}
spec: {userName: upgraded@example.com}
YAML
$KUBECTL -n scim-upgrade get scimusers -o wide | grep -q "upgraded@example.com" || fail "the new column is not printed"
# No operator runs for this release (its pods need a node), and the chart's policy gave the
# user the finalizer at creation: remove it by hand, as for any finalizer whose controller is gone.
$KUBECTL -n scim-upgrade patch scimuser upgraded --type merge -p '{"metadata":{"finalizers":null}}' >/dev/null
$KUBECTL -n scim-upgrade delete scimuser upgraded --timeout=60s >/dev/null
$HELM uninstall scimup --namespace scim-upgrade >/dev/null
# Back to the generated CRDs for whatever runs next on this control plane.
$KUBECTL apply --server-side --force-conflicts -f crds/ >/dev/null
columns | grep -qw UpgradeTest && fail "restoring the generated CRDs"
$KUBECTL delete namespace scim-upgrade --wait=false >/dev/null
say "passed"
