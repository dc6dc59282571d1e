#!/usr/bin/env bash
# One public address (issue: Okta and Entra ID in the cloud, browsers and invitation e-mails all
# need the server over HTTPS): the chart's Ingress and HTTPRoute, the URLs that follow from
# publicAddress.host, the console's values, the values it refuses, and a server-side dry-run of
# the rendered objects against the real API server with the Gateway API CRDs applied.
# Expects the environment of `tests/env/control-plane.sh start` (KUBECTL, HELM); run by
# tests/chart/test-chart.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
chart=charts/scim-operator
: "${KUBECTL:?source the control plane env first}" "${HELM:?}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
say() { printf '[public-address] %s\n' "$*"; }
fail() { printf '[public-address] FAILED: %s\n' "$*" >&2; exit 1; }
render() { $HELM template scim "$chart" --namespace scim-system "$@"; }

# Asserts on rendered manifests: check.py FILE EXPR... where each EXPR is Python evaluated with
# `docs` (the objects), `kind(k)` (the one object of kind k, or None), `env` (the server's
# environment as a dict), `mounts` and `volumes` (the server's), and `paths` (the Ingress's
# path -> (pathType, service, port) and the HTTPRoute's path -> (type, service, port)).
cat > "$work/check.py" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
def kind(k):
    found = [d for d in docs if d["kind"] == k]
    assert len(found) <= 1, f"more than one {k}"
    return found[0] if found else None
server = next(d for d in docs if d["kind"] in ("StatefulSet", "Deployment") and d["metadata"]["name"].endswith("-server"))
pod = server["spec"]["template"]["spec"]
container = pod["containers"][0]
env = {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}
mounts = {m["name"]: m for m in container["volumeMounts"]}
volumes = {v["name"]: v for v in pod["volumes"]}
ingress_paths, route_paths = {}, {}
if kind("Ingress"):
    for rule in kind("Ingress")["spec"]["rules"]:
        for p in rule["http"]["paths"]:
            svc = p["backend"]["service"]
            ingress_paths[p["path"]] = (p["pathType"], svc["name"], svc["port"].get("name") or svc["port"].get("number"))
if kind("HTTPRoute"):
    for rule in kind("HTTPRoute")["spec"]["rules"]:
        for m in rule["matches"]:
            for b in rule["backendRefs"]:
                route_paths[m["path"]["value"]] = (m["path"]["type"], b["name"], b["port"])
for expr in sys.argv[2:]:
    try:
        ok = eval(expr)
    except Exception as e:
        ok = f"{type(e).__name__}: {e}"
    if ok is not True:
        sys.exit(f"not true: {expr} ({ok})\nenv: {env}\ningress: {ingress_paths}\nroute: {route_paths}")
PY
check() { local f=$1; shift; python3 "$work/check.py" "$f" "$@" || fail "$f"; }

host=scim.example.com
svc=scim-scim-operator-server
console_sso=(--set console.enabled=true --set console.oidc.issuer=https://login.example.com/oauth2/default
  --set console.oidc.clientId=scim-console --set console.oidc.clientSecret.existingSecret=scim-console-oidc
  --set console.oidc.clientSecret.key=secret)

say "default: no public address, no console, nothing routed"
render > "$work/default.yaml"
check "$work/default.yaml" 'kind("Ingress") is None and kind("HTTPRoute") is None' \
  '"SCIM_OPERATOR_BASE_URL" not in env and "SCIM_OPERATOR_INVITATION_URL" not in env' \
  'not any(k.startswith("SCIM_OPERATOR_CONSOLE") for k in env)' '"console-oidc" not in volumes'

say "Ingress: the host's SCIM, invitation paths and nothing else; the URLs follow from the host"
render --set publicAddress.host=$host --set ingress.enabled=true --set ingress.className=nginx \
  --set ingress.tls.secretName=scim-tls --set 'ingress.annotations.cert-manager\.io/cluster-issuer=letsencrypt' \
  > "$work/ingress.yaml"
check "$work/ingress.yaml" \
  "ingress_paths == {'/scim/v2': ('Prefix', '$svc', 'http'), '/invitations': ('Prefix', '$svc', 'http')}" \
  "[r['host'] for r in kind('Ingress')['spec']['rules']] == ['$host']" \
  "kind('Ingress')['spec']['ingressClassName'] == 'nginx'" \
  "kind('Ingress')['spec']['tls'] == [{'hosts': ['$host'], 'secretName': 'scim-tls'}]" \
  "kind('Ingress')['metadata']['annotations'] == {'cert-manager.io/cluster-issuer': 'letsencrypt'}" \
  "env['SCIM_OPERATOR_BASE_URL'] == 'https://$host/scim/v2'" \
  "env['SCIM_OPERATOR_INVITATION_URL'] == 'https://$host/invitations'" \
  'kind("HTTPRoute") is None and "SCIM_OPERATOR_CONSOLE_URL" not in env'
render --set publicAddress.host=$host --set ingress.enabled=true > "$work/ingress-plain.yaml"
check "$work/ingress-plain.yaml" "'tls' not in kind('Ingress')['spec'] and 'ingressClassName' not in kind('Ingress')['spec']" \
  "'annotations' not in kind('Ingress')['metadata']"

say "console and the opt-in admin API on the same host; /metrics and the probes never, wherever metrics are served"
for metrics in 0 9090; do
  render --set publicAddress.host=$host --set ingress.enabled=true --set httpRoute.enabled=true \
    --set 'httpRoute.parentRefs[0].name=public' --set 'httpRoute.parentRefs[0].namespace=gateway' \
    --set 'httpRoute.parentRefs[0].sectionName=https' --set 'httpRoute.annotations.team=identity' \
    --set publicAddress.adminApi=true --set metrics.port=$metrics "${console_sso[@]}" > "$work/all-$metrics.yaml"
  check "$work/all-$metrics.yaml" \
    "sorted(ingress_paths) == sorted(['/scim/v2', '/invitations', '/console', '/api/v1'])" \
    "set(v[1:] for v in ingress_paths.values()) == {('$svc', 'http')}" \
    "route_paths == {p: ('PathPrefix', '$svc', 8080) for p in ingress_paths}" \
    "kind('HTTPRoute')['spec']['hostnames'] == ['$host']" \
    "kind('HTTPRoute')['spec']['parentRefs'] == [{'name': 'public', 'namespace': 'gateway', 'sectionName': 'https'}]" \
    "kind('HTTPRoute')['metadata']['annotations'] == {'team': 'identity'}" \
    "not any(p.startswith(('/metrics', '/healthz', '/readyz')) or p == '/' for p in list(ingress_paths) + list(route_paths))"
done
check "$work/all-0.yaml" \
  "env['SCIM_OPERATOR_CONSOLE_URL'] == 'https://$host/console'" \
  "env['SCIM_OPERATOR_CONSOLE_OIDC_ISSUER'] == 'https://login.example.com/oauth2/default'" \
  "env['SCIM_OPERATOR_CONSOLE_OIDC_CLIENT_ID'] == 'scim-console'" \
  "env['SCIM_OPERATOR_CONSOLE_OIDC_CLAIM'] == 'email'" \
  "env['SCIM_OPERATOR_CONSOLE_IDLE_MINUTES'] == '30' and env['SCIM_OPERATOR_CONSOLE_SESSION_HOURS'] == '12'" \
  "volumes['console-oidc']['secret'] == {'secretName': 'scim-console-oidc', 'items': [{'key': 'secret', 'path': 'client-secret'}]}" \
  "env['SCIM_OPERATOR_CONSOLE_OIDC_CLIENT_SECRET_FILE'] == mounts['console-oidc']['mountPath'] + '/client-secret'" \
  "mounts['console-oidc']['readOnly'] is True"
render --set publicAddress.host=$host --set httpRoute.enabled=true --set 'httpRoute.parentRefs[0].name=public' \
  --set server.service.port=80 > "$work/route.yaml"
check "$work/route.yaml" "route_paths == {'/scim/v2': ('PathPrefix', '$svc', 80), '/invitations': ('PathPrefix', '$svc', 80)}" \
  'kind("Ingress") is None'

say "console values: timeouts and claim; a public client (no secret) mounts nothing; sign-in links only without an issuer"
render --set publicAddress.host=$host --set console.enabled=true --set console.oidc.issuer=https://login.microsoftonline.com/tenant/v2.0 \
  --set console.oidc.clientId=app --set console.oidc.claim=preferred-username --set console.idleMinutes=10 \
  --set console.sessionHours=8 > "$work/public-client.yaml"
check "$work/public-client.yaml" "env['SCIM_OPERATOR_CONSOLE_OIDC_CLAIM'] == 'preferred-username'" \
  "env['SCIM_OPERATOR_CONSOLE_IDLE_MINUTES'] == '10' and env['SCIM_OPERATOR_CONSOLE_SESSION_HOURS'] == '8'" \
  '"SCIM_OPERATOR_CONSOLE_OIDC_CLIENT_SECRET_FILE" not in env and "console-oidc" not in volumes and "console-oidc" not in mounts'
render --set publicAddress.host=$host --set console.enabled=true > "$work/links-only.yaml"
check "$work/links-only.yaml" "env['SCIM_OPERATOR_CONSOLE_URL'] == 'https://$host/console'" \
  'not any(k.startswith("SCIM_OPERATOR_CONSOLE_OIDC") for k in env)'

say "an explicit server.baseUrl (same host) wins; without a host the console follows it; invitations.url still wins"
render --set publicAddress.host=$host --set server.baseUrl=https://$host/scim/v2/ --set console.enabled=true \
  --set invitations.url=https://join.example.com/i > "$work/explicit.yaml"
check "$work/explicit.yaml" "env['SCIM_OPERATOR_BASE_URL'] == 'https://$host/scim/v2/'" \
  "env['SCIM_OPERATOR_CONSOLE_URL'] == 'https://$host/console'" \
  "env['SCIM_OPERATOR_INVITATION_URL'] == 'https://join.example.com/i'"
render --set server.baseUrl=https://id.example.org/scim/v2 --set console.enabled=true > "$work/baseurl.yaml"
check "$work/baseurl.yaml" "env['SCIM_OPERATOR_CONSOLE_URL'] == 'https://id.example.org/console'" \
  "env['SCIM_OPERATOR_INVITATION_URL'] == 'https://id.example.org/invitations'"

say "NOTES print the SCIM base URL, the console, the invitation links and the redirect URI to register"
$HELM install scim "$chart" --namespace scim-system --dry-run=client --set publicAddress.host=$host \
  --set ingress.enabled=true --set ingress.tls.secretName=scim-tls "${console_sso[@]}" > "$work/install.txt"
sed -n '/^NOTES:/,$p' "$work/install.txt" > "$work/notes.txt"
for line in "SCIM base URL (Okta, Entra ID):  https://$host/scim/v2" "Console:                         https://$host/console" \
            "Invitation links:                https://$host/invitations/<token>" \
            "OIDC redirect URI to register:   https://$host/console/callback" "scim-operator console login-link --user USERNAME"; do
  grep -qF "$line" "$work/notes.txt" || { cat "$work/notes.txt" >&2; fail "NOTES lack: $line"; }
done
grep -q "api/v1" "$work/notes.txt" && fail "NOTES name the admin API though it is not public"
$HELM install scim "$chart" --namespace scim-system --dry-run=client > "$work/install-default.txt"
grep -q "No public address is set" "$work/install-default.txt" || fail "NOTES without a public address should say how to set one"
grep -qE "Console|login-link|redirect URI" "$work/install-default.txt" && fail "NOTES mention the console though it is off"

say "wrong values fail the render with a message naming what to set"
refused() { # expected message fragment, then helm arguments
  local want=$1 out; shift
  if out=$(render "$@" 2>&1 >/dev/null); then fail "rendered without error: $*"; fi
  grep -qF -- "$want" <<<"$out" || fail "for $*: expected '$want' in: $out"
}
refused "ingress.enabled needs publicAddress.host" --set ingress.enabled=true
refused "httpRoute.enabled needs publicAddress.host" --set httpRoute.enabled=true --set 'httpRoute.parentRefs[0].name=public'
refused "httpRoute.enabled needs httpRoute.parentRefs" --set publicAddress.host=$host --set httpRoute.enabled=true
refused "/publicAddress/host" --set publicAddress.host=https://$host
refused "/publicAddress/host" --set publicAddress.host=$host/scim
refused "console.enabled needs the public address" --set console.enabled=true
refused "needs an https:// public address at the root of its host" --set console.enabled=true --set server.baseUrl=http://$host/scim/v2
refused "needs an https:// public address at the root of its host" --set console.enabled=true --set server.baseUrl=https://example.com/idp/scim/v2
refused "is not on publicAddress.host" --set publicAddress.host=$host --set server.baseUrl=https://other.example.com/scim/v2
refused "is not on publicAddress.host" --set publicAddress.host=$host --set server.baseUrl=https://$host.evil.example/scim/v2
refused "console.oidc.issuer needs console.oidc.clientId" --set publicAddress.host=$host --set console.enabled=true \
  --set console.oidc.issuer=https://login.example.com
refused "need console.oidc.issuer" --set publicAddress.host=$host --set console.enabled=true --set console.oidc.clientId=app
refused "console.oidc is set but console.enabled is false" --set console.oidc.issuer=https://login.example.com --set console.oidc.clientId=app
refused "/console/oidc/claim" --set publicAddress.host=$host --set console.enabled=true --set console.oidc.claim=sub
refused "/console/oidc/issuer" --set console.oidc.issuer=login.example.com
refused "/console/idleMinutes" --set console.idleMinutes=0
refused "/httpRoute/parentRefs/0" --set publicAddress.host=$host --set httpRoute.enabled=true --set 'httpRoute.parentRefs[0].sectionName=https'
refused "/ingress" --set ingress.tlsSecret=x

say "server-side dry-run with the Gateway API CRDs applied: the Ingress, the HTTPRoute and the rest"
gateway_crds=$(bash tests/env/gateway-api.sh | tail -n 1)
$KUBECTL apply --server-side -f "$gateway_crds" >/dev/null
$KUBECTL wait --for condition=Established --timeout=30s crd/httproutes.gateway.networking.k8s.io >/dev/null
$KUBECTL create namespace scim-system --dry-run=client -o yaml | $KUBECTL apply -f - >/dev/null
$KUBECTL apply --server-side -f crds/ >/dev/null
$KUBECTL apply --dry-run=server -n scim-system -f "$work/all-0.yaml" > "$work/dry-run.txt" \
  || fail "the API server refused the rendered objects"
grep -q "ingress.networking.k8s.io/scim-scim-operator created (server dry run)" "$work/dry-run.txt" \
  && grep -q "httproute.gateway.networking.k8s.io/scim-scim-operator created (server dry run)" "$work/dry-run.txt" \
  || { cat "$work/dry-run.txt" >&2; fail "the Ingress or the HTTPRoute was not dry-run"; }
$HELM template scim "$chart" --namespace scim-system -f "$chart/ci/non-default-values.yaml" --set serviceMonitor.enabled=false \
  --set publicAddress.host=$host --set server.baseUrl= --set httpRoute.enabled=true --set 'httpRoute.parentRefs[0].name=public' \
  --set console.enabled=true | $KUBECTL apply --dry-run=server -n scim-system -f - >/dev/null \
  || fail "the API server refused the non-default values with an HTTPRoute"
# The dry-run is a real check: an HTTPRoute the Gateway API schema refuses is refused here.
sed 's/type: PathPrefix/type: Prefix/' "$work/all-0.yaml" > "$work/broken.yaml"
if $KUBECTL apply --dry-run=server -n scim-system -f "$work/broken.yaml" > /dev/null 2> "$work/broken.err"; then
  fail "the API server took an HTTPRoute with an invalid path match type"
fi
grep -q 'HTTPRoute "scim-scim-operator" is invalid.*' "$work/broken.err" && grep -q 'path.type: Unsupported value: "Prefix"' "$work/broken.err" || { cat "$work/broken.err" >&2; fail "refused for another reason"; }
say "passed"
