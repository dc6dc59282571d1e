#!/usr/bin/env bash
# Headless Chromium and its WebDriver for the console's browser test, from Debian's packages
# (`chromium`, `chromium-driver`: the same version). No browser is downloaded from elsewhere.
#   chromium.sh   installs them if missing (apt-get, as root) and prints chromedriver's path
set -euo pipefail

log() { echo "[chromium] $*" >&2; }

if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || { log "chromium and chromedriver are missing; installing them needs root (apt-get install chromium chromium-driver)"; exit 1; }
  log "installing chromium and chromium-driver from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq chromium chromium-driver >&2
fi
log "$(chromedriver --version 2>/dev/null | head -n 1)"
command -v chromedriver
