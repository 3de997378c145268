#!/usr/bin/env bash
# The pinned Pulumi toolchain: CLI, Python language host and the two resource plugins lvs-lab uses
# (pulumi-resource-libvirt, pulumi-resource-command). Binaries are cached outside the checkout, keyed by
# their inputs; the checkout gets .lvslab/bin (CLI + language host) and the plugins in its PULUMI_HOME.
#
# For each binary, in this order, every step logged with its outcome:
#   1. already installed at the pinned version (an official install on PATH, or our cache)
#   2. `pulumi plugin install` (what a user with internet gets; fails fast here)
#   3. a build from the Go module proxy
#   4. a build from the upstream source archives in $LVSLAB_UPSTREAM (default ../shared/upstream), each
#      checked against toolchain/upstream.lock before it is unpacked
source "$(dirname "$0")/lib.sh"
# shellcheck source=../toolchain/versions.env
source "$LVSLAB_ROOT/toolchain/versions.env"

TC=$LVSLAB_ROOT/toolchain
GO_TAGS=osusergo,grpcnotrace
SDK_VERSION_PKG=github.com/pulumi/pulumi/sdk/v3/go/common/version.Version
RECIPE=2   # bump when a build recipe below changes
UPSTREAM=${LVSLAB_UPSTREAM:-}
if [ -z "$UPSTREAM" ] && [ -d "$LVSLAB_ROOT/../shared/upstream" ]; then UPSTREAM=$(cd "$LVSLAB_ROOT/../shared/upstream" && pwd); fi
INSTALL_TIMEOUT=${LVSLAB_PLUGIN_INSTALL_TIMEOUT:-20}
export PULUMI_HOME=${PULUMI_HOME:-$LVSLAB_ROOT/.lvslab/pulumi-home}
export PULUMI_SKIP_UPDATE_CHECK=true GOFLAGS=${GOFLAGS:-} CGO_ENABLED=0

pin_of() { sed -n "s/^$1==//Ip" "$LVSLAB_ROOT/requirements.txt"; }
for check in "pulumi:$PULUMI_VERSION" "pulumi-libvirt:$LIBVIRT_PLUGIN_VERSION" "pulumi-command:$COMMAND_PLUGIN_VERSION"; do
  pkg=${check%%:*} want=${check#*:}
  [ "$(pin_of "$pkg")" = "$want" ] || die "toolchain/versions.env pins $pkg $want but requirements.txt pins $pkg==$(pin_of "$pkg"): they must be equal"
done
command -v go >/dev/null || die "Go is not installed: install Go >= 1.25, or install Pulumi CLI v$PULUMI_VERSION and the plugins officially"
go_version=$(go env GOVERSION)
mkdir -p "$LVSLAB_CACHE/toolchain"
t_all=$SECONDS

# outcome WHAT STEP RESULT: one line per attempted step, so a user sees why a build happened.
outcome() { log "$1: $2 -> $3"; }

# build_go NAME DIR PACKAGE LDFLAGS OUT [MODFLAG]: reproducible go build into OUT.
build_go() {
  local name=$1 dir=$2 pkg=$3 ldflags=$4 out=$5 mod=${6:--mod=readonly} tmp
  tmp=$(mktemp -d "$LVSLAB_CACHE/toolchain/.build.XXXXXX")
  if ! (cd "$dir" && go build "$mod" -trimpath -tags "$GO_TAGS" -ldflags "-s -w $ldflags" -o "$tmp/$name" "$pkg") \
      2>"$tmp/err"; then
    tail -20 "$tmp/err" >&2; rm -rf "$tmp"; return 1
  fi
  mkdir -p "$(dirname "$out")"
  mv "$tmp/$name" "$out.tmp" && mv "$out.tmp" "$out"
  rm -rf "$tmp"
}

# install_go NAME PACKAGE@VERSION LDFLAGS OUT: go install of a module the proxy serves, into OUT.
install_go() {
  local name=$1 pkg=$2 ldflags=$3 out=$4 tmp
  tmp=$(mktemp -d "$LVSLAB_CACHE/toolchain/.build.XXXXXX")
  GOBIN=$tmp go install -trimpath -tags "$GO_TAGS" -ldflags "-s -w $ldflags" "$pkg" 2>"$tmp/err" \
    || { tail -20 "$tmp/err" >&2; rm -rf "$tmp"; return 1; }
  mkdir -p "$(dirname "$out")"; mv "$tmp/$name" "$out"; rm -rf "$tmp"
}

# unpack_verified DEST ARCHIVE...: check each archive's sha256 against toolchain/upstream.lock, then untar.
unpack_verified() {
  local dest=$1 a want got; shift
  [ -n "$UPSTREAM" ] || { log "no upstream source archives (set LVSLAB_UPSTREAM)"; return 1; }
  for a in "$@"; do
    [ -f "$UPSTREAM/$a" ] || { log "missing $UPSTREAM/$a"; return 1; }
    want=$(awk -v f="$a" '$2 == f {print $1}' "$TC/upstream.lock")
    [ -n "$want" ] || { log "$a is not in toolchain/upstream.lock"; return 1; }
    got=$(sha256sum "$UPSTREAM/$a" | cut -d' ' -f1)
    [ "$got" = "$want" ] || { log "sha256 mismatch for $UPSTREAM/$a: $got, toolchain/upstream.lock says $want"; return 1; }
    tar -xzf "$UPSTREAM/$a" -C "$dest"
  done
}

archive_key() {  # the lock lines of the archives + recipe + Go: the cache key of a build from source
  local a; { for a in "$@"; do grep " $a\$" "$TC/upstream.lock"; done; echo "$RECIPE $go_version"; } | sha256sum | cut -c1-16
}

# proxy_available MODULE VERSION: does the Go module proxy serve it? (it answers 403 at once when not)
proxy_available() {
  local out rc=0; out=$(go mod download -json "$1@$2" 2>&1) || rc=$?
  if [ $rc = 0 ] && ! printf '%s' "$out" | grep -q '"Error"'; then return 0; fi
  PROXY_ERROR=$(printf '%s' "$out" | python3 -c '
import json, sys
text = sys.stdin.read()
try:
    text = json.loads(text).get("Error", text)
except ValueError:
    pass
print(" ".join(text.split())[-140:])')
  return 1
}

# ---------------------------------------------------------------------------------------------------
# 1. Pulumi CLI: an official install of the pinned version on PATH, else a build from pkg/v3 (proxy).
cli_key=$(cache_key "$TC/cli/go.mod" "$TC/cli/go.sum" "$PULUMI_VERSION" "$go_version" "$GO_TAGS")
cli=$LVSLAB_CACHE/toolchain/cli-$cli_key/pulumi
# An official install is a pulumi on PATH that is not one of ours (tools/env.sh puts .lvslab/bin on PATH).
ambient=$(command -v pulumi || true)
case "$(readlink -f "$ambient" 2>/dev/null)" in
  "$(readlink -f "$LVSLAB_CACHE")"/*|"$LVSLAB_ROOT"/*) ambient= ;;
esac
official=
if [ -n "$ambient" ] && [ "$("$ambient" version 2>/dev/null)" = "v$PULUMI_VERSION" ]; then
  outcome "pulumi CLI" "installed on PATH" "found v$PULUMI_VERSION ($ambient)"
  cli=$ambient official=1
elif [ -x "$cli" ]; then
  outcome "pulumi CLI v$PULUMI_VERSION" "installed (cache)" "found ($cli)"
else
  step "pulumi CLI v$PULUMI_VERSION: build from the Go module proxy (github.com/pulumi/pulumi/pkg/v3)" \
    build_go pulumi "$TC/cli" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi "-X $SDK_VERSION_PKG=v$PULUMI_VERSION" "$cli" \
    || die "cannot build the pulumi CLI through the Go module proxy ($(go env GOPROXY)); install Pulumi CLI v$PULUMI_VERSION officially and put it on PATH"
fi
[ "$("$cli" version)" = "v$PULUMI_VERSION" ] || die "$cli does not report v$PULUMI_VERSION"

# ---------------------------------------------------------------------------------------------------
# 2. pulumi-language-python v$PULUMI_VERSION (honours Pulumi.yaml's runtime.options.virtualenv).
lh_key=$(archive_key "pulumi-language-python-$PULUMI_VERSION.tar.gz")
langhost=$LVSLAB_CACHE/toolchain/langhost-$PULUMI_VERSION-$lh_key/pulumi-language-python
LH_MODULE=github.com/pulumi/pulumi/sdk/python/cmd/pulumi-language-python/v3
langhost_from_source() {
  local work; work=$(mktemp -d "$LVSLAB_CACHE/toolchain/.src.XXXXXX")
  unpack_verified "$work" "pulumi-language-python-$PULUMI_VERSION.tar.gz" || { rm -rf "$work"; return 1; }
  local dir=$work/pulumi-language-python-$PULUMI_VERSION/sdk/python/cmd/pulumi-language-python
  # Upstream builds it inside the pulumi monorepo (replace => ../../..); here pkg and sdk come from the proxy
  # at the CLI's version.
  (cd "$dir" && go mod edit -dropreplace github.com/pulumi/pulumi/pkg/v3 -dropreplace github.com/pulumi/pulumi/sdk/v3 \
      -require "github.com/pulumi/pulumi/pkg/v3@v$PULUMI_VERSION" -require "github.com/pulumi/pulumi/sdk/v3@v$PULUMI_VERSION")
  build_go pulumi-language-python "$dir" . "-X $SDK_VERSION_PKG=v$PULUMI_VERSION" "$langhost" -mod=mod
  local rc=$?; rm -rf "$work"; return $rc
}
if [ -n "$official" ] && [ -x "$(dirname "$ambient")/pulumi-language-python" ]; then
  langhost=$(dirname "$ambient")/pulumi-language-python
  outcome "pulumi-language-python" "installed beside the official CLI" "found ($langhost)"
elif [ -x "$langhost" ]; then
  outcome "pulumi-language-python v$PULUMI_VERSION" "installed (cache)" "found ($langhost)"
else
  outcome "pulumi-language-python v$PULUMI_VERSION" "installed" "no"
  # `pulumi plugin install language python` does not apply: the host ships inside the CLI's release archive.
  if proxy_available "$LH_MODULE" "v$PULUMI_VERSION"; then
    step "pulumi-language-python: build from the Go module proxy" \
      install_go pulumi-language-python "$LH_MODULE@v$PULUMI_VERSION" "-X $SDK_VERSION_PKG=v$PULUMI_VERSION" "$langhost" \
      || die "go build of $LH_MODULE failed"
  else
    outcome "pulumi-language-python" "Go module proxy ($LH_MODULE)" "not served: $PROXY_ERROR"
    step "pulumi-language-python v$PULUMI_VERSION: build from the source archive in $UPSTREAM" langhost_from_source \
      || die "cannot provide pulumi-language-python v$PULUMI_VERSION: no official install, not on the Go module proxy, and no verified source archive"
  fi
fi

# The exec script the host runs (sdk/v3 at the CLI's version; the pip wheel does not ship it).
scripts=$LVSLAB_CACHE/toolchain/sdk-scripts-$PULUMI_VERSION
if [ -z "$official" ] && [ ! -x "$scripts/pulumi-language-python-exec" ]; then
  fetch_scripts() {
    local dir
    dir=$(go mod download -json "github.com/pulumi/pulumi/sdk/v3@v$PULUMI_VERSION" | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')
    [ -n "$dir" ] || die "sdk/v3@v$PULUMI_VERSION is not downloadable from the Go module proxy"
    mkdir -p "$scripts.tmp"
    cp "$dir/python/cmd/pulumi-language-python-exec" "$scripts.tmp/"
    chmod 755 "$scripts.tmp"/*   # the module cache is read-only
    rm -rf "$scripts"; mv "$scripts.tmp" "$scripts"
  }
  step "pulumi-language-python-exec from sdk/v3@v$PULUMI_VERSION" fetch_scripts
fi

# One bin directory, keyed by everything in it, linked from the checkout. Real files (hard links where
# possible): the CLI finds its language host beside itself, the host its exec script beside its own path.
if [ -n "$official" ]; then
  bin=$(dirname "$ambient")
else
  bin=$LVSLAB_CACHE/toolchain/bin-$(cache_key "$cli" "$langhost" "$scripts/pulumi-language-python-exec")
  if [ ! -d "$bin" ]; then
    rm -rf "$bin.tmp"; mkdir -p "$bin.tmp"
    for f in "$cli" "$langhost" "$scripts/pulumi-language-python-exec"; do
      cp -lL "$f" "$bin.tmp/" 2>/dev/null || cp -L "$f" "$bin.tmp/"
    done
    mv "$bin.tmp" "$bin"
  fi
fi
mkdir -p "$LVSLAB_ROOT/.lvslab"
ln -sfn "$bin" "$LVSLAB_ROOT/.lvslab/bin"
PULUMI=$bin/pulumi

# ---------------------------------------------------------------------------------------------------
# 3. Resource plugins, registered in PULUMI_HOME with `pulumi plugin install --file`.
plugin_installed() {  # NAME VERSION
  "$PULUMI" plugin ls --json 2>/dev/null | python3 -c '
import json, sys
name, version = sys.argv[1:3]
plugins = json.load(sys.stdin) or []
sys.exit(0 if any(p.get("kind") == "resource" and p.get("name") == name and p.get("version") == version
                  for p in plugins) else 1)' "$1" "$2"
}

libvirt_from_source() {  # OUT
  local work dir; work=$(mktemp -d "$LVSLAB_CACHE/toolchain/.src.XXXXXX")
  unpack_verified "$work" "pulumi-libvirt-$LIBVIRT_PLUGIN_VERSION.tar.gz" "terraform-provider-libvirt-$TF_LIBVIRT_VERSION.tar.gz" \
    || { rm -rf "$work"; return 1; }
  dir=$work/pulumi-libvirt-$LIBVIRT_PLUGIN_VERSION/provider
  (cd "$dir" && go mod edit -replace "github.com/dmacvicar/terraform-provider-libvirt=../../terraform-provider-libvirt-$TF_LIBVIRT_VERSION" \
     && cd cmd/pulumi-resource-libvirt && VERSION=$LIBVIRT_PLUGIN_VERSION go run -mod=mod ./generate.go >/dev/null) \
    || { rm -rf "$work"; return 1; }
  build_go pulumi-resource-libvirt "$dir" ./cmd/pulumi-resource-libvirt \
    "-X github.com/pulumi/pulumi-libvirt/provider/pkg/version.Version=$LIBVIRT_PLUGIN_VERSION" "$1" -mod=mod
  local rc=$?; rm -rf "$work"; return $rc
}

command_from_source() {  # OUT
  local work; work=$(mktemp -d "$LVSLAB_CACHE/toolchain/.src.XXXXXX")
  unpack_verified "$work" "pulumi-command-$COMMAND_PLUGIN_VERSION.tar.gz" || { rm -rf "$work"; return 1; }
  build_go pulumi-resource-command "$work/pulumi-command-$COMMAND_PLUGIN_VERSION/provider" ./cmd/pulumi-resource-command \
    "-X github.com/pulumi/pulumi-command/provider/pkg/version.Version=$COMMAND_PLUGIN_VERSION" "$1" -mod=mod
  local rc=$?; rm -rf "$work"; return $rc
}

# provide_plugin NAME VERSION PROXY_MODULE SOURCE_FN ARCHIVE...
provide_plugin() {
  local name=$1 version=$2 module=$3 from_source=$4; shift 4
  local what="pulumi-resource-$name v$version"
  if plugin_installed "$name" "$version"; then outcome "$what" "installed" "found in $PULUMI_HOME"; return; fi
  local out=$LVSLAB_CACHE/toolchain/plugin-$name-$version-$(archive_key "$@")/pulumi-resource-$name
  if [ -x "$out" ]; then
    outcome "$what" "installed" "built earlier ($out)"
  else
    outcome "$what" "installed" "no"
    local err rc=0
    err=$(timeout "$INSTALL_TIMEOUT" "$PULUMI" plugin install resource "$name" "$version" --non-interactive 2>&1) || rc=$?
    if [ $rc = 0 ]; then outcome "$what" "pulumi plugin install" "installed"; return; fi
    [ $rc != 124 ] || err="no answer within $INSTALL_TIMEOUT s"
    outcome "$what" "pulumi plugin install" "failed: $(printf '%s' "$err" | grep -v '^\s*$' | tail -1 | cut -c1-160)"
    if proxy_available "$module" "v$version"; then
      step "$what: build from the Go module proxy" \
        install_go "pulumi-resource-$name" "$module/cmd/pulumi-resource-$name@v$version" "" "$out" \
        || die "go build of $module@v$version failed"
    else
      outcome "$what" "Go module proxy ($module)" "not served: $PROXY_ERROR"
      step "$what: build from the source archives in $UPSTREAM" "$from_source" "$out" \
        || die "cannot provide $what: pulumi plugin install failed, the Go module proxy refuses it, and no verified source archive built"
    fi
  fi
  "$PULUMI" plugin install resource "$name" "$version" --file "$out" >/dev/null 2>&1 \
    || die "pulumi plugin install resource $name $version --file $out failed"
  outcome "$what" "register" "installed in $PULUMI_HOME"
}

provide_plugin libvirt "$LIBVIRT_PLUGIN_VERSION" github.com/pulumi/pulumi-libvirt/provider libvirt_from_source \
  "pulumi-libvirt-$LIBVIRT_PLUGIN_VERSION.tar.gz" "terraform-provider-libvirt-$TF_LIBVIRT_VERSION.tar.gz"
provide_plugin command "$COMMAND_PLUGIN_VERSION" github.com/pulumi/pulumi-command/provider command_from_source \
  "pulumi-command-$COMMAND_PLUGIN_VERSION.tar.gz"

log "toolchain ready in $((SECONDS - t_all)) s: pulumi $("$PULUMI" version), libvirt $LIBVIRT_PLUGIN_VERSION, command $COMMAND_PLUGIN_VERSION"
