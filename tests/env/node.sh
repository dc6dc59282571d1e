# shellcheck shell=bash
# The node of the test control plane: sourced by control-plane.sh for
# `build --with-node` and `start DIR --with-node`; `stop DIR` tears it down.
#
# What runs (everything on this machine, nothing pulled from a registry):
#   kubelet, kube-scheduler, kube-proxy  built from the same k8s.io/kubernetes
#                                        release as the API server (Go modules)
#   CoreDNS                              built from github.com/coredns/coredns with
#                                        only bind/ready/health/errors/cache/kubernetes
#                                        compiled in, run as a host process on the
#                                        bridge address: it answers cluster names only
#                                        (no `forward` plugin exists in the binary)
#   containerd + runc                    Debian's packages (containerd 1.6.20, runc
#                                        1.1.5), with their own config, root, state
#                                        and socket inside DIR/node
#   CNI bridge + host-local (+ loopback) Debian's containernetworking-plugins
#   pause image                          a static Go program packed with buildah and
#                                        imported with `ctr -n k8s.io images import`
#   storage                              a default StorageClass `local-hostpath` with
#                                        statically created hostPath PVs in DIR/node/pv
#
# Findings on this machine (a Firecracker VM, kernel 6.18, root, no systemd,
# cgroups v1 hybrid, iptables 1.8.9 nf_tables, no br_netfilter module loader):
#   - kubelet 1.35 refuses cgroup v1 unless `failCgroupV1: false`; with no
#     systemd the cgroup driver is `cgroupfs` (kubelet and containerd alike).
#   - the VM refuses to lower oom_score_adj: without containerd's CRI
#     `restrict_oom_score_adj = true` runc fails with "can't get final child's
#     PID from pipe" (`runc --debug`: "failed to update /proc/self/oom_score_adj:
#     Permission denied").
#   - kubelet refuses a loopback node IP, and `kubectl logs`/`port-forward` need
#     a node address: the node's address is the bridge's own address, and the
#     API server listens there (not on 127.0.0.1) so pods reach it through the
#     `kubernetes` Service too.
#   - without br_netfilter, replies of a pod reached through a Service on the
#     same bridge would bypass conntrack: kube-proxy runs with masqueradeAll so
#     every Service connection is routed through this host and un-NATed here.
#   - hostPath volumes ignore fsGroup, so the PV directories are mode 0777 (as
#     local-path-provisioner creates them).
#
# Network safety (nothing a pod or the node sends may leave this machine):
#   - pods live on the bridge NODE_BRIDGE (NODE_IP/24), which has no uplink;
#   - blackhole routes for the pod range (NODE_POD_BLACKHOLE, wider than the
#     bridge's /24) and the Service range (SERVICE_CIDR): a Service address
#     kube-proxy does not DNAT dies here instead of following the default route;
#   - the iptables chain NODE_GUARD_CHAIN, first in FORWARD: bridge to bridge is
#     accepted, anything else from or to the bridge is dropped (ip_forward has
#     to be 1 for Service traffic routed back into the bridge; its old value is
#     restored on stop); first in INPUT: pods cannot reach the kubelet port;
#   - kube-proxy's NodePorts listen on the bridge address only;
#   - pods' resolv.conf names the cluster DNS only (kubelet `resolvConf` is an
#     empty file, so no host resolver or search domain is copied in);
#   - containerd's registry configuration sends every pull to 127.0.0.1:9
#     (nothing listens there): an image that was not imported fails locally.
# `stop` undoes all of it: pods, containerd tasks and shims, netns, mounts,
# cgroups, kube-proxy's rules (`kube-proxy --cleanup`), the guard chain,
# routes, the bridge and ip_forward.

NODE_NAME="scim-node"
NODE_BRIDGE="scimbr0"
NODE_IP="10.244.0.1"
NODE_POD_SUBNET="10.244.0.0/24"
NODE_POD_BLACKHOLE="10.244.0.0/16"
SERVICE_CIDR="10.0.0.0/24"
NODE_GUARD_CHAIN="SCIM-NODE-GUARD"
COREDNS_VERSION="v1.14.7"
NODE_PV_COUNT=4
NODE_PAUSE_IMAGE="localhost/scim-pause:1"
NODE_DIR_CACHE="$CACHE_ROOT/node"
COREDNS_DIR="$CACHE_ROOT/coredns/$COREDNS_VERSION"
NODE_DEBIAN_PACKAGES=(containerd runc containernetworking-plugins iptables conntrack buildah)

# ------------------------------------------------------------------- build
node_packages() {
  local missing=() p
  for p in "${NODE_DEBIAN_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  ((EUID == 0)) || die "the node needs Debian packages ${missing[*]} (apt-get install them as root)"
  log "installing Debian packages: ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 ||
    { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2; } ||
    die "apt-get install ${missing[*]} failed"
}

build_coredns() {
  local bin="$COREDNS_DIR/bin/coredns" src="$COREDNS_DIR/src" t0
  if [[ -x $bin ]] && "$bin" -version 2>/dev/null | grep -q "CoreDNS-${COREDNS_VERSION#v}"; then
    log "coredns $COREDNS_VERSION: cached"
    return 0
  fi
  t0=$(now)
  log "building coredns $COREDNS_VERSION (cluster names only) ..."
  mkdir -p "$src" "$COREDNS_DIR/bin"
  cat >"$src/go.mod" <<EOF
// Generated by tests/env/node.sh; do not edit.
module scim-operator-test/coredns-wrapper

go 1.25

require github.com/coredns/coredns $COREDNS_VERSION
EOF
  # Only the plugins the node needs: there is no `forward`, so CoreDNS cannot
  # send a query anywhere but the API server.
  cat >"$src/main.go" <<'EOF'
// Generated by tests/env/node.sh; do not edit.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/ready"
)

func init() {
	dnsserver.Directives = []string{"bind", "ready", "health", "errors", "cache", "kubernetes"}
}

func main() { coremain.Run() }
EOF
  (cd "$src" && CGO_ENABLED=0 GOFLAGS="-mod=mod ${GOFLAGS:-}" go build -trimpath \
    -ldflags "-s -w" -o "$COREDNS_DIR/bin/.coredns.tmp" .) || die "building coredns failed"
  mv -f "$COREDNS_DIR/bin/.coredns.tmp" "$bin"
  log "built coredns $COREDNS_VERSION in $(elapsed "$t0")s"
}

# The sandbox ("pause") image: a static program that sleeps until signalled and
# reaps children, packed as a one-layer image.
build_pause() {
  local src="$NODE_DIR_CACHE/pause-src" tar="$NODE_DIR_CACHE/pause.tar" t0 ctr
  [[ -s $tar ]] && { log "pause image: cached"; return 0; }
  t0=$(now)
  mkdir -p "$src"
  cat >"$src/main.go" <<'EOF'
// Generated by tests/env/node.sh; do not edit. The pod sandbox's process.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sig {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
EOF
  printf 'module scim-operator-test/pause\n\ngo 1.22\n' >"$src/go.mod"
  (cd "$src" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o pause .) || die "building pause failed"
  ctr=$(buildah --storage-driver vfs from scratch) || die "buildah from scratch failed"
  buildah --storage-driver vfs copy "$ctr" "$src/pause" /pause >/dev/null
  buildah --storage-driver vfs config --entrypoint '["/pause"]' --user 65535:65535 "$ctr"
  buildah --storage-driver vfs commit -q "$ctr" "$NODE_PAUSE_IMAGE" >/dev/null
  buildah --storage-driver vfs rm "$ctr" >/dev/null
  rm -f "$tar.tmp"
  buildah --storage-driver vfs push -q "$NODE_PAUSE_IMAGE" "docker-archive:$tar.tmp:$NODE_PAUSE_IMAGE" ||
    die "exporting the pause image failed"
  mv -f "$tar.tmp" "$tar"
  log "built the pause image in $(elapsed "$t0")s"
}

node_build() {
  node_packages
  build_coredns
  mkdir -p "$NODE_DIR_CACHE"
  build_pause
}

# ------------------------------------------------------------------- start
node_preflight() {
  ((EUID == 0)) || die "--with-node needs root (kubelet, containerd, bridge, iptables)"
  local b
  for b in kubelet kube-scheduler kube-proxy; do
    [[ -x $KUBE_BIN/$b ]] || die "$KUBE_BIN/$b is missing; run '$0 build --with-node' first"
  done
  [[ -x $COREDNS_DIR/bin/coredns && -s $NODE_DIR_CACHE/pause.tar ]] ||
    die "coredns or the pause image is missing; run '$0 build --with-node' first"
  for b in containerd ctr runc iptables ip conntrack; do
    command -v "$b" >/dev/null || die "$b is missing; run '$0 build --with-node' first"
  done
  ! ip link show "$NODE_BRIDGE" >/dev/null 2>&1 ||
    die "bridge $NODE_BRIDGE exists: another node is running (stop its DIR first; one node per machine)"
}

# Bridge, routes and guard rules; written down in DIR/node/net.state so stop
# undoes exactly this.
node_net_up() {
  local nd=$1
  mkdir -p "$nd"
  printf 'ip_forward=%s\n' "$(cat /proc/sys/net/ipv4/ip_forward)" >"$nd/net.state"
  ip link add "$NODE_BRIDGE" type bridge
  echo "bridge=$NODE_BRIDGE" >>"$nd/net.state"
  [[ -w /proc/sys/net/ipv6/conf/$NODE_BRIDGE/disable_ipv6 ]] &&
    echo 1 >"/proc/sys/net/ipv6/conf/$NODE_BRIDGE/disable_ipv6"
  ip addr add "$NODE_IP/24" dev "$NODE_BRIDGE"
  ip link set "$NODE_BRIDGE" up
  ip route add blackhole "$NODE_POD_BLACKHOLE"
  echo "route=$NODE_POD_BLACKHOLE" >>"$nd/net.state"
  ip route add blackhole "$SERVICE_CIDR"
  echo "route=$SERVICE_CIDR" >>"$nd/net.state"
  iptables -w -N "$NODE_GUARD_CHAIN"
  echo "chain=$NODE_GUARD_CHAIN" >>"$nd/net.state"
  iptables -w -A "$NODE_GUARD_CHAIN" -i "$NODE_BRIDGE" -o "$NODE_BRIDGE" -j ACCEPT
  iptables -w -A "$NODE_GUARD_CHAIN" -i "$NODE_BRIDGE" -j DROP
  iptables -w -A "$NODE_GUARD_CHAIN" -o "$NODE_BRIDGE" -j DROP
  iptables -w -I FORWARD 1 -j "$NODE_GUARD_CHAIN"
  echo 1 >/proc/sys/net/ipv4/ip_forward
}

node_net_guard_kubelet() { # PORT: pods may not talk to the kubelet's API
  iptables -w -N "$NODE_GUARD_CHAIN-IN"
  echo "chain=$NODE_GUARD_CHAIN-IN" >>"$1/net.state"
  iptables -w -A "$NODE_GUARD_CHAIN-IN" -i "$NODE_BRIDGE" -p tcp --dport "$2" -j DROP
  iptables -w -I INPUT 1 -j "$NODE_GUARD_CHAIN-IN"
}

node_net_down() {
  local nd=$1 line key val
  [[ -f $nd/net.state ]] || return 0
  while IFS= read -r line; do
    key=${line%%=*} val=${line#*=}
    case $key in
      chain)
        local parent=FORWARD
        [[ $val == *-IN ]] && parent=INPUT
        while iptables -w -D "$parent" -j "$val" 2>/dev/null; do :; done
        iptables -w -F "$val" 2>/dev/null || true
        iptables -w -X "$val" 2>/dev/null || true ;;
      route) ip route del blackhole "$val" 2>/dev/null || true ;;
      bridge) ip link del "$val" 2>/dev/null || true ;;
      ip_forward) echo "$val" >/proc/sys/net/ipv4/ip_forward ;;
    esac
  done < <(tac "$nd/net.state")
  rm -f "$nd/net.state"
}

node_pki() { # kubelet serving certificate for the node address
  local pki=$1
  openssl req -newkey rsa:2048 -nodes -sha256 -keyout "$pki/kubelet.key" \
    -out "$pki/kubelet.csr" -subj "/CN=$NODE_NAME" 2>/dev/null
  printf '%s\n' "basicConstraints=critical,CA:FALSE" \
    "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth" \
    "subjectAltName=IP:$NODE_IP,DNS:$NODE_NAME" >"$pki/kubelet.ext"
  openssl x509 -req -sha256 -days 30 -in "$pki/kubelet.csr" -CA "$pki/ca.crt" \
    -CAkey "$pki/ca.key" -set_serial "0x$(openssl rand -hex 8)" \
    -extfile "$pki/kubelet.ext" -out "$pki/kubelet.crt" 2>/dev/null
  rm -f "$pki/kubelet.csr" "$pki/kubelet.ext"
}

write_containerd_config() {
  local nd=$1
  mkdir -p "$nd/containerd/root" "$nd/containerd/state" "$nd/cni" "$nd/cni-ipam" "$nd/certs.d/_default"
  cat >"$nd/containerd.toml" <<EOF
version = 2
root = "$nd/containerd/root"
state = "$nd/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "$nd/containerd.sock"
[ttrpc]
  address = "$nd/containerd.ttrpc.sock"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$nd/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$NODE_PAUSE_IMAGE"
  # This VM refuses to lower oom_score_adj (see the header of this file).
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$nd/cni"
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".registry]
    # Every registry resolves to a port nothing listens on: no pull leaves.
    config_path = "$nd/certs.d"
EOF
  cat >"$nd/certs.d/_default/hosts.toml" <<'EOF'
server = "http://127.0.0.1:9"
[host."http://127.0.0.1:9"]
  capabilities = ["pull", "resolve"]
EOF
  cat >"$nd/cni/10-scim-node.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "scim-node",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$NODE_BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$NODE_POD_SUBNET", "rangeStart": "${NODE_IP%.*}.10", "gateway": "$NODE_IP"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "$nd/cni-ipam"
      }
    }
  ]
}
EOF
}

write_kubelet_config() { # ND PKI PORT HEALTHZ_PORT
  local nd=$1 pki=$2
  : >"$nd/resolv.conf"
  cat >"$nd/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$nd/containerd.sock
address: $NODE_IP
port: $3
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $4
tlsCertFile: $pki/kubelet.crt
tlsPrivateKeyFile: $pki/kubelet.key
# Only the API server talks to this port (pods are blocked by the guard chain).
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}
clusterDomain: cluster.local
clusterDNS: [$NODE_IP]
# Empty: pods get the cluster DNS and its search path only.
resolvConf: $nd/resolv.conf
failSwapOn: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%"}
serializeImagePulls: false
staticPodPath: ""
EOF
}

write_kube_proxy_config() { # ND HEALTHZ_PORT METRICS_PORT
  cat >"$1/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: $START_DIR/kubeconfig
hostnameOverride: $NODE_NAME
mode: iptables
clusterCIDR: $NODE_POD_SUBNET
healthzBindAddress: 127.0.0.1:$2
metricsBindAddress: 127.0.0.1:$3
nodePortAddresses: ["$NODE_IP/32"]
iptables:
  # No br_netfilter here: route every Service connection through this host.
  masqueradeAll: true
conntrack:
  maxPerCore: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
EOF
}

write_corefile() { # ND READY_PORT HEALTH_PORT
  cat >"$1/Corefile" <<EOF
# Cluster names only: no forward, nothing leaves this machine.
cluster.local:53 in-addr.arpa:53 ip6.arpa:53 {
    bind $NODE_IP
    errors
    ready 127.0.0.1:$2
    health 127.0.0.1:$3
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $START_DIR/kubeconfig scim-test
        pods insecure
        ttl 5
    }
    cache 5
}
EOF
}

node_ready() { "$KUBE_BIN/kubectl" --kubeconfig="$START_DIR/kubeconfig" get node "$NODE_NAME" \
  -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null | grep -qx True; }
ctr_ok() { ctr --address "$1/containerd.sock" version; }
http_ok() { curl -fsS --max-time 2 "$1"; }
dns_ok() { # the kubernetes Service resolves through CoreDNS
  getent_dns kubernetes.default.svc.cluster.local | grep -q '^10\.0\.0\.1$'
}
getent_dns() { # NAME: A records from CoreDNS (no dig on a plain machine)
  python3 - "$1" "$NODE_IP" <<'EOF'
import socket, struct, sys
name, server = sys.argv[1], sys.argv[2]
q = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
q += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0" + struct.pack(">HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)
s.sendto(q, (server, 53)); r = s.recv(512)
an = struct.unpack(">H", r[6:8])[0]; i = 12
while r[i]: i += r[i] + 1
i += 5
def skip(i):
    while r[i] and r[i] & 0xC0 != 0xC0: i += r[i] + 1
    return i + (2 if r[i] else 1)
for _ in range(an):
    i = skip(i)
    t, _, _, l = struct.unpack(">HHIH", r[i:i + 10]); i += 10
    if t == 1: print(socket.inet_ntoa(r[i:i + l]))
    i += l
EOF
}

# node_start: after the API server and kube-controller-manager are up.
node_start() {
  local nd="$START_DIR/node" t0=$1 kubectl="$KUBE_BIN/kubectl --kubeconfig=$START_DIR/kubeconfig"
  local sched_port kubelet_port kubelet_healthz proxy_healthz proxy_metrics dns_ready dns_health
  pick_port sched_port
  pick_port kubelet_port
  pick_port kubelet_healthz
  pick_port proxy_healthz
  pick_port proxy_metrics
  pick_port dns_ready
  pick_port dns_health

  launch kube-scheduler "$KUBE_BIN/kube-scheduler" \
    --kubeconfig="$START_DIR/kubeconfig" \
    --authentication-kubeconfig="$START_DIR/kubeconfig" \
    --authorization-kubeconfig="$START_DIR/kubeconfig" \
    --authentication-skip-lookup=true \
    --bind-address=127.0.0.1 --secure-port="$sched_port" \
    --tls-cert-file="$START_DIR/pki/serving.crt" \
    --tls-private-key-file="$START_DIR/pki/serving.key" \
    --leader-elect=false --profiling=false
  wait_ready kube-scheduler "$(pid_of "$START_DIR" kube-scheduler)" \
    https_ok "https://127.0.0.1:$sched_port/healthz"
  log "kube-scheduler ready ($(elapsed "$t0")s)"

  write_containerd_config "$nd"
  launch containerd "$(command -v containerd)" --config "$nd/containerd.toml" --log-level warn
  wait_ready containerd "$(pid_of "$START_DIR" containerd)" ctr_ok "$nd"
  ctr --address "$nd/containerd.sock" -n k8s.io images import "$NODE_DIR_CACHE/pause.tar" >/dev/null ||
    fail_component containerd "importing the pause image failed"
  log "containerd ready, pause image imported ($(elapsed "$t0")s)"

  node_pki "$START_DIR/pki"
  write_kubelet_config "$nd" "$START_DIR/pki" "$kubelet_port" "$kubelet_healthz"
  node_net_guard_kubelet "$nd" "$kubelet_port"
  mkdir -p "$nd/kubelet"
  launch kubelet "$KUBE_BIN/kubelet" \
    --config="$nd/kubelet.yaml" \
    --kubeconfig="$START_DIR/kubeconfig" \
    --root-dir="$nd/kubelet" \
    --hostname-override="$NODE_NAME" \
    --node-ip="$NODE_IP" \
    --v=1

  write_kube_proxy_config "$nd" "$proxy_healthz" "$proxy_metrics"
  launch kube-proxy "$KUBE_BIN/kube-proxy" --config="$nd/kube-proxy.yaml" --v=1

  write_corefile "$nd" "$dns_ready" "$dns_health"
  launch coredns "$COREDNS_DIR/bin/coredns" -conf "$nd/Corefile"

  local old_timeout=$START_TIMEOUT
  START_TIMEOUT=120
  wait_ready kubelet "$(pid_of "$START_DIR" kubelet)" node_ready
  wait_ready kube-proxy "$(pid_of "$START_DIR" kube-proxy)" http_ok "http://127.0.0.1:$proxy_healthz/healthz"
  wait_ready coredns "$(pid_of "$START_DIR" coredns)" http_ok "http://127.0.0.1:$dns_ready/ready"
  wait_ready coredns "$(pid_of "$START_DIR" coredns)" dns_ok
  START_TIMEOUT=$old_timeout
  log "node $NODE_NAME Ready, kube-proxy and CoreDNS serving ($(elapsed "$t0")s)"

  # Storage: a default StorageClass with hostPath PVs (no provisioner needed).
  local i pvs=""
  for ((i = 0; i < NODE_PV_COUNT; i++)); do
    mkdir -p "$nd/pv/pv$i"
    chmod 0777 "$nd/pv/pv$i"
    pvs+="---
apiVersion: v1
kind: PersistentVolume
metadata: {name: scim-node-pv$i, labels: {scim-operator-test/node: \"true\"}}
spec:
  capacity: {storage: 2Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: local-hostpath
  hostPath: {path: $nd/pv/pv$i, type: Directory}
"
  done
  $kubectl apply -f - >/dev/null <<EOF || die "creating the StorageClass and PVs failed"
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: local-hostpath
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: Immediate
reclaimPolicy: Retain
$pvs
EOF
  NODE_ENV=(
    "NODE_NAME=$NODE_NAME"
    "NODE_IP=$NODE_IP"
    "CONTAINERD_ADDRESS=$nd/containerd.sock"
    "KUBELET_PID=$(pid_of "$START_DIR" kubelet)"
  )
}

# ------------------------------------------------------------------- stop
# Lists the network namespaces of this containerd's sandboxes.
node_netns_of() {
  local sock=$1 id
  for id in $(ctr --address "$sock" -n k8s.io containers ls -q 2>/dev/null); do
    ctr --address "$sock" -n k8s.io containers info "$id" 2>/dev/null |
      sed -n 's/.*"path": *"\(\/var\/run\/netns\/[^"]*\)".*/\1/p'
  done | sort -u
}

# The kubelet's own chains (KUBE-FIREWALL, KUBE-KUBELET-CANARY, KUBE-IPTABLES-HINT) outlive it.
node_kubelet_iptables_cleanup() {
  local ipt table chain
  for ipt in iptables ip6tables; do
    command -v "$ipt" >/dev/null || continue
    for table in filter nat mangle; do
      for chain in INPUT OUTPUT FORWARD PREROUTING POSTROUTING; do
        while "$ipt" -w -t "$table" -D "$chain" -j KUBE-FIREWALL 2>/dev/null; do :; done
      done
      for chain in KUBE-FIREWALL KUBE-KUBELET-CANARY KUBE-IPTABLES-HINT; do
        "$ipt" -w -t "$table" -F "$chain" 2>/dev/null || true
        "$ipt" -w -t "$table" -X "$chain" 2>/dev/null || true
      done
    done
  done
}

node_stop() { # DIR KEEP_LOGS
  local dir=$1 keep_logs=${2:-0} nd="$1/node" sock="$1/node/containerd.sock" kubectl id pid i netns=()
  [[ -d $nd ]] || return 0
  kubectl="$KUBE_BIN/kubectl --kubeconfig=$dir/kubeconfig --request-timeout=10s"
  # No new pods get a node, then the kubelet tears the existing ones down (CNI DEL included).
  stop_component "$dir" kube-scheduler
  if [[ -S $sock ]] && [[ -f $dir/kubelet.pid ]]; then
    $kubectl delete pods --all --all-namespaces --grace-period=0 --force --wait=false >/dev/null 2>&1 || true
    for ((i = 0; i < 60; i++)); do
      [[ -z $(ctr --address "$sock" -n k8s.io tasks ls -q 2>/dev/null) ]] && break
      sleep 0.5
    done
  fi
  stop_component "$dir" kubelet
  node_kubelet_iptables_cleanup
  stop_component "$dir" coredns
  stop_component "$dir" kube-proxy
  [[ -f $nd/kube-proxy.yaml ]] && "$KUBE_BIN/kube-proxy" --cleanup --config="$nd/kube-proxy.yaml" >/dev/null 2>&1 || true
  if [[ -S $sock ]]; then
    mapfile -t netns < <(node_netns_of "$sock")
    for id in $(ctr --address "$sock" -n k8s.io tasks ls -q 2>/dev/null); do
      ctr --address "$sock" -n k8s.io tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true
    done
    sleep 0.5
    for id in $(ctr --address "$sock" -n k8s.io tasks ls -q 2>/dev/null); do
      ctr --address "$sock" -n k8s.io tasks delete -f "$id" >/dev/null 2>&1 || true
    done
    for id in $(ctr --address "$sock" -n k8s.io containers ls -q 2>/dev/null); do
      ctr --address "$sock" -n k8s.io containers delete "$id" >/dev/null 2>&1 || true
    done
  fi
  stop_component "$dir" containerd
  # Shims of this containerd that outlived it (matched by our socket path).
  for pid in $(pgrep -f "containerd-shim-runc-v2 .*-address $sock" 2>/dev/null || true); do
    kill -KILL "$pid" 2>/dev/null || true
  done
  for id in "${netns[@]}"; do
    [[ -n $id ]] && ip netns delete "${id##*/}" 2>/dev/null || true
  done
  # Mounts under DIR (pod volumes, container root filesystems), deepest first.
  awk -v p="$nd/" 'index($2, p) == 1 { print $2 }' /proc/mounts | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done
  # Pod cgroups the kubelet created (it never removes its own QoS tree).
  local c
  for c in /sys/fs/cgroup/*/kubepods; do
    [[ -d $c ]] && find "$c" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
  node_net_down "$nd"
  if awk -v p="$nd/" 'index($2, p) == 1 { found = 1 } END { exit !found }' /proc/mounts; then
    log "mounts under $nd remain; leaving it in place"
  else
    rm -rf "${nd:?}"
  fi
  ((keep_logs)) || rm -f "$dir/kube-scheduler.log" "$dir/kubelet.log" "$dir/kube-proxy.log" "$dir/coredns.log" "$dir/containerd.log"
}
