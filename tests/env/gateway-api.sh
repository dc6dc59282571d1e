#!/usr/bin/env bash
# Gateway API CRDs (standard channel) for the chart test's server-side dry-run of its HTTPRoute:
# taken from the Go module sigs.k8s.io/gateway-api (config/crd/standard), copied once into the
# cache outside the source tree; prints the directory holding them as the last line of stdout.
#
#   crds=$(bash tests/env/gateway-api.sh | tail -n 1) && kubectl apply --server-side -f "$crds"
set -euo pipefail

# The release whose CRDs are applied; HTTPRoute is gateway.networking.k8s.io/v1 since v1.0.
GATEWAY_API_VERSION="v1.4.1"
cache="${SCIM_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/scim-operator}"
dir="$cache/gateway-api/$GATEWAY_API_VERSION"
if [ ! -f "$dir/.complete" ]; then
  command -v go >/dev/null || { echo "gateway-api: Go is required (the CRDs come from its module proxy)" >&2; exit 1; }
  # Outside any module, so that no go.mod around is changed.
  mod=$(cd / && GOFLAGS=-mod=mod go mod download -json "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION" \
    | sed -n 's/^[[:space:]]*"Dir": *"\(.*\)",\{0,1\}$/\1/p')
  [ -d "$mod/config/crd/standard" ] || { echo "gateway-api: no config/crd/standard in $mod" >&2; exit 1; }
  # Into a directory of its own first, so that a run beside this one never sees half a copy.
  tmp="$dir.tmp.$$"
  rm -rf "$tmp" && mkdir -p "$tmp"
  cp "$mod"/config/crd/standard/*.yaml "$tmp/"
  chmod u+w "$tmp"/*.yaml
  touch "$tmp/.complete"
  rm -rf "$dir" && mv "$tmp" "$dir"
fi
echo "$dir"
