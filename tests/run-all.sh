#!/usr/bin/env bash
# Runs every test of the project on a fresh machine: installs what the tests need (cached
# outside the source tree), then formatting, lints, unit, integration, conformance and
# end-to-end tests against a real control plane and real databases.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
start=$(date +%s)
step() { printf '\n==> %s (+%ss)\n' "$*" "$(( $(date +%s) - start ))"; }

export CARGO_TERM_COLOR=never
cache="${SCIM_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/scim-operator}"
mkdir -p "$cache"
# Build outputs live in the cache too, so a second run on the same machine is incremental.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target}"

step "toolchain"
command -v cargo >/dev/null || { echo "cargo is required (install Rust with rustup)"; exit 1; }
rustup component list --installed 2>/dev/null | grep -q clippy || rustup component add clippy rustfmt

step "conformance suites (pinned, in a cached Python virtual environment)"
SCIM_CONFORMANCE_BIN=$(bash tests/env/python-tools.sh | tail -n 1)
export SCIM_CONFORMANCE_BIN SCIM_CONFORMANCE_REQUIRED=1

if [ -f tests/env/control-plane.sh ]; then
  step "control plane (kube-apiserver, etcd, kubectl, helm from Go modules; cached)"
  bash tests/env/control-plane.sh build
  cp_dir=$(mktemp -d)
  bash tests/env/control-plane.sh start "$cp_dir" >/dev/null
  trap 'bash tests/env/control-plane.sh stop "$cp_dir" >/dev/null 2>&1 || true' EXIT
  # shellcheck disable=SC1091
  source "$cp_dir/env"
  export SCIM_E2E_REQUIRED=1
fi

step "format"
cargo fmt --all -- --check

step "lints"
cargo clippy --all-targets --locked -- -D warnings

step "tests"
cargo test --locked --all-targets -- --test-threads=2

step "done"
