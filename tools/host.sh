#!/usr/bin/env bash
# Host services for the lab: Debian packages, and virtlogd/libvirtd started inside an isolated network
# namespace when no init system runs them.
#   host.sh packages           install missing Debian packages (never libvirt-daemon-config-network)
#   host.sh start NETNS        create NETNS (loopback only, no uplink) and run virtlogd+libvirtd inside it
#   host.sh stop NETNS [--force]  stop the daemons this script started (by PID) and delete NETNS
#                              (refuses while lab VMs run; --force switches them off first)
#   host.sh status
source "$(dirname "$0")/lib.sh"

PACKAGES=(qemu-system-x86 qemu-utils libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients
          genisoimage xsltproc mmdebstrap dpkg-dev iproute2 openssh-client
          keepalived nginx-light cloud-init)   # the last three only for config checks in unit tests
RUN=/run/lvs-lab
URI=qemu:///system

packages() {
  local missing=() p
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then log "host packages: all ${#PACKAGES[@]} installed"; return; fi
  [ "$(id -u)" = 0 ] || die "missing Debian packages (${missing[*]}): run as root or install them"
  log "installing ${missing[*]}"
  apt-get update -q >/dev/null
  # Keep package scripts from starting nginx/keepalived on the host; restore any existing policy.
  local created_policy=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; created_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null \
    || { [ -z "$created_policy" ] || rm -f /usr/sbin/policy-rc.d; die "apt-get install failed"; }
  [ -z "$created_policy" ] || rm -f /usr/sbin/policy-rc.d
  if dpkg-query -W libvirt-daemon-config-network >/dev/null 2>&1; then
    log "WARNING: libvirt-daemon-config-network is installed (a NAT network); lvs-lab never starts it"
  fi
}

libvirt_up() { virsh -c "$URI" version >/dev/null 2>&1; }

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

netns_inode() { stat -L -c %i "/run/netns/$1" 2>/dev/null; }

start() {
  local ns=$1
  [ "$(id -u)" = 0 ] || die "starting libvirtd needs root"
  if [ ! -e "/run/netns/$ns" ]; then
    ip netns add "$ns"
    log "created network namespace $ns (loopback only, no uplink)"
  fi
  ip -n "$ns" link set lo up
  if libvirt_up; then
    local pid; pid=$(cat "$RUN/$ns/libvirtd.pid" 2>/dev/null || cat /run/libvirtd.pid 2>/dev/null || true)
    if [ -n "$pid" ] && [ "$(stat -L -c %i /proc/"$pid"/ns/net 2>/dev/null)" != "$(netns_inode "$ns")" ]; then
      die "a libvirtd (pid $pid) already runs outside network namespace $ns; stop it first (tools/host.sh stop <its netns>)"
    fi
    log "libvirtd already running in $ns"; return
  fi
  # libvirt 9 refuses to start without these even when qemu runs as root.
  local g; for g in kvm libvirt-qemu; do getent group "$g" >/dev/null || groupadd -r "$g"; done
  id libvirt-qemu >/dev/null 2>&1 || useradd -r -g libvirt-qemu -G kvm -d /var/lib/libvirt -s /usr/sbin/nologin libvirt-qemu
  mkdir -p /var/log/libvirt /var/lib/libvirt/dnsmasq /run/libvirt  # normally made by packages we do not install
  configure_qemu
  mkdir -p "$RUN/$ns"
  if ! pid_alive "$RUN/$ns/virtlogd.pid"; then
    ip netns exec "$ns" virtlogd --daemon --pid-file "$RUN/$ns/virtlogd.pid"
  fi
  ip netns exec "$ns" libvirtd --daemon --pid-file "$RUN/$ns/libvirtd.pid"
  local i; for i in $(seq 1 100); do libvirt_up && break; sleep 0.2; done
  libvirt_up || die "libvirtd did not come up (see journal or run: ip netns exec $ns libvirtd -v)"
  log "virtlogd and libvirtd started in $ns: $(virsh -c "$URI" version | grep -i 'running hypervisor' || true)"
}

configure_qemu() {
  # Only for daemons we run ourselves: QEMU as root, no relabelling (images live in the user's cache).
  local conf=/etc/libvirt/qemu.conf marker='# lvs-lab settings'
  grep -q "$marker" "$conf" 2>/dev/null && return
  printf '\n%s\nuser = "root"\ngroup = "root"\ndynamic_ownership = 0\nsecurity_driver = "none"\n' "$marker" >> "$conf"
}

stop() {
  local ns=$1 force=${2:-} f d
  if pid_alive "$RUN/$ns/libvirtd.pid"; then
    local running; running=$(virsh -c "$URI" list --name 2>/dev/null | grep '^lvs-lab-' || true)
    if [ -n "$running" ]; then
      # Stopping libvirtd would leave these QEMU processes running without anyone managing them.
      [ "$force" = --force ] || die "lab VMs still running ($(echo $running)): destroy the labs first (make destroy), or use --force"
      for d in $running; do virsh -c "$URI" destroy "$d" >/dev/null; virsh -c "$URI" undefine "$d" >/dev/null || true; log "forced off $d"; done
    fi
  fi
  for f in libvirtd virtlogd; do
    if pid_alive "$RUN/$ns/$f.pid"; then
      local pid; pid=$(cat "$RUN/$ns/$f.pid")
      kill "$pid"; local i; for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      log "stopped $f (pid $pid)"
    fi
    rm -f "$RUN/$ns/$f.pid"
  done
  if [ -e "/run/netns/$ns" ]; then ip netns del "$ns"; log "deleted network namespace $ns"; fi
}

status() {
  ip netns list
  virsh -c "$URI" list --all 2>/dev/null || echo "libvirtd not reachable"
}

cmd=${1:-}; shift || true
case $cmd in
  packages) packages ;;
  start) start "${1:?netns name}" ;;
  stop) stop "${1:?netns name}" "${2:-}" ;;
  status) status ;;
  *) die "usage: $0 packages|start NETNS|stop NETNS|status" ;;
esac
