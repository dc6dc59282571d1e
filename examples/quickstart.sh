#!/usr/bin/env bash
# Starts the SCIM server on a fresh database, creates an application key, and provisions a user
# the way an identity provider would, with curl. Leaves the server running until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

workdir=$(mktemp -d)
db="$workdir/scim.db"
listen="${SCIM_OPERATOR_LISTEN:-127.0.0.1:8080}"

echo "==> building scim-operator"
cargo build --release --locked --quiet
bin=target/release/scim-operator

echo "==> creating a service-account application key"
token=$("$bin" keys create --db "$db" --name quickstart | tail -n 1)

echo "==> starting the SCIM server on http://$listen/scim/v2 (database: $db)"
"$bin" serve --db "$db" --listen "$listen" &
server=$!
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 1 50); do
  curl -fsS "http://$listen/readyz" >/dev/null 2>&1 && break
  sleep 0.2
done

echo "==> creating a user, as Okta or Entra ID would"
curl -fsS -X POST "http://$listen/scim/v2/Users" \
  -H "Authorization: Bearer $token" -H 'Content-Type: application/scim+json' \
  -d '{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],
       "userName":"ada@example.com","name":{"givenName":"Ada","familyName":"Lovelace"},
       "emails":[{"value":"ada@example.com","type":"work","primary":true}],"active":true}'
echo
echo "==> looking the user up by userName"
curl -fsS -G "http://$listen/scim/v2/Users" -H "Authorization: Bearer $token" \
  --data-urlencode 'filter=userName eq "ada@example.com"'
echo
echo
echo "The server keeps running. Point an identity provider or curl at it:"
echo "  SCIM base URL: http://$listen/scim/v2"
echo "  Bearer token:  $token"
echo "Press Ctrl-C to stop."
wait $server
