#!/usr/bin/env bash
# Builds (once, cached outside the source tree) tests/env/kstatus, a small command that reads
# Kubernetes objects the way kstatus does (sigs.k8s.io/cli-utils, what Flux and Argo CD follow),
# and prints its path as the last line of stdout.
#
#   kstatus=$(bash tests/env/kstatus.sh | tail -n 1)
#   kubectl get scimuser alice -o json | "$kstatus"     # -> "ns/alice Current Resource is current"
set -euo pipefail

here=$(cd "$(dirname "$0")/kstatus" && pwd)
cache="${SCIM_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/scim-operator}"
hash=$(cat "$here/go.mod" "$here/go.sum" "$here/main.go" | sha256sum | cut -c1-12)
bin="$cache/kstatus-$hash"
if [ ! -x "$bin" ]; then
  command -v go >/dev/null || { echo "kstatus: Go is required" >&2; exit 1; }
  mkdir -p "$cache"
  (cd "$here" && CGO_ENABLED=0 go build -trimpath -o "$bin.tmp" .) >&2
  mv "$bin.tmp" "$bin"
fi
echo "$bin"
