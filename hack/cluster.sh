#!/usr/bin/env bash
# A throw-away Kubernetes control plane for braid's tests: etcd, kube-apiserver,
# kube-controller-manager and kube-scheduler as plain local processes (no
# containers, no registry), with a fresh CA, certificates and kubeconfigs per
# cluster. It has no node: pods are created and stay Pending, unless
# hack/node.sh adds a kubelet.
#
# usage: hack/cluster.sh up|down|status|env|info
#   up      build what is missing, start, wait until the API is ready (idempotent)
#   down    stop every process `up` started; keeps logs/ for a post-mortem
#   status  exit 0 when the cluster answers /readyz, and say what runs
#   env     print `export` lines for KUBECONFIG and a PATH with the matching kubectl
#   info    print key=value lines (source, kubeconfig, kubectl, state_dir) for tools
#
# Where the cluster comes from, first match wins:
#   BRAID_TEST_KUBECONFIG  an existing cluster (kind, ...): used as is, nothing started
#   KUBEBUILDER_ASSETS     envtest binaries: etcd, kube-apiserver, kubectl; the
#                          controller-manager and scheduler from there when present,
#                          else built at the version of that kube-apiserver
#   otherwise              pinned binaries built by hack/build-k8s.sh into the cache
#
# BRAID_CLUSTER_DIR (default /tmp/braid-cluster) holds certificates, kubeconfigs,
# etcd data, logs and pids; use different directories for clusters side by side.
# Every port is picked free on 127.0.0.1 at `up`.
set -euo pipefail

HACK="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STATE="${BRAID_CLUSTER_DIR:-/tmp/braid-cluster}"
STATE="${STATE%/}"
TIMEOUT="${BRAID_CLUSTER_TIMEOUT:-180}"
# The control plane listens and advertises on loopback only: nothing outside
# this machine talks to it, and an explicit address spares the apiserver
# guessing from routes (an offline machine may have none). Endpoints may not hold
# a loopback address, so the apiserver keeps no endpoints for the `kubernetes`
# service (--endpoint-reconciler-type=none): in-cluster clients (pods using
# kubernetes.default.svc) cannot reach this apiserver; tests talk to it from
# the host.
ADDRESS=127.0.0.1
SERVICE_CIDR=10.0.0.0/24
SERVICE_IP=10.0.0.1
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler)

log() { echo "cluster.sh: $*" >&2; }
die() { log "$*"; exit 1; }

source_kind() {
  if [ -n "${BRAID_TEST_KUBECONFIG:-}" ]; then echo external
  elif [ -n "${KUBEBUILDER_ASSETS:-}" ]; then echo envtest
  else echo built
  fi
}

# The kubectl that goes with the cluster, without building anything.
kubectl_path() {
  case "$(source_kind)" in
    external)
      if [ -n "${KUBEBUILDER_ASSETS:-}" ] && [ -x "$KUBEBUILDER_ASSETS/kubectl" ]; then
        echo "$KUBEBUILDER_ASSETS/kubectl"
      elif command -v kubectl >/dev/null; then command -v kubectl
      else echo "$(cache_bin)/kubectl"
      fi ;;
    envtest) echo "$KUBEBUILDER_ASSETS/kubectl" ;;
    built) echo "$(cache_bin)/kubectl" ;;
  esac
}

# Mirrors build-k8s.sh's cache layout, so `env` works before anything is built.
cache_bin() {
  local cache="${BRAID_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/braid}"
  echo "$cache/k8s/${BRAID_K8S_VERSION:-v1.34.4}-etcd${BRAID_ETCD_VERSION:-v3.6.16}/bin"
}

kubeconfig_path() {
  if [ "$(source_kind)" = external ]; then echo "$BRAID_TEST_KUBECONFIG"; else echo "$STATE/kubeconfig"; fi
}

# --- binaries ----------------------------------------------------------------

# Sets BIN_<component> for every component and kubectl; builds what is missing.
resolve_binaries() {
  local kind built_dir missing=()
  kind="$(source_kind)"
  if [ "$kind" = envtest ]; then
    for c in etcd kube-apiserver kubectl; do
      [ -x "$KUBEBUILDER_ASSETS/$c" ] || die "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS has no executable $c"
    done
    for c in kube-controller-manager kube-scheduler; do
      [ -x "$KUBEBUILDER_ASSETS/$c" ] || missing+=("$c")
    done
    if [ ${#missing[@]} -gt 0 ]; then
      # envtest ships no controller-manager or scheduler: build them at the
      # apiserver's version, since neither may be newer than the apiserver.
      local version
      version="$("$KUBEBUILDER_ASSETS/kube-apiserver" --version | awk '{print $2}')"
      log "${missing[*]} not in KUBEBUILDER_ASSETS: taking them from hack/build-k8s.sh at $version"
      built_dir="$(BRAID_K8S_VERSION="$version" "$HACK/build-k8s.sh" "${missing[@]}" | tail -n 1)"
    fi
    for c in etcd kube-apiserver kubectl kube-controller-manager kube-scheduler; do
      if [ -x "$KUBEBUILDER_ASSETS/$c" ]; then bin_set "$c" "$KUBEBUILDER_ASSETS/$c"; else bin_set "$c" "$built_dir/$c"; fi
    done
  else
    for c in "${COMPONENTS[@]}" kubectl; do
      [ -x "$(cache_bin)/$c" ] || missing+=("$c")
    done
    if [ ${#missing[@]} -gt 0 ]; then
      log "building ${missing[*]} from the Go module proxy (once per machine; minutes)"
    fi
    built_dir="$("$HACK/build-k8s.sh" "${COMPONENTS[@]}" kubectl | tail -n 1)"
    for c in "${COMPONENTS[@]}" kubectl; do bin_set "$c" "$built_dir/$c"; done
  fi
}

bin_set() { printf -v "BIN_${1//-/_}" '%s' "$2"; }
bin_of() { local v="BIN_${1//-/_}"; echo "${!v}"; }

# --- certificates and kubeconfigs --------------------------------------------

# ECDSA P-256 keys: a tenth of the time of RSA ones, which counts at every `up`.
NEWKEY=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1)

# make_ca <name> <common name>: a self-signed CA, valid for a year.
make_ca() {
  openssl req -x509 "${NEWKEY[@]}" -nodes -days 365 -subj "/CN=$2" \
    -keyout "$STATE/pki/$1.key" -out "$STATE/pki/$1.crt" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" 2>/dev/null
}

# sign [--ca <ca>] <name> <subject> <extendedKeyUsage> [subjectAltName]: a key
# and a certificate from the cluster CA (or <ca>), valid for a year.
sign() {
  local ca=ca
  if [ "$1" = --ca ]; then ca="$2"; shift 2; fi
  local name="$1" subject="$2" usage="$3" san="${4:-}" pki="$STATE/pki"
  {
    echo "basicConstraints = critical, CA:FALSE"
    echo "keyUsage = critical, digitalSignature"
    echo "extendedKeyUsage = $usage"
    [ -z "$san" ] || echo "subjectAltName = $san"
  } > "$pki/$name.ext"
  openssl req -new "${NEWKEY[@]}" -nodes -keyout "$pki/$name.key" -subj "$subject" \
    -out "$pki/$name.csr" 2>/dev/null
  openssl x509 -req -in "$pki/$name.csr" -CA "$pki/$ca.crt" -CAkey "$pki/$ca.key" -set_serial "0x$(openssl rand -hex 16)" \
    -days 365 -extfile "$pki/$name.ext" -out "$pki/$name.crt" 2>/dev/null
  rm -f "$pki/$name.csr" "$pki/$name.ext"
}

make_pki() {
  local pki="$STATE/pki"
  mkdir -p "$pki"
  make_ca ca braid-test-ca
  local san="DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc"
  san="$san,DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:$SERVICE_IP"
  [ "$ADDRESS" = 127.0.0.1 ] || san="$san,IP:$ADDRESS"
  sign apiserver "/CN=kube-apiserver" serverAuth "$san"
  sign admin "/O=system:masters/CN=braid-admin" clientAuth
  sign kube-controller-manager "/CN=system:kube-controller-manager" clientAuth
  sign kube-scheduler "/CN=system:kube-scheduler" clientAuth
  # how the apiserver calls a kubelet (logs, exec) once hack/node.sh adds one;
  # node.sh grants this user system:kubelet-api-admin
  sign apiserver-kubelet-client "/CN=kube-apiserver-kubelet-client" clientAuth
  # The front proxy (aggregation layer) needs its own CA: whoever holds one of
  # its certificates may claim any user in a header. Configuring it also spares
  # the controller-manager and scheduler a retry loop over a missing CA bundle.
  make_ca front-proxy-ca braid-test-front-proxy-ca
  sign --ca front-proxy-ca front-proxy-client "/CN=front-proxy-client" clientAuth
  # signs and verifies service-account tokens (RSA: RS256 is what every
  # token consumer understands)
  openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
  openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
  chmod 600 "$pki"/*.key
}

# kubeconfig <file> <user>: certificates embedded, so the file can be copied.
write_kubeconfig() {
  local file="$1" user="$2" pki="$STATE/pki"
  cat > "$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: braid-test
  cluster:
    server: https://$ADDRESS:$APISERVER_PORT
    certificate-authority-data: $(base64 -w0 < "$pki/ca.crt")
users:
- name: $user
  user:
    client-certificate-data: $(base64 -w0 < "$pki/$user.crt")
    client-key-data: $(base64 -w0 < "$pki/$user.key")
contexts:
- name: braid-test
  context:
    cluster: braid-test
    user: $user
current-context: braid-test
EOF
  chmod 600 "$file"
}

# --- processes -----------------------------------------------------------------

# Five distinct free ports on loopback, held together while chosen.
pick_ports() {
  python3 - <<'PY'
import socket
socks = [socket.socket() for _ in range(5)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

# start <component> args...: detached from this shell's session so the cluster
# outlives `up` and a Ctrl-C in the terminal that started it.
start() {
  local name="$1"; shift
  # fd 9 is the lock of with_lock: a daemon holding it would block the next `up`
  setsid "$(bin_of "$name")" "$@" > "$STATE/logs/$name.log" 2>&1 < /dev/null 9>&- &
  echo $! > "$STATE/run/$name.pid"
}

# pid of a component only if that process is still ours: every one of them has
# the state directory on its command line, which guards against reused pids.
live_pid() {
  local f="$STATE/run/$1.pid" pid
  [ -f "$f" ] || return 1
  pid="$(cat "$f")"
  [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -qF -- "$STATE/" || return 1
  echo "$pid"
}

# Clients before servers, so none of them spends its shutdown retrying a
# server that is already gone: the controllers together, then the apiserver,
# then etcd.
stop_all() {
  stop_group kube-controller-manager kube-scheduler
  stop_group kube-apiserver
  stop_group etcd
}

# A zombie counts as gone: in a container whose init never reaps, it stays.
alive() { kill -0 "$1" 2>/dev/null && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }

# SIGTERM, up to 20s for a graceful exit, then SIGKILL.
stop_group() {
  local c pid pids=() names=()
  for c in "$@"; do
    if pid="$(live_pid "$c")"; then
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid"); names+=("$c")
    fi
    rm -f "$STATE/run/$c.pid"
  done
  for i in "${!pids[@]}"; do
    for _ in $(seq 200); do alive "${pids[i]}" || break; sleep 0.1; done
    if alive "${pids[i]}"; then
      log "${names[i]} (pid ${pids[i]}) ignored SIGTERM for 20s; killing it"
      kill -KILL "${pids[i]}" 2>/dev/null || true
    fi
  done
}

# Stop what was started and exit with the failing component's log tail.
fail() {
  local name="$1" why="$2"
  log "$name $why"
  if [ -f "$STATE/logs/$name.log" ]; then
    log "last lines of $STATE/logs/$name.log:"
    tail -n 30 "$STATE/logs/$name.log" | sed 's/^/    /' >&2
  fi
  stop_all
  exit 1
}

kc() { "$(bin_of kubectl)" --kubeconfig "$STATE/kubeconfig" --request-timeout=5s "$@" < /dev/null; }

# wait_until <component> <what> <command...>: poll until the command succeeds,
# failing early when any started component has exited.
wait_until() {
  local name="$1" what="$2"; shift 2
  until "$@" >/dev/null 2>&1; do
    for c in "${STARTED[@]}"; do
      live_pid "$c" >/dev/null || fail "$c" "exited while waiting for $what"
    done
    [ "$SECONDS" -lt "$DEADLINE" ] || fail "$name" "not ready after ${TIMEOUT}s (waiting for $what)"
    sleep 0.2
  done
  log "$name: $what ok after $(elapsed)s"
}

elapsed() { local ms=$(( ($(date +%s%N) - START_NS) / 1000000 )); printf '%d.%d' $((ms / 1000)) $((ms % 1000 / 100)); }

tcp_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# The controller-manager and scheduler serve self-signed certificates; the
# admin's client certificate keeps kubectl from prompting for a password.
secure_healthz() { kc --server="https://127.0.0.1:$1" --insecure-skip-tls-verify get --raw=/healthz; }

api_ready() {
  kc get --raw='/readyz' >/dev/null 2>&1
}

# --- commands ----------------------------------------------------------------

cmd_up() {
  local kind; kind="$(source_kind)"
  if [ "$kind" = external ]; then
    [ -r "$BRAID_TEST_KUBECONFIG" ] || die "BRAID_TEST_KUBECONFIG=$BRAID_TEST_KUBECONFIG is not a readable file"
    local kubectl; kubectl="$(kubectl_path)"
    [ -x "$kubectl" ] || kubectl="$("$HACK/build-k8s.sh" kubectl | tail -n 1)/kubectl"
    "$kubectl" --kubeconfig "$BRAID_TEST_KUBECONFIG" --request-timeout=10s get --raw=/readyz >/dev/null ||
      die "the cluster of BRAID_TEST_KUBECONFIG=$BRAID_TEST_KUBECONFIG is not ready (GET /readyz failed)"
    log "using the existing cluster of BRAID_TEST_KUBECONFIG; nothing started"
    return
  fi

  resolve_binaries
  if cluster_running && api_ready; then
    log "already up ($STATE)"
    return
  fi
  # leftovers of a half-started or crashed cluster, and a node of a dead one
  stop_node
  stop_all
  SECONDS=0
  START_NS=$(date +%s%N)
  DEADLINE=$TIMEOUT
  STARTED=()

  remove_own_files
  mkdir -p "$STATE"/{logs,run,etcd}
  chmod 700 "$STATE" "$STATE/etcd"
  read -r ETCD_PORT ETCD_PEER_PORT APISERVER_PORT KCM_PORT SCHEDULER_PORT < <(pick_ports)
  printf 'ETCD_PORT=%s\nAPISERVER_PORT=%s\nKCM_PORT=%s\nSCHEDULER_PORT=%s\n' \
    "$ETCD_PORT" "$APISERVER_PORT" "$KCM_PORT" "$SCHEDULER_PORT" > "$STATE/run/ports"
  # etcd needs no certificates: it starts while they are made
  # (fsync buys nothing for a cluster that is thrown away, and costs seconds)
  start etcd --name=braid-test --data-dir="$STATE/etcd" \
    --listen-client-urls="http://127.0.0.1:$ETCD_PORT" --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster="braid-test=http://127.0.0.1:$ETCD_PEER_PORT" \
    --unsafe-no-fsync --log-level=warn
  STARTED+=(etcd)
  make_pki
  local pki="$STATE/pki"
  write_kubeconfig "$STATE/kubeconfig" admin
  write_kubeconfig "$STATE/kube-controller-manager.kubeconfig" kube-controller-manager
  write_kubeconfig "$STATE/kube-scheduler.kubeconfig" kube-scheduler
  wait_until etcd "its client port" tcp_open "$ETCD_PORT"

  start kube-apiserver --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --bind-address=127.0.0.1 --secure-port="$APISERVER_PORT" --advertise-address="$ADDRESS" \
    --cert-dir="$pki" --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
    --client-ca-file="$pki/ca.crt" \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$pki/sa.pub" --service-account-signing-key-file="$pki/sa.key" \
    --requestheader-client-ca-file="$pki/front-proxy-ca.crt" --requestheader-allowed-names=front-proxy-client \
    --requestheader-username-headers=X-Remote-User --requestheader-group-headers=X-Remote-Group \
    --requestheader-extra-headers-prefix=X-Remote-Extra- \
    --proxy-client-cert-file="$pki/front-proxy-client.crt" --proxy-client-key-file="$pki/front-proxy-client.key" \
    --endpoint-reconciler-type=none \
    --kubelet-client-certificate="$pki/apiserver-kubelet-client.crt" --kubelet-client-key="$pki/apiserver-kubelet-client.key" \
    --kubelet-preferred-address-types=InternalIP,Hostname \
    --kubelet-certificate-authority="$pki/ca.crt" \
    --authorization-mode=Node,RBAC --allow-privileged=true
  STARTED+=(kube-apiserver)
  wait_until kube-apiserver "GET /readyz" api_ready

  start kube-controller-manager --kubeconfig="$STATE/kube-controller-manager.kubeconfig" \
    --authentication-kubeconfig="$STATE/kube-controller-manager.kubeconfig" \
    --authorization-kubeconfig="$STATE/kube-controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$KCM_PORT" --cert-dir="$pki/kube-controller-manager" \
    --controllers='*' --use-service-account-credentials=true \
    --root-ca-file="$pki/ca.crt" --service-account-private-key-file="$pki/sa.key" \
    --cluster-signing-cert-file="$pki/ca.crt" --cluster-signing-key-file="$pki/ca.key" \
    --service-cluster-ip-range="$SERVICE_CIDR" --leader-elect=false
  STARTED+=(kube-controller-manager)
  start kube-scheduler --kubeconfig="$STATE/kube-scheduler.kubeconfig" \
    --authentication-kubeconfig="$STATE/kube-scheduler.kubeconfig" \
    --authorization-kubeconfig="$STATE/kube-scheduler.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$SCHEDULER_PORT" --cert-dir="$pki/kube-scheduler" \
    --leader-elect=false
  STARTED+=(kube-scheduler)
  wait_until kube-controller-manager "GET /healthz" secure_healthz "$KCM_PORT"
  wait_until kube-scheduler "GET /healthz" secure_healthz "$SCHEDULER_PORT"
  # created by the controller-manager's service-account controller: proof that
  # the controllers run and that pods can be admitted in the default namespace
  wait_until kube-controller-manager "the default service account" kc -n default get serviceaccount default

  if [ "${BRAID_CLUSTER_NODE:-0}" != 0 ]; then "$HACK/node.sh" up 9>&-; fi

  log "up in $(elapsed)s: $("$(bin_of kube-apiserver)" --version) at https://$ADDRESS:$APISERVER_PORT ($STATE)"
}

cluster_running() {
  local c
  for c in "${COMPONENTS[@]}"; do live_pid "$c" >/dev/null || return 1; done
}

# Only what `up` wrote: hack/node.sh keeps its node (and mounts) in $STATE/node.
remove_own_files() {
  rm -rf "$STATE"/{pki,etcd,run} "$STATE"/*kubeconfig
  if [ "${1:-}" != --keep-logs ]; then
    for c in "${COMPONENTS[@]}"; do rm -f "$STATE/logs/$c.log"; done
  fi
}

# A node of hack/node.sh lives in this cluster's directory and cannot outlive it
# (it trusts this cluster's CA): take it down first, through its own script.
stop_node() {
  [ -d "$STATE/node" ] && [ -x "$HACK/node.sh" ] || return 0
  "$HACK/node.sh" down 9>&- || log "hack/node.sh down failed; its processes may still run"
}

cmd_down() {
  [ "$(source_kind)" != external ] || { log "BRAID_TEST_KUBECONFIG is set: nothing to stop"; return; }
  [ -d "$STATE" ] || return 0
  stop_node
  stop_all
  # keep the logs for a post-mortem; the rest belongs to a dead cluster
  remove_own_files --keep-logs
  log "down ($STATE/logs kept)"
}

cmd_status() {
  local kind kubectl; kind="$(source_kind)"
  kubectl="$(kubectl_path)"
  echo "source: $kind"
  echo "kubeconfig: $(kubeconfig_path)"
  if [ "$kind" != external ]; then
    echo "state: $STATE"
    for c in "${COMPONENTS[@]}"; do
      if pid="$(live_pid "$c")"; then echo "$c: running (pid $pid)"; else echo "$c: stopped"; fi
    done
  fi
  if [ -x "$kubectl" ] && [ -r "$(kubeconfig_path)" ] &&
     "$kubectl" --kubeconfig "$(kubeconfig_path)" --request-timeout=5s get --raw=/readyz >/dev/null 2>&1; then
    echo "api: ready"
  else
    echo "api: not ready"
    return 1
  fi
}

cmd_env() {
  printf 'export KUBECONFIG=%q\n' "$(kubeconfig_path)"
  # shellcheck disable=SC2016 # $PATH is for the shell that evals this line
  printf 'export PATH=%q:"$PATH"\n' "$(dirname "$(kubectl_path)")"
}

cmd_info() {
  echo "source=$(source_kind)"
  echo "kubeconfig=$(kubeconfig_path)"
  echo "kubectl=$(kubectl_path)"
  echo "state_dir=$STATE"
}

# One `up` or `down` at a time per state directory: concurrent test sessions
# share a cluster instead of racing to start two on the same files.
with_lock() {
  mkdir -p "$(dirname "$STATE")"
  exec 9> "$STATE.lock"
  flock 9
  "$@"
}

case "${1:-}" in
  up) with_lock cmd_up ;;
  down) with_lock cmd_down ;;
  status) cmd_status ;;
  env) cmd_env ;;
  info) cmd_info ;;
  *) echo "usage: $0 up|down|status|env|info" >&2; exit 2 ;;
esac
