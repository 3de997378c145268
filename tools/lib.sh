# shellcheck shell=bash
# Shared helpers for the setup scripts: cache location, timed steps, and logging.
set -euo pipefail

LVSLAB_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LVSLAB_CACHE=${LVSLAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lvs-lab}
export LVSLAB_ROOT LVSLAB_CACHE
mkdir -p "$LVSLAB_CACHE"

log() { printf '[lvs-lab %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# step NAME CMD...: run CMD, print what it does and how long it took.
step() {
  local name=$1; shift
  local t0=$SECONDS
  log "$name ..."
  "$@"
  log "$name done in $((SECONDS - t0)) s"
}

# sha256 over files and strings, used as cache keys.
cache_key() {
  { for a in "$@"; do if [ -f "$a" ]; then cat "$a"; else printf '%s\n' "$a"; fi; done; } | sha256sum | cut -c1-16
}

# Daemons the setup scripts started themselves, by their pid files (never by name).
pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# stop_by_pidfile FILE WHAT: end the process FILE names, wait up to 5 s for it, remove FILE.
stop_by_pidfile() {
  local file=$1 what=$2 pid i
  if pid_alive "$file"; then
    pid=$(cat "$file")
    kill "$pid"; for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    log "stopped $what (pid $pid)"
  fi
  rm -f "$file"
}
