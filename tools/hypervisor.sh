#!/usr/bin/env bash
# A remote hypervisor for tests and CI (issue 15): a second libvirtd that the lab reaches only over SSH,
# the way it reaches a real one with `libvirtUri: qemu+ssh://root@host/system`.
#
# Hypervisor NAME lives in network namespace lvslab-NAME, joined to the lab runner's namespace NETNS by one
# veth pair that carries SSH only (10.254.INDEX.1 on NETNS's side, 10.254.INDEX.2 on the hypervisor's; no
# route from NETNS to the lab bridges behind it). Its own mount namespace gives it private copies of
# libvirt's directories and of lvs-lab's pool and log roots, so nothing it holds is visible from here
# except through libvirt's remote protocol or SSH. sshd, virtlogd and libvirtd run inside; all three are
# stopped by PID.
#
#   hypervisor.sh start NETNS NAME INDEX   start it (idempotent); prints its libvirt URI
#   hypervisor.sh uri NAME                 print the URI of a running one
#   hypervisor.sh stop NETNS NAME [--force] stop it (refuses while lab VMs run; --force switches them off)
source "$(dirname "$0")/lib.sh"

STATE_ROOT=/var/lib/lvs-lab-hv
RUN_ROOT=/run/lvs-lab-hv
# Directories the hypervisor keeps for itself (bind-mounted over these paths inside its mount namespace).
PRIVATE_DIRS=(/etc/libvirt /run/libvirt /var/lib/libvirt /var/cache/libvirt /var/log/libvirt
              /var/lib/lvs-lab /var/log/lvs-lab)

hv_ns() { echo "lvslab-$1"; }
hv_address() { echo "10.254.$1.2"; }
runner_address() { echo "10.254.$1.1"; }

uri() {
  local name=$1 state=$STATE_ROOT/$1
  [ -f "$state/address" ] || die "hypervisor $name is not running (tools/hypervisor.sh start NETNS $name INDEX)"
  printf 'qemu+ssh://root@%s/system?keyfile=%s&knownhosts=%s\n' \
    "$(cat "$state/address")" "$state/ssh/id_ed25519" "$state/ssh/known_hosts"
}

# sshd for the hypervisor: keys only, root allowed (libvirt's system URI), unix-socket forwarding on (the
# provider's SSH transport opens libvirt's socket through it).
ensure_sshd() {
  [ -x /usr/sbin/sshd ] && return
  log "installing openssh-server (for the test hypervisor's sshd; its service is not started)"
  local created_policy=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; created_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends openssh-server >/dev/null \
    || { [ -z "$created_policy" ] || rm -f /usr/sbin/policy-rc.d; die "apt-get install openssh-server failed"; }
  [ -z "$created_policy" ] || rm -f /usr/sbin/policy-rc.d
  # Installed only for this: the package's own sshd must not start at the next boot either.
  if [ -d /run/systemd/system ]; then systemctl disable --quiet ssh.service 2>/dev/null || true; fi
}

start() {
  local netns=$1 name=$2 index=$3
  local ns state=$STATE_ROOT/$2 run=$RUN_ROOT/$2 addr
  ns=$(hv_ns "$name"); addr=$(hv_address "$index")
  [ "$(id -u)" = 0 ] || die "starting a test hypervisor needs root"
  [ -e "/run/netns/$netns" ] || die "network namespace $netns does not exist (make host-start first)"
  if pid_alive "$run/libvirtd.pid" && pid_alive "$run/sshd.pid"; then
    log "hypervisor $name already runs (namespace $ns, $addr)"; uri "$name"; return
  fi
  ensure_sshd
  mkdir -p "$state/ssh" "$run"
  # Network: a veth pair between the runner's namespace and the hypervisor's, SSH's only way in.
  [ -e "/run/netns/$ns" ] || { ip netns add "$ns"; log "created network namespace $ns"; }
  ip -n "$ns" link set lo up
  if ! ip -n "$netns" link show "hv-$name" >/dev/null 2>&1; then
    ip link add "hv-$name" netns "$netns" type veth peer name uplink netns "$ns"
    ip -n "$netns" addr add "$(runner_address "$index")/30" dev "hv-$name"
    ip -n "$ns" addr add "$addr/30" dev uplink
  fi
  ip -n "$netns" link set "hv-$name" up
  ip -n "$ns" link set uplink up
  # Keys: the runner's client key and the hypervisor's host key, pinned in a known_hosts file.
  [ -f "$state/ssh/id_ed25519" ] || ssh-keygen -q -t ed25519 -N "" -C "lvs-lab runner -> $name" -f "$state/ssh/id_ed25519"
  [ -f "$state/ssh/host_ed25519" ] || ssh-keygen -q -t ed25519 -N "" -C "lvs-lab hypervisor $name" -f "$state/ssh/host_ed25519"
  cp "$state/ssh/id_ed25519.pub" "$state/ssh/authorized_keys"
  printf '%s %s\n' "$addr" "$(cut -d' ' -f1,2 "$state/ssh/host_ed25519.pub")" > "$state/ssh/known_hosts"
  cat > "$state/ssh/sshd_config" <<EOF
ListenAddress $addr
HostKey $state/ssh/host_ed25519
PidFile $run/sshd.pid
AuthorizedKeysFile $state/ssh/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AllowTcpForwarding yes
AllowStreamLocalForwarding yes
MaxSessions 64
MaxStartups 64
EOF
  # Private copies of libvirt's and lvs-lab's directories (a fresh /etc/libvirt without any definitions).
  local d src
  for d in "${PRIVATE_DIRS[@]}"; do
    src=$state/root$d; mkdir -p "$src" "$d"
  done
  if [ ! -f "$state/root/etc/libvirt/.copied" ]; then
    cp -a /etc/libvirt/. "$state/root/etc/libvirt/"
    rm -rf "$state/root/etc/libvirt/qemu"/*.xml "$state/root/etc/libvirt/qemu/networks" "$state/root/etc/libvirt/storage"
    touch "$state/root/etc/libvirt/.copied"
  fi
  mkdir -p "$state/root/var/lib/libvirt/dnsmasq" "$state/root/var/lib/libvirt/qemu"
  echo "$addr" > "$state/address"
  local binds="" ; for d in "${PRIVATE_DIRS[@]}"; do binds+="mount --bind '$state/root$d' '$d'; "; done
  mkdir -p /run/sshd
  ip netns exec "$ns" unshare --mount --propagation private sh -ec "
    $binds
    /usr/sbin/sshd -f '$state/ssh/sshd_config'
    virtlogd --daemon --pid-file '$run/virtlogd.pid'
    libvirtd --daemon --pid-file '$run/libvirtd.pid'"
  local i; for i in $(seq 1 100); do pid_alive "$run/libvirtd.pid" && [ -S "$state/root/run/libvirt/libvirt-sock" ] && break; sleep 0.2; done
  [ -S "$state/root/run/libvirt/libvirt-sock" ] || die "libvirtd of hypervisor $name did not come up"
  log "hypervisor $name: sshd, virtlogd and libvirtd in namespace $ns, reached at $addr over SSH only"
  uri "$name"
}

# virsh on the hypervisor itself (through its mount namespace), for stop.
hv_virsh() { nsenter -t "$(cat "$RUN_ROOT/$1/libvirtd.pid")" -m -n virsh -c qemu:///system "${@:2}"; }

stop() {
  local netns=$1 name=$2 force=${3:-} ns run=$RUN_ROOT/$2 f d
  ns=$(hv_ns "$name")
  if pid_alive "$run/libvirtd.pid"; then
    local running; running=$(hv_virsh "$name" list --name 2>/dev/null | grep '^lvs-lab-' || true)
    if [ -n "$running" ]; then
      [ "$force" = --force ] || die "lab VMs still run on hypervisor $name ($(echo $running)): destroy their labs first, or use --force"
      for d in $running; do hv_virsh "$name" destroy "$d" >/dev/null; hv_virsh "$name" undefine "$d" >/dev/null || true; log "forced off $d"; done
    fi
  fi
  for f in sshd libvirtd virtlogd; do stop_by_pidfile "$run/$f.pid" "$f of hypervisor $name"; done
  rmdir "$run" 2>/dev/null || true
  ip -n "$netns" link del "hv-$name" 2>/dev/null || true
  if [ -e "/run/netns/$ns" ]; then ip netns del "$ns"; log "deleted network namespace $ns"; fi
  rm -rf "${STATE_ROOT:?}/$name"
}

cmd=${1:-}; shift || true
case $cmd in
  start) start "${1:?runner netns}" "${2:?hypervisor name}" "${3:?index 1-250}" ;;
  uri) uri "${1:?hypervisor name}" ;;
  stop) stop "${1:?runner netns}" "${2:?hypervisor name}" "${3:-}" ;;
  *) die "usage: $0 start NETNS NAME INDEX | uri NAME | stop NETNS NAME [--force]" ;;
esac
