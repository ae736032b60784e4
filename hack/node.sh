#!/usr/bin/env bash
# A real worker node for the test cluster of hack/cluster.sh: a kubelet (built from
# the same k8s.io/kubernetes module version as the control plane) on containerd and
# runc from Debian, with a CNI bridge whose pods run for real on this machine.
#
# usage: hack/node.sh up|down|status|info|load ARCHIVE...|ctr ARGS...
#   up      join the running cluster (hack/cluster.sh up first), wait until the node
#           is Ready; idempotent, re-joins a restarted cluster
#   down    stop the kubelet, every pod container and shim, containerd; unmount
#           everything under the node directory, delete the bridge and the pods'
#           cgroups, restore the sysctls the kubelet changed; keeps the logs
#   status  exit 0 when the node's processes run and the node is Ready
#   info    key=value lines: node_name, node_ip, containerd_address, node_dir, ...
#   load    import docker-archive/OCI tarballs into the node's image store
#   ctr     run ctr against the node's containerd (namespace k8s.io)
#
# Everything stays on this machine: the node IP is the address of a Linux bridge
# this script creates (pods sit on the same bridge, on-link, with no default route
# and no NAT), the kubelet talks to the apiserver on 127.0.0.1, and images come from
# local archives (pause: hack/pause/build.sh; braid's: hack/build-images.sh), never a
# registry: pods use imagePullPolicy Never (or IfNotPresent with the image loaded).
#
# Several clusters on one machine (several BRAID_CLUSTER_DIRs) each get a node of
# their own: `up` claims a free slot n in /run/braid-node, which gives the node its
# bridge braid<n>, its IP <net>.<n>.1 (pods: the rest of <net>.<n>.0/24), its cgroup
# parent /braid-node-<n> and its image store ~/.cache/braid/node/containerd-<n>
# (kept across `down`, so images loaded once stay loaded).
#
# Needs root. Environment:
#   BRAID_CLUSTER_DIR  the cluster's state dir (default /tmp/braid-cluster); the node
#                      lives in $BRAID_CLUSTER_DIR/node, its logs in .../logs
#   BRAID_NODE_NAME    default braid-node
#   BRAID_NODE_NET     first two octets of the node networks (default 10.217)
#   BRAID_NODE_TIMEOUT seconds to wait for Ready (default 180)
set -euo pipefail

HACK="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STATE="${BRAID_CLUSTER_DIR:-/tmp/braid-cluster}"
STATE="${STATE%/}"
export BRAID_CLUSTER_DIR="$STATE"
NODE_DIR="$STATE/node"
LOGS="$STATE/logs"
NODE_NAME="${BRAID_NODE_NAME:-braid-node}"
NET="${BRAID_NODE_NET:-10.217}"
TIMEOUT="${BRAID_NODE_TIMEOUT:-180}"
SOCK="$NODE_DIR/containerd.sock"
CACHE="${BRAID_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/braid}"
CNI_BIN=/usr/lib/cni
# machine-wide: which node dir holds which slot, the lock over them, saved sysctls
REGISTRY=/run/braid-node
MAX_SLOTS=32
# what the kubelet sets when it starts (container_manager_linux.go: setupKernelTunables):
# saved when the first node of the machine comes up, put back when the last goes down
SYSCTLS=(vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops
         kernel/keys/root_maxkeys kernel/keys/root_maxbytes)

log() { echo "node.sh: $*" >&2; }
die() { log "$*"; exit 1; }

[[ "$NET" =~ ^([0-9]{1,3})\.([0-9]{1,3})$ ]] && [ "${BASH_REMATCH[1]}" -le 255 ] && [ "${BASH_REMATCH[2]}" -le 255 ] ||
  die "BRAID_NODE_NET=$NET: want the first two octets of an IPv4 network, e.g. 10.217"

# --- the cluster this node joins ----------------------------------------------

cluster_info() {
  local line
  while IFS= read -r line; do
    case "$line" in
      source=*) CLUSTER_SOURCE="${line#source=}" ;;
      kubeconfig=*) ADMIN_KUBECONFIG="${line#kubeconfig=}" ;;
      kubectl=*) KUBECTL="${line#kubectl=}" ;;
    esac
  done < <("$HACK/cluster.sh" info)
}

kc() { "$KUBECTL" --kubeconfig "$ADMIN_KUBECONFIG" --request-timeout=10s "$@"; }

api_server_url() {
  sed -nE 's/^ *server: *(https?:\/\/[^ ]+) *$/\1/p' "$ADMIN_KUBECONFIG" | head -n 1
}

# --- slots: one per node on this machine ----------------------------------------

# slot_vars <n>: the names and addresses of node n
slot_vars() {
  SLOT="$1"
  BRIDGE="braid$SLOT"
  NODE_IP="$NET.$SLOT.1"
  NODE_CIDR="$NET.$SLOT.0/24"
  CGROUP_PARENT="braid-node-$SLOT"
  IMAGE_STORE="${BRAID_NODE_IMAGE_STORE:-$CACHE/node/containerd-$SLOT}"
}

# the slot of this node dir, if it holds one
own_slot() {
  local f
  for f in "$REGISTRY"/slot-*; do
    [ -f "$f" ] && [ "$(cat "$f")" = "$NODE_DIR" ] && { echo "${f##*slot-}"; return 0; }
  done
  return 1
}

# A slot is in use while its node's containerd or kubelet runs, or while someone
# holds its cluster's node lock (an `up` or `down` in progress).
slot_in_use() {
  local owner="$1" c pid
  for c in containerd kubelet; do
    pid="$(cat "$owner/run/$c.pid" 2>/dev/null)" || continue
    [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -qF -- "$owner/" && return 0
  done
  [ -e "$(dirname "$owner").node.lock" ] && ! flock -n "$(dirname "$owner").node.lock" true && return 0
  return 1
}

machine_lock() {
  mkdir -p "$REGISTRY"
  exec 7> "$REGISTRY/lock"
  flock 7
}

machine_unlock() { exec 7>&-; }

claim_slot() {
  local n f owner
  machine_lock
  if n="$(own_slot)"; then slot_vars "$n"; machine_unlock; return; fi
  for ((n = 0; n < MAX_SLOTS; n++)); do
    f="$REGISTRY/slot-$n"
    if [ -f "$f" ]; then
      owner="$(cat "$f")"
      slot_in_use "$owner" && continue
      log "reclaiming slot $n from $owner (its node died without hack/node.sh down)"
      slot_vars "$n"
      clean_slot "$owner"
      rm -f "$f"
    elif ip link show "braid$n" >/dev/null 2>&1 || [ -n "$(ss -Htln "src $NET.$n.1" 2>/dev/null)" ]; then
      continue  # not ours: a bridge or an address someone else made
    fi
    # the first node on the machine keeps what the kubelet is about to change
    if ! ls "$REGISTRY"/slot-* >/dev/null 2>&1; then save_sysctls; fi
    echo "$NODE_DIR" > "$f"
    slot_vars "$n"
    machine_unlock
    return
  done
  machine_unlock
  die "all $MAX_SLOTS node slots of this machine are in use (see $REGISTRY)"
}

release_slot() {
  local f="$REGISTRY/slot-$SLOT"
  machine_lock
  [ -f "$f" ] && [ "$(cat "$f")" = "$NODE_DIR" ] && rm -f "$f"
  if ! ls "$REGISTRY"/slot-* >/dev/null 2>&1; then restore_sysctls; fi
  machine_unlock
}

save_sysctls() {
  local s
  [ -f "$REGISTRY/sysctl.orig" ] && return
  for s in "${SYSCTLS[@]}"; do
    [ -r "/proc/sys/$s" ] && echo "$s $(cat "/proc/sys/$s")"
  done > "$REGISTRY/sysctl.orig"
}

restore_sysctls() {
  local f="$REGISTRY/sysctl.orig" s v
  [ -f "$f" ] || return 0
  while read -r s v; do
    [ "$(cat "/proc/sys/$s" 2>/dev/null)" = "$v" ] || echo "$v" > "/proc/sys/$s" 2>/dev/null || log "could not restore $s=$v"
  done < "$f"
  rm -f "$f"
}

# --- prerequisites --------------------------------------------------------------

ensure_packages() {
  local missing=()
  command -v containerd >/dev/null || missing+=(containerd)
  command -v runc >/dev/null || missing+=(runc)
  [ -x "$CNI_BIN/bridge" ] && [ -x "$CNI_BIN/host-local" ] && [ -x "$CNI_BIN/loopback" ] ||
    missing+=(containernetworking-plugins)
  command -v ip >/dev/null || missing+=(iproute2)
  command -v openssl >/dev/null || missing+=(openssl)
  command -v gcc >/dev/null || missing+=(gcc libc6-dev)
  [ ${#missing[@]} -eq 0 ] && return
  log "installing ${missing[*]} from Debian"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# The kubelet reads /dev/kmsg (OOM events); some sandboxes have none.
ensure_kmsg() {
  if [ ! -e /dev/kmsg ]; then
    log "/dev/kmsg is missing: linking it to /dev/console"
    ln -s /dev/console /dev/kmsg
  fi
}

# whether this machine lets root lower a process's oom_score_adj (CAP_SYS_RESOURCE)
can_lower_oom_score() {
  sh -c 'echo -1 > /proc/self/oom_score_adj' 2>/dev/null
}

# --- certificates and configuration ----------------------------------------------

# sign <name> <subject> <extendedKeyUsage> [subjectAltName]: an ECDSA P-256 key and a
# certificate from the cluster's CA, as hack/cluster.sh makes its own
sign() {
  local name="$1" subject="$2" usage="$3" san="${4:-}" pki="$NODE_DIR/pki"
  {
    echo "basicConstraints = critical, CA:FALSE"
    echo "keyUsage = critical, digitalSignature"
    echo "extendedKeyUsage = $usage"
    [ -z "$san" ] || echo "subjectAltName = $san"
  } > "$pki/$name.ext"
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$pki/$name.key" -subj "$subject" \
    -out "$pki/$name.csr" 2>/dev/null
  openssl x509 -req -in "$pki/$name.csr" -CA "$STATE/pki/ca.crt" -CAkey "$STATE/pki/ca.key" \
    -set_serial "0x$(openssl rand -hex 16)" -days 365 -extfile "$pki/$name.ext" -out "$pki/$name.crt" 2>/dev/null
  rm -f "$pki/$name.csr" "$pki/$name.ext"
  chmod 600 "$pki/$name.key"
}

write_config() {
  local pki="$NODE_DIR/pki" server restrict_oom=false
  server="$(api_server_url)"
  [ -n "$server" ] || die "no server URL in $ADMIN_KUBECONFIG"
  can_lower_oom_score || restrict_oom=true
  mkdir -p "$pki" "$NODE_DIR"/{run,kubelet,pod-logs,cni/net.d,cni/ipam,containerd} "$LOGS" "$IMAGE_STORE"
  cp "$STATE/pki/ca.crt" "$pki/ca.crt"
  # the kubelet's identity for the Node authorizer, and its serving certificate
  # (an apiserver with --kubelet-certificate-authority=<cluster CA> can verify it)
  sign kubelet-client "/O=system:nodes/CN=system:node:$NODE_NAME" clientAuth
  sign kubelet-serving "/O=system:nodes/CN=system:node:$NODE_NAME" serverAuth "DNS:$NODE_NAME,IP:$NODE_IP"

  cat > "$NODE_DIR/kubelet.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: braid-test
  cluster:
    server: $server
    certificate-authority: $pki/ca.crt
users:
- name: system:node:$NODE_NAME
  user:
    client-certificate: $pki/kubelet-client.crt
    client-key: $pki/kubelet-client.key
contexts:
- name: braid-test
  context: {cluster: braid-test, user: "system:node:$NODE_NAME"}
current-context: braid-test
EOF
  chmod 600 "$NODE_DIR/kubelet.kubeconfig"

  # Disk-pressure eviction off (0% is "no threshold") and image GC only at a full
  # disk, so images imported by hand are never garbage-collected. Every port on the
  # node's own IP, and the pods' cgroups under a parent of this node's own, so
  # several nodes on one machine never meet.
  cat > "$NODE_DIR/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: $NODE_IP
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true, cacheTTL: 30s}
  x509: {clientCAFile: $pki/ca.crt}
authorization:
  mode: Webhook
  webhook: {cacheAuthorizedTTL: 30s, cacheUnauthorizedTTL: 5s}
tlsCertFile: $pki/kubelet-serving.crt
tlsPrivateKeyFile: $pki/kubelet-serving.key
rotateCertificates: false
serverTLSBootstrap: false
containerRuntimeEndpoint: unix://$SOCK
cgroupDriver: cgroupfs
cgroupRoot: /$CGROUP_PARENT
cgroupsPerQOS: true
failCgroupV1: false
failSwapOn: false
evictionHard:
  memory.available: "0%"
  nodefs.available: "0%"
  nodefs.inodesFree: "0%"
  imagefs.available: "0%"
  imagefs.inodesFree: "0%"
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
podLogsDir: $NODE_DIR/pod-logs
resolvConf: ""
clusterDomain: cluster.local
serializeImagePulls: false
maxPods: 110
EOF

  # A bridge already holding the node IP, pods on-link on the same /24: no
  # gateway, no default route, no masquerading, nothing leaves this machine.
  cat > "$NODE_DIR/cni/net.d/10-braid.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "braid",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": false,
      "isDefaultGateway": false,
      "ipMasq": false,
      "ipam": {
        "type": "host-local",
        "dataDir": "$NODE_DIR/cni/ipam",
        "ranges": [[{"subnet": "$NODE_CIDR", "gateway": "$NODE_IP"}]]
      }
    }
  ]
}
EOF

  cat > "$NODE_DIR/containerd/config.toml" <<EOF
version = 2
root = "$IMAGE_STORE"
state = "$NODE_DIR/containerd/state"
# snapshotters this machine has no use for; they only add noise to the log
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs",
                    "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "$SOCK"

[ttrpc]
  address = "$SOCK.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "$NODE_DIR/containerd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  netns_mounts_under_state_dir = true
  # containerd gives sandboxes oom_score_adj -998 and the kubelet guaranteed pods
  # -997; lowering it needs CAP_SYS_RESOURCE, which sandboxed machines (this one)
  # lack, and runc then fails with "can't get final child's PID from pipe: EOF".
  # Restricted, no container goes below containerd's own score.
  restrict_oom_score_adj = $restrict_oom
  enable_selinux = false
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "$(command -v runc)"
        Root = "$NODE_DIR/runc"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$CNI_BIN"
    conf_dir = "$NODE_DIR/cni/net.d"
    max_conf_num = 1
EOF
  sha256sum "$STATE/pki/ca.crt" | cut -d' ' -f1 > "$NODE_DIR/run/cluster-ca.sha256"
}

setup_bridge() {
  local prefix="${NODE_CIDR#*/}"
  ip link show "$BRIDGE" >/dev/null 2>&1 || ip link add "$BRIDGE" type bridge
  ip -4 addr show dev "$BRIDGE" | grep -qF " $NODE_IP/$prefix " || ip addr add "$NODE_IP/$prefix" dev "$BRIDGE"
  ip link set "$BRIDGE" up
}

# the v1 hierarchies (cpu, memory, ..., name=systemd), not the cgroup2 mount
cgroup_v1_dirs() {
  awk '$9 == "cgroup" {print $5}' /proc/self/mountinfo
}

# The kubelet's --cgroup-root must exist in every hierarchy; a new cpuset cgroup
# has no CPUs until given its parent's.
setup_cgroup_parent() {
  local h d
  for h in $(cgroup_v1_dirs); do
    d="$h/$CGROUP_PARENT"
    mkdir -p "$d"
    if [ -f "$h/cpuset.cpus" ]; then
      [ -n "$(cat "$d/cpuset.cpus")" ] || cat "$h/cpuset.cpus" > "$d/cpuset.cpus"
      [ -n "$(cat "$d/cpuset.mems")" ] || cat "$h/cpuset.mems" > "$d/cpuset.mems"
    fi
  done
}

# Kill whatever still runs in this node's cgroups, then remove them bottom-up.
clean_cgroups() {
  local roots=() d pid
  for d in $(cgroup_v1_dirs) /sys/fs/cgroup/unified; do
    [ -d "$d/$CGROUP_PARENT" ] && roots+=("$d/$CGROUP_PARENT")
  done
  [ ${#roots[@]} -gt 0 ] || return 0
  find "${roots[@]}" -name cgroup.procs -exec cat {} + 2>/dev/null | while read -r pid; do
    kill -KILL "$pid" 2>/dev/null || true
  done
  for _ in $(seq 50); do
    [ -z "$(find "${roots[@]}" -name cgroup.procs -exec cat {} + 2>/dev/null)" ] && break
    sleep 0.1
  done
  find "${roots[@]}" -depth -type d -exec rmdir {} \; 2>/dev/null || true
}

# Unmount every mount point at or below $1, deepest first.
unmount_under() {
  local dir="$1" m mounts
  for _ in 1 2 3; do
    mounts="$(awk -v d="$dir" '$5 == d || index($5, d "/") == 1 {print $5}' /proc/self/mountinfo | sort -r)"
    [ -n "$mounts" ] || return 0
    while IFS= read -r m; do
      umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done <<< "$mounts"
  done
  awk -v d="$dir" '$5 == d || index($5, d "/") == 1 {print "node.sh: still mounted: " $5}' /proc/self/mountinfo >&2
}

# What a node of slot $SLOT leaves on the machine besides its processes: shims, its
# pods' processes and cgroups, mounts, the bridge, kubelet log links.
clean_slot() {
  local owner="$1" pid sock="$1/containerd.sock"
  # shims left behind (containerd killed, a crash): each names its containerd's socket
  for pid in $(pgrep -f -- "-address $sock" 2>/dev/null || true); do
    tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "-address $sock " && kill -KILL "$pid" 2>/dev/null || true
  done
  clean_cgroups
  unmount_under "$owner"
  # what the CRI plugin keeps per sandbox and container in the (kept) root
  rm -rf "$IMAGE_STORE/io.containerd.grpc.v1.cri/sandboxes" "$IMAGE_STORE/io.containerd.grpc.v1.cri/containers"
  ip link del "$BRIDGE" 2>/dev/null || true
  # symlinks the kubelet keeps in /var/log/containers point into the pod-logs dir
  find /var/log/containers -maxdepth 1 -type l -lname "$owner/*" -delete 2>/dev/null || true
}

# --- processes --------------------------------------------------------------------

start() {
  local name="$1"; shift
  setsid "$@" > "$LOGS/$name.log" 2>&1 < /dev/null 7>&- 9>&- &
  echo $! > "$NODE_DIR/run/$name.pid"
}

# pid of a node process only while it is ours: both have the node dir on their
# command line, which guards against reused pids
live_pid() {
  local f="$NODE_DIR/run/$1.pid" pid
  [ -f "$f" ] || return 1
  pid="$(cat "$f")"
  [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -qF -- "$NODE_DIR/" || return 1
  echo "$pid"
}

stop_pid() {
  local name="$1" pid="$2" wait="${3:-15}"
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq $((wait * 10))); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  log "$name (pid $pid) ignored SIGTERM for ${wait}s; killing it"
  kill -KILL "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
}

ctr_() { ctr --address "$SOCK" --namespace k8s.io "$@"; }

fail() {
  local name="$1" why="$2"
  log "$name $why"
  if [ -f "$LOGS/$name.log" ]; then
    log "last lines of $LOGS/$name.log:"
    tail -n 30 "$LOGS/$name.log" | sed 's/^/    /' >&2
  fi
  cmd_down_locked >/dev/null 2>&1 || true
  exit 1
}

wait_until() {
  local name="$1" what="$2"; shift 2
  until "$@" >/dev/null 2>&1; do
    for c in containerd kubelet; do
      if [ -f "$NODE_DIR/run/$c.pid" ] && ! live_pid "$c" >/dev/null; then fail "$c" "exited while waiting for $what"; fi
    done
    [ "$SECONDS" -lt "$DEADLINE" ] || fail "$name" "not ready after ${TIMEOUT}s (waiting for $what)"
    sleep 0.2
  done
}

node_ready() {
  [ "$(kc get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
}

# --- commands -----------------------------------------------------------------------

cmd_up() {
  [ "$(id -u)" = 0 ] || die "needs root (containerd, runc, mounts, a bridge)"
  cluster_info
  [ "$CLUSTER_SOURCE" != external ] || die "BRAID_TEST_KUBECONFIG is set: this script joins only a cluster of hack/cluster.sh"
  [ -f "$STATE/pki/ca.key" ] && [ -r "$ADMIN_KUBECONFIG" ] || die "no cluster in $STATE: run hack/cluster.sh up first"
  kc get --raw=/readyz >/dev/null 2>&1 || die "the cluster in $STATE does not answer /readyz: run hack/cluster.sh up first"
  [ ${#SOCK} -lt 100 ] || die "$SOCK is too long for a unix socket: use a shorter BRAID_CLUSTER_DIR"

  local n
  if n="$(own_slot)"; then
    slot_vars "$n"
    if live_pid containerd >/dev/null && live_pid kubelet >/dev/null &&
       [ "$(cat "$NODE_DIR/run/cluster-ca.sha256" 2>/dev/null)" = "$(sha256sum "$STATE/pki/ca.crt" | cut -d' ' -f1)" ] &&
       node_ready; then
      log "already up: node $NODE_NAME ($NODE_IP) is Ready"
      return
    fi
  fi
  # leftovers of a crashed node, or a node of an earlier cluster
  cmd_down_locked

  SECONDS=0
  DEADLINE=$TIMEOUT
  ensure_packages
  ensure_kmsg
  local bin
  bin="$("$HACK/build-k8s.sh" kubelet | tail -n 1)"
  read -r PAUSE_ARCHIVE PAUSE_IMAGE < <("$HACK/pause/build.sh" | tail -n 1)
  # from here on, a failure takes back whatever was made (slot, bridge, processes)
  trap 'log "up failed at: $BASH_COMMAND; cleaning up"; cmd_down_locked >/dev/null 2>&1 || true' EXIT
  claim_slot
  write_config
  setup_bridge
  setup_cgroup_parent

  start containerd containerd --config "$NODE_DIR/containerd/config.toml"
  wait_until containerd "its socket" ctr --address "$SOCK" version
  ctr_ images import "$PAUSE_ARCHIVE" >/dev/null || fail containerd "refused to import $PAUSE_ARCHIVE"

  # the apiserver reaches the kubelet (logs, exec) as kube-apiserver-kubelet-client,
  # the kubelet asks the apiserver whether that user may (webhook authorization)
  kc apply -f - >/dev/null <<EOF || fail containerd "could not grant the apiserver access to the kubelet API"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: braid-apiserver-kubelet-api-admin}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: system:kubelet-api-admin}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: kube-apiserver-kubelet-client}
EOF

  start kubelet "$bin/kubelet" --config="$NODE_DIR/kubelet.yaml" --kubeconfig="$NODE_DIR/kubelet.kubeconfig" \
    --root-dir="$NODE_DIR/kubelet" --hostname-override="$NODE_NAME" --node-ip="$NODE_IP" --v=1
  wait_until kubelet "node $NODE_NAME to be Ready" node_ready
  trap - EXIT
  log "up in ${SECONDS}s: node $NODE_NAME ($NODE_IP on $BRIDGE, $("$bin/kubelet" --version)," \
    "$(containerd --version | awk '{print "containerd " $3}'))"
}

# Everything `up` made, in an order that leaves nothing behind even when a part
# died: pods' processes, shims, mounts (rootfs, shm, netns, volumes), cgroups,
# the bridge, the slot, the sysctls.
cmd_down_locked() {
  local pid ids id n
  [ -d "$NODE_DIR" ] || return 0
  if [ -f "$NODE_DIR/run/kubelet.pid" ]; then
    if pid="$(live_pid kubelet)"; then stop_pid kubelet "$pid"; fi
    rm -f "$NODE_DIR/run/kubelet.pid"
  fi
  if live_pid containerd >/dev/null; then
    # every container: kill, then delete (the shims exit with their last task)
    ids="$(ctr_ tasks ls -q 2>/dev/null || true)"
    for id in $ids; do ctr_ tasks kill --signal SIGKILL "$id" >/dev/null 2>&1 || true; done
    for id in $ids; do
      for _ in $(seq 50); do
        ctr_ tasks ls 2>/dev/null | awk -v id="$id" '$1 == id {print $3}' | grep -q RUNNING || break
        sleep 0.1
      done
      ctr_ tasks delete --force "$id" >/dev/null 2>&1 || true
    done
    for id in $(ctr_ containers ls -q 2>/dev/null || true); do ctr_ containers delete "$id" >/dev/null 2>&1 || true; done
  fi
  if [ -f "$NODE_DIR/run/containerd.pid" ]; then
    if pid="$(live_pid containerd)"; then stop_pid containerd "$pid"; fi
    rm -f "$NODE_DIR/run/containerd.pid"
  fi
  if n="$(own_slot)"; then
    slot_vars "$n"
    clean_slot "$NODE_DIR"
    release_slot
  else
    unmount_under "$NODE_DIR"
  fi
  if [ -n "${KUBECTL:-}" ] && kc get --raw=/readyz >/dev/null 2>&1; then
    kc delete node "$NODE_NAME" --ignore-not-found --wait=false >/dev/null 2>&1 || true
  fi
  rm -rf "$NODE_DIR"
}

cmd_down() {
  [ "$(id -u)" = 0 ] || die "needs root"
  cluster_info 2>/dev/null || true
  cmd_down_locked
  log "down (logs in $LOGS)"
}

cmd_status() {
  local pid ok=0 n
  cluster_info
  if n="$(own_slot)"; then slot_vars "$n"; echo "node: $NODE_NAME ($NODE_IP on $BRIDGE, slot $n)"; else echo "node: no slot"; ok=1; fi
  echo "dir: $NODE_DIR"
  for c in containerd kubelet; do
    if pid="$(live_pid "$c")"; then echo "$c: running (pid $pid)"; else echo "$c: stopped"; ok=1; fi
  done
  if kc get --raw=/readyz >/dev/null 2>&1 && node_ready; then echo "node: Ready"; else echo "node: not Ready"; ok=1; fi
  return $ok
}

cmd_info() {
  local n
  echo "node_name=$NODE_NAME"
  echo "node_dir=$NODE_DIR"
  echo "containerd_address=$SOCK"
  echo "kubelet_log=$LOGS/kubelet.log"
  echo "containerd_log=$LOGS/containerd.log"
  if n="$(own_slot)"; then
    slot_vars "$n"
    echo "slot=$SLOT"
    echo "node_ip=$NODE_IP"
    echo "node_cidr=$NODE_CIDR"
    echo "bridge=$BRIDGE"
    echo "image_store=$IMAGE_STORE"
  fi
}

cmd_load() {
  [ $# -gt 0 ] || die "usage: node.sh load ARCHIVE..."
  live_pid containerd >/dev/null || die "the node is not up (hack/node.sh up)"
  local a
  for a in "$@"; do ctr_ images import "$a" >&2 || die "could not import $a"; done
}

# one `up`, `down` or `load` at a time per cluster directory
with_lock() {
  mkdir -p "$(dirname "$STATE")"
  exec 9> "$STATE.node.lock"
  flock 9
  "$@"
}

cmd="${1:-}"
[ $# -eq 0 ] || shift
case "$cmd" in
  up) with_lock cmd_up ;;
  down) with_lock cmd_down ;;
  status) cmd_status ;;
  info) cmd_info ;;
  load) with_lock cmd_load "$@" ;;
  ctr) ctr_ "$@" ;;
  *) echo "usage: $0 up|down|status|info|load ARCHIVE...|ctr ARGS..." >&2; exit 2 ;;
esac
