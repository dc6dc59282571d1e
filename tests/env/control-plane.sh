#!/usr/bin/env bash
# Real Kubernetes control plane (etcd + kube-apiserver + a trimmed
# kube-controller-manager) plus kubectl and helm for end-to-end tests.
# Everything is built from Go modules; nothing is downloaded except through
# the Go module proxy.
#
# Usage:
#   tests/env/control-plane.sh build [--with-node]        build (or reuse cached) binaries
#   tests/env/control-plane.sh start [DIR] [--with-node]  start a control plane, print DIR
#   tests/env/control-plane.sh stop DIR [--keep-logs]
#   tests/env/control-plane.sh env            print the bin directory
#
#   export PATH="$(tests/env/control-plane.sh env):$PATH"
#   dir=$(tests/env/control-plane.sh start)    # progress on stderr, DIR on stdout
#   . "$dir/env"                               # KUBECONFIG, KUBECTL, HELM, ...
#   kubectl get ns
#   tests/env/control-plane.sh stop "$dir"
#
# KUBE_APISERVER_EXTRA_FLAGS (space-separated) are added to the API server's flags, e.g.
# feature gates a test or benchmark needs.
#
# --with-node (root only, one per machine) adds a Ready node "scim-node": kubelet,
# kube-scheduler, kube-proxy, CoreDNS, containerd, CNI and hostPath PVs of a
# default StorageClass; the API server then listens on the node's bridge
# address instead of 127.0.0.1. See tests/env/node.sh for what runs, the
# findings on this machine and the network isolation; `stop` tears it down.
#
# What `start` writes into DIR:
#   kubeconfig        admin (static token, group system:masters)
#   user-kubeconfig   non-admin static user "scim-test-user" (group
#                     "scim-test-users"); it has NO permissions until a test
#                     binds a Role/ClusterRole to it
#   env               shell-sourceable: CONTROL_PLANE_DIR, CONTROL_PLANE_BIN,
#                     KUBECONFIG, KUBECONFIG_USER, KUBE_APISERVER_URL,
#                     KUBE_CA_FILE, KUBE_ADMIN_TOKEN, KUBE_USER_TOKEN,
#                     KUBE_USER_NAME, KUBECTL, HELM, ETCD_ENDPOINT, ETCD_PID,
#                     KUBE_APISERVER_PID, KUBE_CONTROLLER_MANAGER_PID (empty
#                     when not running), HELM_CACHE_HOME/HELM_CONFIG_HOME/
#                     HELM_DATA_HOME (isolated inside DIR)
#                     with --with-node also NODE_NAME, NODE_IP,
#                     CONTAINERD_ADDRESS (for `ctr -n k8s.io images import`),
#                     KUBELET_PID
#   *.log             etcd.log, kube-apiserver.log, kube-controller-manager.log
#                     (+ kube-scheduler, containerd, kubelet, kube-proxy,
#                     coredns with --with-node)
#
# Least-privilege identities for tests (RBAC is on):
#   - the static non-admin user: KUBECONFIG="$KUBECONFIG_USER" kubectl ...
#     after e.g. `kubectl create rolebinding x --clusterrole=view
#     --user=scim-test-user -n NS`;
#   - a service account: `kubectl create sa foo -n NS`, bind a role to
#     system:serviceaccount:NS:foo, then `kubectl create token foo -n NS` gives
#     a bearer token (TokenRequest works: signing keys are configured);
#   - impersonation by the admin: `kubectl --as=USER --as-group=GROUP ...`.
# The static token file is read once at start; more static users cannot be
# added to a running control plane (use service accounts instead).
set -euo pipefail

# ---------------------------------------------------------------- pinned versions
# Kubernetes release built from k8s.io/kubernetes (matches k8s-openapi feature v1_35).
KUBE_VERSION="v1.35.8"
# etcd server module; Kubernetes 1.35 is tested against etcd 3.6.x.
ETCD_VERSION="v3.6.16"
# Helm, installed from helm.sh/helm/v4.
HELM_VERSION="v4.3.1"
# Build kube-controller-manager too (namespace deletion, garbage collection).
BUILD_CONTROLLER_MANAGER=1
# Seconds each component may take to become ready in `start`.
START_TIMEOUT=60
# Controllers run by kube-controller-manager (nothing that needs nodes).
KCM_CONTROLLERS="namespace-controller,garbage-collector-controller,serviceaccount-controller,serviceaccount-token-controller,root-ca-certificate-publisher-controller,clusterrole-aggregation-controller"
# ... and with a node, what workloads, Services and volumes need.
KCM_NODE_CONTROLLERS="deployment-controller,replicaset-controller,statefulset-controller,endpoints-controller,endpointslice-controller,endpointslice-mirroring-controller,node-lifecycle-controller,pod-garbage-collector-controller,persistentvolume-binder-controller,persistentvolume-protection-controller,persistentvolumeclaim-protection-controller,disruption-controller,job-controller"

CACHE_ROOT="${SCIM_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/scim-operator}"
KUBE_DIR="$CACHE_ROOT/k8s/$KUBE_VERSION"
KUBE_BIN="$KUBE_DIR/bin"
ETCD_DIR="$CACHE_ROOT/etcd/$ETCD_VERSION"
HELM_DIR="$CACHE_ROOT/helm/$HELM_VERSION"

log() { printf '[control-plane] %s\n' "$*" >&2; }
die() { printf '[control-plane] error: %s\n' "$*" >&2; exit 1; }

WITH_NODE=0
# shellcheck source=tests/env/node.sh
. "$(dirname "${BASH_SOURCE[0]}")/node.sh"

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
  exit "${1:-2}"
}

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# ----------------------------------------------------------------- versions
# Prints the version a binary reports, in the same form as the pins (vX.Y.Z),
# or nothing if the binary is missing or broken.
reported_version() {
  local name=$1 path=$2 out
  [[ -x $path ]] || return 0
  case $name in
    kube-apiserver | kube-controller-manager | kube-scheduler | kube-proxy | kubelet)
      out=$("$path" --version 2>/dev/null) || return 0
      printf '%s\n' "${out##* }" ;;
    kubectl)
      out=$("$path" version --client -o json 2>/dev/null) || return 0
      sed -n 's/.*"gitVersion": *"\([^"]*\)".*/\1/p' <<<"$out" | head -n 1 ;;
    etcd)
      out=$("$path" --version 2>/dev/null) || return 0
      sed -n 's/^etcd Version: *\(.*\)$/v\1/p' <<<"$out" ;;
    helm)
      "$path" version --template '{{.Version}}' 2>/dev/null || true ;;
  esac
}

is_current() { [[ "$(reported_version "$1" "$2")" == "$3" ]]; }

# ------------------------------------------------------------------- build
go_mod_download() { # module@version -> prints the JSON field given as $2
  local json
  json=$(go mod download -json "$1") || die "go mod download $1 failed"
  sed -n "s/^[[:space:]]*\"$2\": *\"\\(.*\\)\",\\{0,1\\}\$/\\1/p" <<<"$json" | head -n 1
}

# Writes the wrapper module that builds k8s.io/kubernetes commands. The list of
# staging modules comes from that release's own go.mod: every
# `k8s.io/X => ./staging/src/k8s.io/X` replace becomes `k8s.io/X => k8s.io/X v0.Y.Z`.
write_kube_wrapper() {
  local src=$1 gomod staging_version n
  gomod=$(go_mod_download "k8s.io/kubernetes@$KUBE_VERSION" GoMod)
  [[ -f $gomod ]] || die "no go.mod for k8s.io/kubernetes@$KUBE_VERSION in the module cache"
  staging_version="v0.${KUBE_VERSION#v1.}"
  mkdir -p "$src"
  {
    echo "// Generated by tests/env/control-plane.sh; do not edit."
    echo "module scim-operator-test/kubernetes-wrapper"
    echo
    grep -E '^go [0-9]' "$gomod"
    grep -E '^godebug ' "$gomod" || true
    echo
    echo "require k8s.io/kubernetes $KUBE_VERSION"
    echo
    echo "replace ("
    awk -v ver="$staging_version" '
      /=>[[:space:]]*\.\/staging\/src\// {
        m = ($1 == "replace") ? $2 : $1
        printf "\t%s => %s %s\n", m, m, ver
      }' "$gomod"
    echo ")"
  } >"$src/go.mod.new"
  n=$(grep -c '=> k8s.io/' "$src/go.mod.new" || true)
  ((n > 0)) || die "found no staging replace directives in $gomod"
  mv "$src/go.mod.new" "$src/go.mod"
  log "wrapper module: $n staging modules replaced with $staging_version ($src/go.mod)"
}

kube_ldflags() {
  local info build_date minor
  info=$(go_mod_download "k8s.io/kubernetes@$KUBE_VERSION" Info)
  # Use the release's tag time as the build date (reproducible builds).
  build_date=$(sed -n 's/.*"Time": *"\([^"]*\)".*/\1/p' "$info" 2>/dev/null || true)
  [[ -n $build_date ]] || build_date=1970-01-01T00:00:00Z
  minor=${KUBE_VERSION#v1.}
  minor=${minor%%.*}
  local pkg flags="-s -w"
  for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
    flags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    flags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$build_date"
  done
  printf '%s\n' "$flags"
}

build_kube() {
  local cmds=(kube-apiserver kubectl) cmd todo=() t0 ldflags
  ((BUILD_CONTROLLER_MANAGER)) && cmds=(kube-apiserver kube-controller-manager kubectl)
  ((WITH_NODE)) && cmds+=(kube-scheduler kube-proxy kubelet)
  for cmd in "${cmds[@]}"; do
    if is_current "$cmd" "$KUBE_BIN/$cmd" "$KUBE_VERSION"; then
      log "$cmd $KUBE_VERSION: cached"
    else
      todo+=("$cmd")
    fi
  done
  ((${#todo[@]})) || return 0

  local src="$KUBE_DIR/src"
  t0=$(now)
  write_kube_wrapper "$src"
  ldflags=$(kube_ldflags)
  log "k8s.io/kubernetes@$KUBE_VERSION module download + wrapper: $(elapsed "$t0")s"
  mkdir -p "$KUBE_BIN"
  for cmd in "${todo[@]}"; do
    t0=$(now)
    log "building $cmd $KUBE_VERSION ..."
    (cd "$src" && CGO_ENABLED=0 GOFLAGS="-mod=mod ${GOFLAGS:-}" go build -trimpath \
      -tags selinux,notest -ldflags "$ldflags" -o "$KUBE_BIN/.$cmd.tmp" \
      "k8s.io/kubernetes/cmd/$cmd") || die "building $cmd failed"
    mv -f "$KUBE_BIN/.$cmd.tmp" "$KUBE_BIN/$cmd"
    is_current "$cmd" "$KUBE_BIN/$cmd" "$KUBE_VERSION" ||
      die "$cmd reports '$(reported_version "$cmd" "$KUBE_BIN/$cmd")', wanted $KUBE_VERSION"
    log "built $cmd $KUBE_VERSION in $(elapsed "$t0")s"
  done
}

build_etcd() {
  local bin="$ETCD_DIR/bin/etcd" src="$ETCD_DIR/src" t0 gomod
  if is_current etcd "$bin" "$ETCD_VERSION"; then
    log "etcd $ETCD_VERSION: cached"
    return 0
  fi
  t0=$(now)
  log "building etcd $ETCD_VERSION ..."
  gomod=$(go_mod_download "go.etcd.io/etcd/server/v3@$ETCD_VERSION" GoMod)
  mkdir -p "$src" "$ETCD_DIR/bin"
  {
    echo "// Generated by tests/env/control-plane.sh; do not edit."
    echo "module scim-operator-test/etcd-wrapper"
    echo
    grep -E '^go [0-9]' "$gomod"
    echo
    echo "require go.etcd.io/etcd/server/v3 $ETCD_VERSION"
  } >"$src/go.mod"
  # The server module root is etcd's main package.
  (cd "$src" && CGO_ENABLED=0 GOFLAGS="-mod=mod ${GOFLAGS:-}" go build -trimpath \
    -ldflags "-s -w" -o "$ETCD_DIR/bin/.etcd.tmp" go.etcd.io/etcd/server/v3) ||
    die "building etcd failed"
  mv -f "$ETCD_DIR/bin/.etcd.tmp" "$bin"
  is_current etcd "$bin" "$ETCD_VERSION" ||
    die "etcd reports '$(reported_version etcd "$bin")', wanted $ETCD_VERSION"
  log "built etcd $ETCD_VERSION in $(elapsed "$t0")s"
}

build_helm() {
  local bin="$HELM_DIR/bin/helm" t0 module
  if is_current helm "$bin" "$HELM_VERSION"; then
    log "helm $HELM_VERSION: cached"
    return 0
  fi
  module="helm.sh/helm/${HELM_VERSION%%.*}"
  t0=$(now)
  log "building helm $HELM_VERSION ..."
  mkdir -p "$HELM_DIR/bin"
  rm -rf "$HELM_DIR/bin/.tmp"
  GOBIN="$HELM_DIR/bin/.tmp" CGO_ENABLED=0 go install -trimpath \
    -ldflags "-s -w -X $module/internal/version.version=$HELM_VERSION -X $module/internal/version.gitTreeState=clean" \
    "$module/cmd/helm@$HELM_VERSION" || die "building helm failed"
  mv -f "$HELM_DIR/bin/.tmp/helm" "$bin"
  rmdir "$HELM_DIR/bin/.tmp"
  is_current helm "$bin" "$HELM_VERSION" ||
    die "helm reports '$(reported_version helm "$bin")', wanted $HELM_VERSION"
  log "built helm $HELM_VERSION in $(elapsed "$t0")s"
}

cmd_build() {
  local a
  for a in "$@"; do
    case $a in
      --with-node) WITH_NODE=1 ;;
      *) usage ;;
    esac
  done
  command -v go >/dev/null || die "go is not installed (needed to build the control plane)"
  local t0
  t0=$(now)
  mkdir -p "$CACHE_ROOT"
  # Serialise concurrent builds into the same cache.
  if command -v flock >/dev/null; then
    exec 9>"$CACHE_ROOT/.build.lock"
    flock 9
  fi
  log "cache: $CACHE_ROOT ($(go version))"
  build_kube
  build_etcd
  build_helm
  ((WITH_NODE)) && node_build
  mkdir -p "$KUBE_BIN"
  ln -sfn "../../../etcd/$ETCD_VERSION/bin/etcd" "$KUBE_BIN/etcd"
  ln -sfn "../../../helm/$HELM_VERSION/bin/helm" "$KUBE_BIN/helm"
  log "build done in $(elapsed "$t0")s; binaries in $KUBE_BIN"
}

cmd_env() {
  local b
  for b in kube-apiserver kubectl etcd helm; do
    [[ -x $KUBE_BIN/$b ]] || log "warning: $KUBE_BIN/$b is missing; run '$0 build'"
  done
  printf '%s\n' "$KUBE_BIN"
}

# ------------------------------------------------------------------- start
PORTS_TAKEN=" "
# pick_port VAR: a free loopback port below the Linux ephemeral range.
pick_port() {
  local p i
  for ((i = 0; i < 200; i++)); do
    p=$((20000 + (RANDOM * 32768 + RANDOM) % 12000))
    [[ $PORTS_TAKEN == *" $p "* ]] && continue
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      PORTS_TAKEN+="$p "
      printf -v "$1" '%s' "$p"
      return 0
    fi
  done
  die "could not find a free port on 127.0.0.1"
}

START_DIR=""
START_OK=0
STARTED=() # names of components launched by this `start`

# launch NAME BINARY ARGS...: starts a component in the background, logging to
# DIR/NAME.log, and records "PID BINARY" in DIR/NAME.pid.
launch() {
  local name=$1 bin=$2
  shift 2
  "$bin" "$@" </dev/null >"$START_DIR/$name.log" 2>&1 &
  printf '%s %s\n' "$!" "$bin" >"$START_DIR/$name.pid"
  STARTED+=("$name")
}

pid_of() { local pid; [[ -f $1/$2.pid ]] && read -r pid _ <"$1/$2.pid" && printf "%s\n" "$pid"; }

alive() { # PID: running and not a zombie
  local state
  kill -0 "$1" 2>/dev/null || return 1
  state=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null || true)
  [[ $state != Z ]]
}

# Stops a component recorded in DIR/NAME.pid, but only if that PID still runs
# the binary we started.
stop_component() {
  local dir=$1 name=$2 pid bin argv0 i
  [[ -f $dir/$name.pid ]] || return 0
  read -r pid bin <"$dir/$name.pid" || true
  if [[ -n ${pid:-} ]] && alive "$pid"; then
    argv0=$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | head -n 1 || true)
    if [[ $argv0 == "$bin" ]]; then
      kill -TERM "$pid" 2>/dev/null || true
      for ((i = 0; i < 100; i++)); do
        alive "$pid" || break
        sleep 0.2
      done
      if alive "$pid"; then
        log "$name (pid $pid) ignored SIGTERM; killing"
        kill -KILL "$pid" 2>/dev/null || true
      fi
    else
      log "pid $pid is no longer $name; not killing it"
    fi
  fi
  rm -f "$dir/$name.pid"
}

on_start_exit() {
  local rc=$? i
  if ((!START_OK)) && [[ -n $START_DIR ]]; then
    ((WITH_NODE)) && node_stop "$START_DIR" 1
    for ((i = ${#STARTED[@]} - 1; i >= 0; i--)); do
      stop_component "$START_DIR" "${STARTED[i]}"
    done
    log "start failed; logs are kept in $START_DIR"
  fi
  exit "$rc"
}

fail_component() { # NAME MESSAGE
  local logf="$START_DIR/$1.log"
  printf '[control-plane] error: %s\n' "$2" >&2
  if [[ -f $logf ]]; then
    printf -- '----- last 40 lines of %s -----\n' "$logf" >&2
    tail -n 40 "$logf" >&2
    printf -- '-----\n' >&2
  fi
  exit 1
}

# wait_ready NAME PID CHECK...: polls CHECK until it succeeds, failing fast if
# the process dies and after START_TIMEOUT seconds.
wait_ready() {
  local name=$1 pid=$2 deadline=$((SECONDS + START_TIMEOUT))
  shift 2
  until "$@" >/dev/null 2>&1; do
    alive "$pid" || fail_component "$name" "$name exited during startup"
    ((SECONDS < deadline)) || fail_component "$name" "$name not ready after ${START_TIMEOUT}s"
    sleep 0.25
  done
}

etcd_healthy() { curl -fsS --max-time 2 "http://127.0.0.1:$1/health" | grep -q '"health":"true"'; }
https_ok() { # URL [TOKEN]
  curl -fsS --max-time 5 --cacert "$START_DIR/pki/ca.crt" ${2:+-H "Authorization: Bearer $2"} "$1" | grep -qx ok
}

write_kubeconfig() { # FILE USER TOKEN SERVER
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: scim-test
  cluster:
    server: $4
    certificate-authority-data: $(base64 -w0 <"$START_DIR/pki/ca.crt")
users:
- name: $2
  user:
    token: $3
contexts:
- name: scim-test
  context:
    cluster: scim-test
    user: $2
current-context: scim-test
EOF
  chmod 600 "$1"
}

make_pki() {
  local pki=$1
  mkdir -p "$pki"
  chmod 700 "$pki"
  openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 30 \
    -keyout "$pki/ca.key" -out "$pki/ca.crt" -subj "/CN=scim-operator-test-ca" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -sha256 -keyout "$pki/serving.key" \
    -out "$pki/serving.csr" -subj "/CN=kube-apiserver" 2>/dev/null
  printf '%s\n' \
    "basicConstraints=critical,CA:FALSE" \
    "keyUsage=critical,digitalSignature,keyEncipherment" \
    "extendedKeyUsage=serverAuth" \
    "subjectAltName=IP:127.0.0.1,IP:$NODE_IP,IP:${SERVICE_CIDR%.*}.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local" \
    >"$pki/serving.ext"
  openssl x509 -req -sha256 -days 30 -in "$pki/serving.csr" -CA "$pki/ca.crt" \
    -CAkey "$pki/ca.key" -set_serial "0x$(openssl rand -hex 8)" \
    -extfile "$pki/serving.ext" -out "$pki/serving.crt" 2>/dev/null
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$pki/sa.key" 2>/dev/null
  openssl pkey -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
  rm -f "$pki/serving.csr" "$pki/serving.ext"
}

cmd_start() {
  local t0 b a dir_arg=""
  t0=$(now)
  for a in "$@"; do
    case $a in
      --with-node) WITH_NODE=1 ;;
      -*) usage ;;
      *) dir_arg=$a ;;
    esac
  done
  set -- ${dir_arg:+"$dir_arg"}
  for b in openssl curl base64; do
    command -v "$b" >/dev/null || die "$b is required by start"
  done
  for b in kube-apiserver kubectl etcd; do
    [[ -x $KUBE_BIN/$b ]] || die "$KUBE_BIN/$b is missing; run '$0 build' first"
  done

  if [[ -n ${1:-} ]]; then
    START_DIR=$1
    mkdir -p "$START_DIR"
    [[ ! -e $START_DIR/env ]] || die "$START_DIR already holds a control plane; stop it first"
  else
    START_DIR=$(mktemp -d "${TMPDIR:-/tmp}/scim-control-plane.XXXXXX")
  fi
  START_DIR=$(cd "$START_DIR" && pwd)
  trap on_start_exit EXIT
  trap 'exit 130' INT TERM
  local bind_ip=127.0.0.1
  if ((WITH_NODE)); then
    node_preflight
    node_net_up "$START_DIR/node"
    bind_ip=$NODE_IP
  fi

  local etcd_port etcd_peer_port api_port kcm_port
  pick_port etcd_port
  pick_port etcd_peer_port
  pick_port api_port
  pick_port kcm_port

  make_pki "$START_DIR/pki"
  local admin_token user_token
  admin_token=$(openssl rand -hex 24)
  user_token=$(openssl rand -hex 24)
  printf '%s\n' \
    "$admin_token,admin,admin-uid,\"system:masters\"" \
    "$user_token,scim-test-user,scim-test-user-uid,\"scim-test-users\"" \
    >"$START_DIR/pki/tokens.csv"
  chmod 600 "$START_DIR/pki/tokens.csv"

  # etcd
  local etcd_flags=(
    --name=scim-test
    --data-dir="$START_DIR/etcd-data"
    --listen-client-urls="http://127.0.0.1:$etcd_port"
    --advertise-client-urls="http://127.0.0.1:$etcd_port"
    --listen-peer-urls="http://127.0.0.1:$etcd_peer_port"
    --initial-advertise-peer-urls="http://127.0.0.1:$etcd_peer_port"
    --initial-cluster="scim-test=http://127.0.0.1:$etcd_peer_port"
    --initial-cluster-state=new
    --log-level=warn
  )
  if "$KUBE_BIN/etcd" --help 2>&1 | grep -q -- '--unsafe-no-fsync'; then
    etcd_flags+=(--unsafe-no-fsync)
  fi
  launch etcd "$KUBE_BIN/etcd" "${etcd_flags[@]}"
  local etcd_pid
  etcd_pid=$(pid_of "$START_DIR" etcd)
  wait_ready etcd "$etcd_pid" etcd_healthy "$etcd_port"
  log "etcd ready on 127.0.0.1:$etcd_port ($(elapsed "$t0")s)"

  # kube-apiserver
  local server="https://$bind_ip:$api_port" node_api_flags=(--endpoint-reconciler-type=none --disable-admission-plugins=ServiceAccount)
  # With a node: the `kubernetes` Service points at the bridge address, and pods get tokens.
  ((WITH_NODE)) && node_api_flags=(--endpoint-reconciler-type=lease --kubelet-preferred-address-types=InternalIP)
  local extra_api_flags=()
  read -ra extra_api_flags <<<"${KUBE_APISERVER_EXTRA_FLAGS:-}"
  launch kube-apiserver "$KUBE_BIN/kube-apiserver" \
    --etcd-servers="http://127.0.0.1:$etcd_port" \
    --bind-address="$bind_ip" \
    --advertise-address="$bind_ip" \
    "${node_api_flags[@]}" \
    --secure-port="$api_port" \
    --tls-cert-file="$START_DIR/pki/serving.crt" \
    --tls-private-key-file="$START_DIR/pki/serving.key" \
    --client-ca-file="$START_DIR/pki/ca.crt" \
    --token-auth-file="$START_DIR/pki/tokens.csv" \
    --authorization-mode=RBAC \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$START_DIR/pki/sa.pub" \
    --service-account-signing-key-file="$START_DIR/pki/sa.key" \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --allow-privileged=true \
    --profiling=false \
    "${extra_api_flags[@]}"
  local api_pid
  api_pid=$(pid_of "$START_DIR" kube-apiserver)
  write_kubeconfig "$START_DIR/kubeconfig" admin "$admin_token" "$server"
  write_kubeconfig "$START_DIR/user-kubeconfig" scim-test-user "$user_token" "$server"
  wait_ready kube-apiserver "$api_pid" https_ok "$server/readyz" "$admin_token"
  wait_ready kube-apiserver "$api_pid" \
    "$KUBE_BIN/kubectl" --kubeconfig="$START_DIR/kubeconfig" get namespace default
  log "kube-apiserver ready at $server ($(elapsed "$t0")s)"

  # kube-controller-manager (optional)
  local kcm_pid="" kcm_controllers=$KCM_CONTROLLERS
  ((WITH_NODE)) && kcm_controllers+=",$KCM_NODE_CONTROLLERS"
  if [[ -x $KUBE_BIN/kube-controller-manager ]]; then
    launch kube-controller-manager "$KUBE_BIN/kube-controller-manager" \
      --kubeconfig="$START_DIR/kubeconfig" \
      --authentication-kubeconfig="$START_DIR/kubeconfig" \
      --authorization-kubeconfig="$START_DIR/kubeconfig" \
      --authentication-skip-lookup=true \
      --bind-address=127.0.0.1 \
      --secure-port="$kcm_port" \
      --tls-cert-file="$START_DIR/pki/serving.crt" \
      --tls-private-key-file="$START_DIR/pki/serving.key" \
      --leader-elect=false \
      --controllers="$kcm_controllers" \
      --service-account-private-key-file="$START_DIR/pki/sa.key" \
      --root-ca-file="$START_DIR/pki/ca.crt" \
      --use-service-account-credentials=false \
      --profiling=false
    kcm_pid=$(pid_of "$START_DIR" kube-controller-manager)
    wait_ready kube-controller-manager "$kcm_pid" https_ok "https://127.0.0.1:$kcm_port/healthz"
    log "kube-controller-manager ready ($(elapsed "$t0")s)"
  else
    log "kube-controller-manager not built: namespaces will stay Terminating"
  fi

  NODE_ENV=()
  ((WITH_NODE)) && node_start "$t0"

  local helm_bin=""
  [[ -x $KUBE_BIN/helm ]] && helm_bin="$KUBE_BIN/helm"
  mkdir -p "$START_DIR/helm/cache" "$START_DIR/helm/config" "$START_DIR/helm/data"
  {
    printf '# Generated by control-plane.sh start; source this file.\n'
    local kv
    for kv in \
      "CONTROL_PLANE_DIR=$START_DIR" \
      "CONTROL_PLANE_BIN=$KUBE_BIN" \
      "KUBECONFIG=$START_DIR/kubeconfig" \
      "KUBECONFIG_USER=$START_DIR/user-kubeconfig" \
      "KUBE_APISERVER_URL=$server" \
      "KUBE_CA_FILE=$START_DIR/pki/ca.crt" \
      "KUBE_ADMIN_TOKEN=$admin_token" \
      "KUBE_USER_NAME=scim-test-user" \
      "KUBE_USER_TOKEN=$user_token" \
      "KUBECTL=$KUBE_BIN/kubectl" \
      "HELM=$helm_bin" \
      "HELM_CACHE_HOME=$START_DIR/helm/cache" \
      "HELM_CONFIG_HOME=$START_DIR/helm/config" \
      "HELM_DATA_HOME=$START_DIR/helm/data" \
      "ETCD_ENDPOINT=http://127.0.0.1:$etcd_port" \
      "ETCD_PID=$etcd_pid" \
      "KUBE_APISERVER_PID=$api_pid" \
      "KUBE_CONTROLLER_MANAGER_PID=$kcm_pid" \
      ${NODE_ENV[@]+"${NODE_ENV[@]}"}; do
      printf 'export %s=%q\n' "${kv%%=*}" "${kv#*=}"
    done
  } >"$START_DIR/env"
  chmod 600 "$START_DIR/env"
  START_OK=1
  log "control plane ready in $(elapsed "$t0")s: . $START_DIR/env"
  printf '%s\n' "$START_DIR"
}

# -------------------------------------------------------------------- stop
cmd_stop() {
  local dir="" keep_logs=0 a
  for a in "$@"; do
    case $a in
      --keep-logs) keep_logs=1 ;;
      -*) usage ;;
      *) dir=$a ;;
    esac
  done
  [[ -n $dir ]] || usage
  [[ -d $dir ]] || die "$dir does not exist"
  node_stop "$dir" "$keep_logs"
  stop_component "$dir" kube-controller-manager
  stop_component "$dir" kube-apiserver
  stop_component "$dir" etcd
  rm -rf "${dir:?}/etcd-data" "${dir:?}/pki" "${dir:?}/helm"
  rm -f "$dir/env" "$dir/kubeconfig" "$dir/user-kubeconfig"
  if ((keep_logs)); then
    log "stopped; logs kept in $dir"
  else
    rm -f "$dir/etcd.log" "$dir/kube-apiserver.log" "$dir/kube-controller-manager.log"
    rmdir "$dir" 2>/dev/null || log "stopped; $dir is not empty, left in place"
  fi
}

case ${1:-} in
  build) shift; cmd_build "$@" ;;
  start) shift; cmd_start "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  env) shift; cmd_env "$@" ;;
  -h | --help | help) usage 0 ;;
  *) usage ;;
esac
