#!/usr/bin/env bash
# Creates (once) a Python virtual environment with the pinned SCIM conformance suites
# (scim2-cli's `scim2 test`, `scim-sanity probe`) and the reference peer server (scim2-server),
# outside the source tree, and prints its bin directory as the last line.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache="${SCIM_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/scim-operator}"
hash=$(sha256sum "$here/requirements.txt" | cut -c1-12)
venv="$cache/venv-$hash"
if [ ! -f "$venv/.complete" ]; then
  python=$(command -v python3 || true)
  [ -n "$python" ] || { echo "python3 is required" >&2; exit 1; }
  rm -rf "$venv"
  "$python" -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt" >&2
  touch "$venv/.complete"
fi
echo "$venv/bin"
