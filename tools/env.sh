# shellcheck shell=bash
# Environment for running the project's pulumi: the toolchain on PATH (Pulumi.yaml names the venv), the
# plugins in the checkout's PULUMI_HOME, embedded defaults for the
# state backend (local files in .lvslab/state) and the passphrase secrets provider. Any of these can be
# overridden by exporting it first (e.g. PULUMI_BACKEND_URL=s3://... or PULUMI_CONFIG_PASSPHRASE).
_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH="$_root/.lvslab/bin:$PATH"
export PULUMI_HOME=${PULUMI_HOME:-$_root/.lvslab/pulumi-home}
export PULUMI_SKIP_UPDATE_CHECK=true
export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true
export PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK=${PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK:-false}
if [ -z "${PULUMI_BACKEND_URL:-}" ]; then
  mkdir -p "$_root/.lvslab/state"
  export PULUMI_BACKEND_URL="file://$_root/.lvslab/state"
fi
if [ -z "${PULUMI_CONFIG_PASSPHRASE:-}" ] && [ -z "${PULUMI_CONFIG_PASSPHRASE_FILE:-}" ]; then
  if [ ! -s "$_root/.lvslab/passphrase" ]; then
    (umask 077; mkdir -p "$_root/.lvslab"; head -c 24 /dev/urandom | base64 > "$_root/.lvslab/passphrase")
  fi
  export PULUMI_CONFIG_PASSPHRASE_FILE="$_root/.lvslab/passphrase"
fi
# The plain pulumi CLI writes an `encryptionsalt:` line (this checkout's passphrase) into a committed stack file.
# The filter `make setup` installs (.gitattributes) leaves the line out of what git compares, and after each
# pulumi command this refreshes git's index entry of a stack file whose only change is that line (git reports a
# file whose size changed as modified without comparing contents): `git status` stays clean.
export LVSLAB_ROOT="$_root"
pulumi() {
  command pulumi "$@"
  local rc=$? f
  for f in $(git -C "$LVSLAB_ROOT" status --porcelain -- stacks 2>/dev/null | sed -n 's/^ M //p'); do
    git -C "$LVSLAB_ROOT" diff --quiet -- "$f" && git -C "$LVSLAB_ROOT" add -- "$f"
  done
  return $rc
}
export -f pulumi
unset _root
