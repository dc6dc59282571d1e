#!/usr/bin/env bash
# Creates (once) a Python virtual environment with the pinned SCIM conformance suites
# (scim2-cli's `scim2 test`, `scim-sanity probe`), the reference peer server (scim2-server) and
# hadolint, outside the source tree, and prints its bin directory as the last line of stdout.
#
#   bin=$(bash tests/env/python-tools.sh | tail -n 1)
#
# Location: ${SCIM_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/scim-operator}/venv-<hash>, where
# <hash> is taken from tests/env/requirements.txt, so editing the pins builds a fresh environment
# and an unchanged file is a fast no-op. The interpreter is $SCIM_PYTHON if set, otherwise the
# first of python3.13, python3.12, python3.11, python3 that is Python >= 3.11.
# Everything but the final path goes to stderr.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
req="$here/requirements.txt"
cache="${SCIM_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/scim-operator}"
hash=$(sha256sum "$req" | cut -c1-12)
venv="$cache/venv-$hash"

ready() {
  [ -f "$venv/.complete" ] && [ -x "$venv/bin/python" ] && "$venv/bin/python" -c '' 2>/dev/null
}

if ! ready; then
  mkdir -p "$cache"
  # Serialise concurrent callers (parallel test runs) on the same environment.
  exec 9>"$venv.lock"
  if command -v flock >/dev/null 2>&1; then
    flock 9
  fi
  if ! ready; then
    python=""
    for candidate in ${SCIM_PYTHON:-} python3.13 python3.12 python3.11 python3; do
      if command -v "$candidate" >/dev/null 2>&1 &&
        "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
        python=$candidate
        break
      fi
    done
    if [ -z "$python" ]; then
      echo "python-tools: Python >= 3.11 is required (set SCIM_PYTHON to its path)" >&2
      exit 1
    fi
    echo "python-tools: creating $venv with $("$python" --version 2>&1)" >&2
    rm -rf "$venv"
    "$python" -m venv "$venv" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
      --no-deps -r "$req" >&2
    "$venv/bin/python" -m pip check --disable-pip-version-check >&2
    for tool in scim2 scim-sanity scim2-server; do
      [ -x "$venv/bin/$tool" ] || { echo "python-tools: $tool missing from $venv" >&2; exit 1; }
    done
    touch "$venv/.complete"
  fi
fi

echo "$venv/bin"
