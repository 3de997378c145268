#!/usr/bin/env bash
# Host services for the lab: Debian packages, and the libvirt daemon the labs run on. Two modes, the
# chosen one said in one line at start:
#   managed  a libvirtd this script did not start answers (a workstation's, run by systemd): it is used as
#            it is, its configuration untouched; the lab's bridge is in the root network namespace and the
#            checks run from this host.
#   private  no libvirtd runs, or LVSLAB_PRIVATE_LIBVIRTD=1 asks for it (tests and CI do): virtlogd and
#            libvirtd are started inside network namespace NETNS (loopback only, no uplink), stopped by PID.
#   host.sh packages           install missing Debian packages (never libvirt-daemon-config-network)
#   host.sh start NETNS        choose the mode; private: create NETNS and run virtlogd+libvirtd inside it
#   host.sh exec NETNS -- CMD  run CMD where the lab's bridge is (inside NETNS in private mode)
#   host.sh stop NETNS [--force]  stop the daemons this script started (by PID) and delete NETNS
#                              (refuses while lab VMs run; --force switches them off first)
#   host.sh status
source "$(dirname "$0")/lib.sh"

PACKAGES=(qemu-system-x86 qemu-utils libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients
          genisoimage xsltproc mmdebstrap dpkg-dev iproute2 openssh-client
          nftables   # drops multicast VRRP on a unicast lab's bridge (vrrp-unicast step)
          graphviz   # the topology picture of each run (lvslab/pictures.py)
          hey        # the third-party HTTP client the failover/failback steps run through the VIP
          netcat-openbsd   # the lab's ssh config reaches a bridge in a network namespace (ip netns exec NS nc)
          chromium   # the tests open the ephemeral run's HTML report in a real (headless) browser
          tcpdump    # make capture: on the lab's bridge or a node's tap interface
          postgresql   # the fleet's tests: a throwaway server (own data directory and port) for postgres:// state
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



# The namespace of a libvirtd this script started and that still runs (empty if none).
ours_running() {
  local f; for f in "$RUN"/*/libvirtd.pid; do
    pid_alive "$f" && { basename "$(dirname "$f")"; return; }
  done
  return 0
}

start() {
  local ns=$1 ours; ours=$(ours_running)
  if [ -n "$ours" ] && [ "$ours" != "$ns" ]; then
    die "lvs-lab's private libvirtd already runs in network namespace $ours: use it (NETNS=$ours) or stop it first (tools/host.sh stop $ours)"
  fi
  if [ -z "$ours" ] && libvirt_up; then
    if [ "${LVSLAB_PRIVATE_LIBVIRTD:-0}" = 1 ]; then
      die "LVSLAB_PRIVATE_LIBVIRTD=1 asks for a private libvirtd, but the host's own libvirtd answers on $URI: a second one cannot run beside it (stop it, or unset LVSLAB_PRIVATE_LIBVIRTD to use it)"
    fi
    log "libvirt mode: managed (the host's own libvirtd, used as it is: no configuration changes; the lab's bridge is in the root network namespace and the checks run from this host)"
    return
  fi
  log "libvirt mode: private (virtlogd and libvirtd of lvs-lab's own in network namespace $ns, no uplink)"
  [ "$(id -u)" = 0 ] || die "starting libvirtd needs root"
  if [ ! -e "/run/netns/$ns" ]; then
    ip netns add "$ns"
    log "created network namespace $ns (loopback only, no uplink)"
  fi
  ip -n "$ns" link set lo up
  if [ -n "$ours" ]; then log "libvirtd already running in $ns"; return; fi
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
  for f in libvirtd virtlogd; do stop_by_pidfile "$RUN/$ns/$f.pid" "$f"; done
  rmdir "$RUN/$ns" 2>/dev/null || true
  if [ -e "/run/netns/$ns" ]; then ip netns del "$ns"; log "deleted network namespace $ns"; fi
}

# exec NETNS -- CMD...: inside NETNS when lvs-lab's private libvirtd runs there, else (managed mode) here.
exec_in() {
  local ns=$1; shift; [ "${1:-}" = -- ] && shift
  if [ -n "$(ours_running)" ]; then
    [ "$(ours_running)" = "$ns" ] || die "lvs-lab's private libvirtd runs in network namespace $(ours_running), not $ns"
    exec ip netns exec "$ns" "$@"
  fi
  exec "$@"
}

status() {
  ip netns list
  virsh -c "$URI" list --all 2>/dev/null || echo "libvirtd not reachable"
}

cmd=${1:-}; shift || true
case $cmd in
  packages) packages ;;
  start) start "${1:?netns name}" ;;
  exec) exec_in "$@" ;;
  stop) stop "${1:?netns name}" "${2:-}" ;;
  status) status ;;
  *) die "usage: $0 packages|start NETNS|exec NETNS -- CMD...|stop NETNS|status" ;;
esac
