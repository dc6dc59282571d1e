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

cp_dir=$(mktemp -d)
pg_dir=$(mktemp -d)
node_dir=$(mktemp -d)
cleanup() {
  bash tests/env/control-plane.sh stop "$node_dir" >/dev/null 2>&1 || true
  bash tests/env/control-plane.sh stop "$cp_dir" >/dev/null 2>&1 || true
  bash tests/env/postgres.sh stop "$pg_dir" >/dev/null 2>&1 || true
}
trap cleanup EXIT

step "control plane (kube-apiserver, etcd, kubectl, helm from Go modules; cached)"
bash tests/env/control-plane.sh build
# MutatingAdmissionPolicy (GA in Kubernetes 1.36, beta here) so that the chart's finalizer policy
# is installed and checked (tests/chart/test-chart.sh); no other test installs one.
KUBE_APISERVER_EXTRA_FLAGS="--feature-gates=MutatingAdmissionPolicy=true --runtime-config=admissionregistration.k8s.io/v1beta1=true" \
  bash tests/env/control-plane.sh start "$cp_dir" >/dev/null
# shellcheck disable=SC1091
source "$cp_dir/env"
export SCIM_E2E_REQUIRED=1

step "PostgreSQL (Debian's packages) on loopback"
bash tests/env/postgres.sh start "$pg_dir" >/dev/null
pg_url=$(sed -n "s/^export SCIM_TEST_DATABASE_URL='\(.*\)'$/\1/p" "$pg_dir/env")

step "format"
cargo fmt --all -- --check

step "lints"
cargo clippy --all-targets --locked -- -D warnings

step "tests (SQLite store)"
cargo test --locked --all-targets -- --test-threads=2

step "tests (PostgreSQL store: the SCIM suites again, replicas, migration)"
SCIM_TEST_DATABASE_URL="$pg_url" SCIM_PG_REQUIRED=1 cargo test --locked \
  --test scim_api --test provisioning_rules --test idp_replays --test conformance \
  --test filter_sql_oracle --test hostile_input --test invitation_email --test multi_replica --test store_migrate --test store_postgres \
  --test role_race --test replica_outbox --test console_web --test access_review \
  -- --test-threads=2

# ---- console (issue 21): one Keycloak shared by both console suites, Chromium over WebDriver
step "console: single sign-on through Keycloak, pages in headless Chromium"
bash tests/env/chromium.sh >/dev/null
kc_dir=$(mktemp -d)
bash tests/env/keycloak.sh start "$kc_dir" >/dev/null
console_status=0
# `set -e` does not act inside a subshell whose status a `||` tests: each command exits itself.
(
  # shellcheck disable=SC1091
  source "$kc_dir/env" || exit
  SCIM_BROWSER_REQUIRED=1 cargo test --locked --test console_web --test console_browser -- --test-threads=2 || exit
  # The same Keycloak as a SCIM target of the operator (OAuth client credentials); the other
  # target scenarios (scim2-server) ran with the rest of the end-to-end tests above.
  SCIM_TARGETS_REQUIRED=1 cargo test --locked --test e2e_targets keycloak -- --test-threads=2 || exit
) || console_status=$?
bash tests/env/keycloak.sh stop "$kc_dir"
rm -rf "$kc_dir"
[ "$console_status" = 0 ] || exit "$console_status"
# ---- end console

step "Helm chart against the real API server (lint, render, dry-run, install, RBAC, operator under its ServiceAccount)"
bash tests/chart/test-chart.sh

step "Dockerfile lint (hadolint)"
"$SCIM_CONFORMANCE_BIN/hadolint" Dockerfile

step "cluster: image from the Dockerfile (buildah), chart on a node (kubelet, containerd, kube-proxy, CoreDNS on an isolated bridge)"
bash tests/env/control-plane.sh build --with-node
bash tests/env/control-plane.sh start "$node_dir" --with-node >/dev/null
image=$(bash tests/env/image.sh "$node_dir" | tail -n 1)
(
  # shellcheck disable=SC1091
  source "$node_dir/env"
  bash tests/cluster/test-cluster.sh "$image"
)
bash tests/env/control-plane.sh stop "$node_dir"

step "done"
