#!/usr/bin/env bash
# Keycloak as a real, independent SCIM 2.0 service provider and OpenID Connect provider for
# tests: one realm with its native SCIM API turned on, a client-credentials client allowed to
# provision into it, and a confidential OIDC client for the console.
#
# Usage:
#   tests/env/keycloak.sh build        fetch (Maven Central) and prepare the cached distribution
#   tests/env/keycloak.sh start [DIR]  start an instance on a free loopback port, set up the
#                                      realm, print DIR (progress on stderr)
#   tests/env/keycloak.sh stop DIR
#
#   dir=$(bash tests/env/keycloak.sh start); . "$dir/env"; ...; bash tests/env/keycloak.sh stop "$dir"
#
# What `start` writes into DIR/env (shell-sourceable):
#   KEYCLOAK_URL                   http://127.0.0.1:PORT
#   KEYCLOAK_REALM                 the test realm ("scim-test")
#   KEYCLOAK_ISSUER                its OIDC issuer (discovery at $KEYCLOAK_ISSUER/.well-known/openid-configuration)
#   KEYCLOAK_SCIM_URL              the realm's SCIM base URL ($KEYCLOAK_ISSUER/scim/v2)
#   KEYCLOAK_TOKEN_URL             the realm's token endpoint
#   KEYCLOAK_SCIM_CLIENT_ID        a confidential client for the client-credentials grant whose
#   KEYCLOAK_SCIM_CLIENT_SECRET    service account may manage users and groups; its tokens carry
#                                  the SCIM base URL as audience
#   KEYCLOAK_TOKEN_LIFESPAN        access-token lifespan of the realm in seconds (60: tokens expire
#                                  during a test, and there is no refresh token)
#   KEYCLOAK_CONSOLE_CLIENT_ID     a confidential OIDC client (authorization code, PKCE S256) whose
#   KEYCLOAK_CONSOLE_CLIENT_SECRET redirect URIs allow any http://127.0.0.1 and http://localhost port
#   KEYCLOAK_ADMIN_USER            the master realm's administrator (admin-cli password grant), to
#   KEYCLOAK_ADMIN_PASSWORD        create realm users with passwords through the admin REST API
#   KEYCLOAK_PID, KEYCLOAK_LOG
#
# The realm's user profile is relaxed (e-mail, first and last name optional) and maps the SCIM
# attributes externalId and displayName, which Keycloak otherwise drops silently.
#
# The distribution (org.keycloak:keycloak-quarkus-dist, about 170 MiB) and its one-time Quarkus
# build live in the cache outside the source tree; each instance runs from its own copy with its
# own H2 database under DIR, so instances are independent and start clean.
set -euo pipefail

KEYCLOAK_VERSION="26.7.3"
REALM="scim-test"
TOKEN_LIFESPAN=60
START_TIMEOUT=240

CACHE_ROOT="${SCIM_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/scim-operator}"
KC_CACHE="$CACHE_ROOT/keycloak/$KEYCLOAK_VERSION"
KC_DIST="$KC_CACHE/keycloak-$KEYCLOAK_VERSION"

log() { printf '[keycloak] %s\n' "$*" >&2; }
die() { printf '[keycloak] error: %s\n' "$*" >&2; exit 1; }

need() {
  local cmd=$1 pkg=$2
  command -v "$cmd" >/dev/null 2>&1 && return
  [ "$(id -u)" = 0 ] || die "$cmd is missing (Debian package $pkg)"
  log "installing $pkg"
  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$pkg"; } >&2
}

# The options every instance starts with; the one-time build is made with the same ones, so a
# start reuses it instead of building again.
kc_options=(--features=scim-api --http-host=127.0.0.1 --hostname-strict=false)

build() {
  if [ -f "$KC_DIST/.prepared" ]; then
    return
  fi
  need java default-jre-headless
  need mvn maven
  need unzip unzip
  need curl curl
  mkdir -p "$KC_CACHE"
  exec 9>"$KC_CACHE/.build.lock"
  command -v flock >/dev/null && flock 9
  [ -f "$KC_DIST/.prepared" ] && return
  local zip="$KC_CACHE/keycloak-quarkus-dist-$KEYCLOAK_VERSION.zip"
  if [ ! -s "$zip" ]; then
    log "fetching keycloak-quarkus-dist $KEYCLOAK_VERSION from Maven Central"
    mvn -q -B dependency:copy -Dartifact="org.keycloak:keycloak-quarkus-dist:$KEYCLOAK_VERSION:zip" \
      -DoutputDirectory="$KC_CACHE" >&2
  fi
  rm -rf "$KC_DIST"
  unzip -q "$zip" -d "$KC_CACHE"
  # Start once and stop: the dev-mode Quarkus build (about 40 s) is written into the
  # distribution, so copies of it start without building.
  local dir port
  dir=$(mktemp -d)
  port=$(free_port)
  log "one-time build of the distribution"
  KC_BOOTSTRAP_ADMIN_USERNAME=admin KC_BOOTSTRAP_ADMIN_PASSWORD=admin \
    "$KC_DIST/bin/kc.sh" start-dev "${kc_options[@]}" --http-port="$port" >"$dir/build.log" 2>&1 &
  local pid=$!
  if ! wait_http "http://127.0.0.1:$port/realms/master" "$pid"; then
    kill "$pid" 2>/dev/null || true
    tail -n 40 "$dir/build.log" >&2
    die "the first start of Keycloak failed (log above)"
  fi
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  rm -rf "$KC_DIST/data" "$dir"
  touch "$KC_DIST/.prepared"
  log "distribution ready in $KC_DIST"
}

# free_port: a free loopback port below the Linux ephemeral range.
free_port() {
  python3 - <<'EOF'
import random, socket
for _ in range(200):
    port = random.randint(20000, 32000)
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
        print(port)
        break
else:
    raise SystemExit("no free port")
EOF
}

# wait_http URL PID: waits until URL answers 200, while PID lives.
wait_http() {
  local url=$1 pid=$2 deadline=$((SECONDS + START_TIMEOUT))
  while ((SECONDS < deadline)); do
    kill -0 "$pid" 2>/dev/null || return 1
    if [ "$(curl -s -o /dev/null -w '%{http_code}' "$url" 2>/dev/null)" = 200 ]; then
      return 0
    fi
    sleep 1
  done
  return 1
}

# api METHOD PATH [JSON]: an admin REST call against the running instance; prints the body,
# fails on a status of 400 or more.
api() {
  local method=$1 path=$2 body=${3:-}
  local args=(-sS -X "$method" -H "Authorization: Bearer $ADMIN_TOKEN" -w '\n%{http_code}')
  [ -n "$body" ] && args+=(-H 'Content-Type: application/json' --data "$body")
  local out code
  out=$(curl "${args[@]}" "$URL/admin$path")
  code=${out##*$'\n'}
  out=${out%$'\n'*}
  if [ "$code" -ge 400 ]; then
    die "$method $path answered $code: $out"
  fi
  printf '%s' "$out"
}

# json EXPR: reads JSON on stdin and prints the Python expression EXPR over it (as `d`).
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

admin_token() {
  curl -sS -f "$URL/realms/master/protocol/openid-connect/token" \
    -d grant_type=password -d client_id=admin-cli \
    --data-urlencode "username=$ADMIN_USER" --data-urlencode "password=$ADMIN_PASSWORD" |
    json 'd["access_token"]'
}

setup_realm() {
  ADMIN_TOKEN=$(admin_token)
  api POST /realms "$(printf '{"realm":"%s","enabled":true,"scimApiEnabled":true,"accessTokenLifespan":%d}' \
    "$REALM" "$TOKEN_LIFESPAN")" >/dev/null

  # User profile: e-mail, first and last name optional; externalId and displayName mapped to SCIM.
  api GET "/realms/$REALM/users/profile" | python3 -c '
import json, sys
profile = json.load(sys.stdin)
for attribute in profile["attributes"]:
    if attribute["name"] in ("email", "firstName", "lastName"):
        attribute.pop("required", None)
for name, path in (("externalId", "externalId"), ("displayName", "displayName")):
    profile["attributes"].append({
        "name": name,
        "displayName": name,
        "permissions": {"view": ["admin"], "edit": ["admin"]},
        "multivalued": False,
        "annotations": {"kc.scim.schema.attribute": path},
    })
json.dump(profile, open(sys.argv[1], "w"))
' "$DIR/profile.json"
  api PUT "/realms/$REALM/users/profile" "$(cat "$DIR/profile.json")" >/dev/null

  # The provisioning client: client credentials, audience = the SCIM base URL.
  api POST "/realms/$REALM/clients" "$(python3 -c '
import json, sys
print(json.dumps({
    "clientId": sys.argv[1], "secret": sys.argv[2], "enabled": True,
    "publicClient": False, "clientAuthenticatorType": "client-secret",
    "serviceAccountsEnabled": True, "standardFlowEnabled": False, "directAccessGrantsEnabled": False,
    "protocolMappers": [{
        "name": "scim-audience", "protocol": "openid-connect", "protocolMapper": "oidc-audience-mapper",
        "config": {"included.custom.audience": sys.argv[3], "access.token.claim": "true", "id.token.claim": "false"},
    }],
}))' "$SCIM_CLIENT_ID" "$SCIM_CLIENT_SECRET" "$SCIM_URL")" >/dev/null
  local client_uuid sa_user rm_uuid role
  client_uuid=$(api GET "/realms/$REALM/clients?clientId=$SCIM_CLIENT_ID" | json 'd[0]["id"]')
  sa_user=$(api GET "/realms/$REALM/clients/$client_uuid/service-account-user" | json 'd["id"]')
  rm_uuid=$(api GET "/realms/$REALM/clients?clientId=realm-management" | json 'd[0]["id"]')
  role=$(api GET "/realms/$REALM/clients/$rm_uuid/roles/manage-users")
  api POST "/realms/$REALM/users/$sa_user/role-mappings/clients/$rm_uuid" "[$role]" >/dev/null

  # The console's sign-in client: authorization code with PKCE. Keycloak ignores the port of a
  # loopback redirect URI (RFC 8252), so these two allow any port of this machine and nothing else.
  api POST "/realms/$REALM/clients" "$(python3 -c '
import json, sys
print(json.dumps({
    "clientId": sys.argv[1], "secret": sys.argv[2], "enabled": True,
    "publicClient": False, "clientAuthenticatorType": "client-secret",
    "standardFlowEnabled": True, "directAccessGrantsEnabled": False, "serviceAccountsEnabled": False,
    "redirectUris": ["http://127.0.0.1/*", "http://localhost/*"],
    "webOrigins": ["+"],
    "attributes": {"pkce.code.challenge.method": "S256", "post.logout.redirect.uris": "*"},
}))' "$CONSOLE_CLIENT_ID" "$CONSOLE_CLIENT_SECRET")" >/dev/null
}

# A random secret of 32 hex characters.
secret() { python3 -c 'import secrets; print(secrets.token_hex(16))'; }

start() {
  build
  DIR=${1:-$(mktemp -d)}
  mkdir -p "$DIR"
  DIR=$(cd "$DIR" && pwd)
  log "copying the distribution into $DIR"
  rm -rf "$DIR/keycloak"
  cp -a "$KC_DIST" "$DIR/keycloak"
  local port
  port=$(free_port)
  URL="http://127.0.0.1:$port"
  ADMIN_USER=admin
  ADMIN_PASSWORD=$(secret)
  local t0=$SECONDS
  # setsid: the instance is its own process group, so `stop` ends kc.sh and its Java together.
  KC_BOOTSTRAP_ADMIN_USERNAME=$ADMIN_USER KC_BOOTSTRAP_ADMIN_PASSWORD=$ADMIN_PASSWORD \
    setsid "$DIR/keycloak/bin/kc.sh" start-dev "${kc_options[@]}" --http-port="$port" \
    >"$DIR/keycloak.log" 2>&1 </dev/null &
  local pid=$!
  echo "$pid" >"$DIR/pid"
  if ! wait_http "$URL/realms/master" "$pid"; then
    tail -n 40 "$DIR/keycloak.log" >&2
    die "Keycloak did not answer on $URL within ${START_TIMEOUT}s (log above)"
  fi
  log "Keycloak $KEYCLOAK_VERSION answers on $URL ($((SECONDS - t0))s)"

  ISSUER="$URL/realms/$REALM"
  SCIM_URL="$ISSUER/scim/v2"
  SCIM_CLIENT_ID=scim-provisioning
  SCIM_CLIENT_SECRET=$(secret)
  CONSOLE_CLIENT_ID=scim-console
  CONSOLE_CLIENT_SECRET=$(secret)
  setup_realm
  {
    printf "export KEYCLOAK_URL='%s'\n" "$URL"
    printf "export KEYCLOAK_REALM='%s'\n" "$REALM"
    printf "export KEYCLOAK_ISSUER='%s'\n" "$ISSUER"
    printf "export KEYCLOAK_SCIM_URL='%s'\n" "$SCIM_URL"
    printf "export KEYCLOAK_TOKEN_URL='%s'\n" "$ISSUER/protocol/openid-connect/token"
    printf "export KEYCLOAK_SCIM_CLIENT_ID='%s'\n" "$SCIM_CLIENT_ID"
    printf "export KEYCLOAK_SCIM_CLIENT_SECRET='%s'\n" "$SCIM_CLIENT_SECRET"
    printf "export KEYCLOAK_TOKEN_LIFESPAN='%s'\n" "$TOKEN_LIFESPAN"
    printf "export KEYCLOAK_CONSOLE_CLIENT_ID='%s'\n" "$CONSOLE_CLIENT_ID"
    printf "export KEYCLOAK_CONSOLE_CLIENT_SECRET='%s'\n" "$CONSOLE_CLIENT_SECRET"
    printf "export KEYCLOAK_ADMIN_USER='%s'\n" "$ADMIN_USER"
    printf "export KEYCLOAK_ADMIN_PASSWORD='%s'\n" "$ADMIN_PASSWORD"
    printf "export KEYCLOAK_PID='%s'\n" "$pid"
    printf "export KEYCLOAK_LOG='%s'\n" "$DIR/keycloak.log"
  } >"$DIR/env"
  check_scim
  log "realm $REALM ready: SCIM at $SCIM_URL ($((SECONDS - t0))s)"
  echo "$DIR"
}

# The provisioning client gets a token and reads the SCIM discovery document with it.
check_scim() {
  local token code
  token=$(curl -sS -f "$ISSUER/protocol/openid-connect/token" -d grant_type=client_credentials \
    --data-urlencode "client_id=$SCIM_CLIENT_ID" --data-urlencode "client_secret=$SCIM_CLIENT_SECRET" |
    json 'd["access_token"]')
  code=$(curl -s -o "$DIR/spc.json" -w '%{http_code}' -H "Authorization: Bearer $token" "$SCIM_URL/ServiceProviderConfig")
  [ "$code" = 200 ] || die "SCIM discovery with the provisioning client answered $code: $(cat "$DIR/spc.json")"
  code=$(curl -s -o "$DIR/users.json" -w '%{http_code}' -H "Authorization: Bearer $token" "$SCIM_URL/Users")
  [ "$code" = 200 ] || die "GET /Users with the provisioning client answered $code: $(cat "$DIR/users.json")"
}

stop() {
  local dir=${1:?usage: keycloak.sh stop DIR}
  [ -f "$dir/pid" ] || return 0
  local pid
  pid=$(cat "$dir/pid")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 30); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 1
    done
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -f "$dir/pid"
  rm -rf "$dir/keycloak"
}

case "${1:-}" in
  build) build ;;
  start) shift; start "$@" ;;
  stop) shift; stop "$@" ;;
  *) die "usage: keycloak.sh build | start [DIR] | stop DIR" ;;
esac
