#!/usr/bin/env bash
# Builds the offline Pulumi toolchain from Go modules (pinned in toolchain/), cached outside the checkout.
# Result: $LVSLAB_ROOT/.lvslab/bin -> $LVSLAB_CACHE/toolchain/bin-<key> holding
#   pulumi, pulumi-language-python, pulumi-language-python-exec, pulumi-resource-pulumi-python.
source "$(dirname "$0")/lib.sh"
# shellcheck source=../toolchain/versions.env
source "$LVSLAB_ROOT/toolchain/versions.env"

TC=$LVSLAB_ROOT/toolchain
GO_TAGS=osusergo,grpcnotrace
VERSION_PKG=github.com/pulumi/pulumi/sdk/v3/go/common/version.Version

req_pin=$(sed -n 's/^pulumi==//p' "$LVSLAB_ROOT/requirements.txt")
[ "$req_pin" = "$PULUMI_VERSION" ] || die "toolchain/versions.env PULUMI_VERSION=$PULUMI_VERSION but requirements.txt pins pulumi==$req_pin: they must be equal"
command -v go >/dev/null || die "Go is not installed: install Go >= 1.25, or install Pulumi CLI v$PULUMI_VERSION on PATH"
go_version=$(go env GOVERSION)

proxy_hint() {
  die "cannot download Go modules through the Go module proxy ($(go env GOPROXY)): $1
  Fix the proxy/network, or install the Pulumi CLI v$PULUMI_VERSION (with its bundled pulumi-language-python)
  officially and put it on PATH; lvs-lab then only builds what is missing."
}

# build_go NAME MODULE_DIR PACKAGE VERSION OUT: go build with the version stamp, reproducibly.
build_go() {
  local name=$1 dir=$2 pkg=$3 version=$4 out=$5 tmp
  tmp=$(mktemp -d "$LVSLAB_CACHE/toolchain/.build.XXXXXX")
  # go build downloads only the modules the package needs (go.mod lists more than the proxy serves).
  if ! (cd "$dir" && CGO_ENABLED=0 go build -mod=readonly -trimpath -tags "$GO_TAGS" \
      -ldflags "-s -w -X $VERSION_PKG=v$version" -o "$tmp/$name" "$pkg") 2>"$tmp/err"; then
    if grep -q -E 'proxy|403|dial tcp|no such host|i/o timeout' "$tmp/err"; then proxy_hint "$(tail -3 "$tmp/err")"; fi
    cat "$tmp/err" >&2; die "go build of $pkg failed"
  fi
  mkdir -p "$(dirname "$out")"
  mv "$tmp/$name" "$out"
  rm -rf "$tmp"
}

mkdir -p "$LVSLAB_CACHE/toolchain"
t_all=$SECONDS

# 1. Pulumi CLI: reuse an official install of the pinned version when there is one.
cli_key=$(cache_key "$TC/cli/go.mod" "$TC/cli/go.sum" "$PULUMI_VERSION" "$go_version" "$GO_TAGS")
cli=$LVSLAB_CACHE/toolchain/cli-$cli_key/pulumi
ambient=$(command -v pulumi || true)
if [ -n "$ambient" ] && [ "$ambient" != "$cli" ] && [ "$("$ambient" version 2>/dev/null)" = "v$PULUMI_VERSION" ] \
   && [ -x "$(dirname "$ambient")/pulumi-language-python" ]; then
  log "using the Pulumi CLI v$PULUMI_VERSION already on PATH: $ambient"
  cli=$ambient
elif [ -x "$cli" ]; then
  log "pulumi CLI v$PULUMI_VERSION: cached ($cli)"
else
  step "building pulumi CLI v$PULUMI_VERSION from github.com/pulumi/pulumi/pkg/v3 (several minutes on 2 cores)" \
    build_go pulumi "$TC/cli" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi "$PULUMI_VERSION" "$cli"
fi

# 2. Python language host.
lh_key=$(cache_key "$TC/langhost/go.mod" "$TC/langhost/go.sum" "$LANGHOST_SDK_VERSION" "$go_version")
langhost=$LVSLAB_CACHE/toolchain/langhost-$lh_key/pulumi-language-python
if [ "$cli" = "$ambient" ]; then
  langhost=$(dirname "$ambient")/pulumi-language-python
elif [ -x "$langhost" ]; then
  log "pulumi-language-python (sdk v$LANGHOST_SDK_VERSION): cached"
else
  step "building pulumi-language-python from github.com/pulumi/pulumi/sdk/v3@v$LANGHOST_SDK_VERSION" \
    build_go pulumi-language-python "$TC/langhost" github.com/pulumi/pulumi/sdk/v3/python/cmd/pulumi-language-python \
    "$LANGHOST_SDK_VERSION" "$langhost"
fi

# 3. The exec script and the dynamic-provider shim of the pinned sdk (the pip wheel ships neither).
scripts=$LVSLAB_CACHE/toolchain/sdk-scripts-$PULUMI_VERSION
if [ ! -x "$scripts/pulumi-resource-pulumi-python" ]; then
  fetch_scripts() {
    local dir
    dir=$(go mod download -json "github.com/pulumi/pulumi/sdk/v3@v$PULUMI_VERSION" | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p') \
      || proxy_hint "sdk/v3@v$PULUMI_VERSION"
    [ -n "$dir" ] || proxy_hint "sdk/v3@v$PULUMI_VERSION not downloadable"
    mkdir -p "$scripts.tmp"
    cp "$dir/python/cmd/pulumi-language-python-exec" "$dir/python/dist/pulumi-resource-pulumi-python" "$scripts.tmp/"
    chmod 755 "$scripts.tmp"/*   # the module cache is read-only
    rm -rf "$scripts"; mv "$scripts.tmp" "$scripts"
  }
  step "taking pulumi-language-python-exec and pulumi-resource-pulumi-python from sdk/v3@v$PULUMI_VERSION" fetch_scripts
else
  log "sdk scripts v$PULUMI_VERSION: cached"
fi

# 4. One bin directory, keyed by everything in it, linked from the checkout.
bin=$LVSLAB_CACHE/toolchain/bin-$(cache_key "$cli" "$langhost" "$scripts")
if [ ! -d "$bin" ]; then
  # Real files (hard links where possible), not symlinks: the CLI finds its language host beside itself,
  # and the host finds its exec script beside its own resolved path.
  rm -rf "$bin.tmp"; mkdir -p "$bin.tmp"
  for f in "$cli" "$langhost" "$scripts/pulumi-language-python-exec" "$scripts/pulumi-resource-pulumi-python"; do
    cp -lL "$f" "$bin.tmp/" 2>/dev/null || cp -L "$f" "$bin.tmp/"
  done
  mv "$bin.tmp" "$bin"
fi
mkdir -p "$LVSLAB_ROOT/.lvslab"
ln -sfn "$bin" "$LVSLAB_ROOT/.lvslab/bin"
[ "$("$bin/pulumi" version)" = "v$PULUMI_VERSION" ] || die "$bin/pulumi does not report v$PULUMI_VERSION"
log "toolchain ready in $((SECONDS - t_all)) s: $("$bin/pulumi" version) ($bin)"
