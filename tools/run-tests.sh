#!/usr/bin/env bash
# The whole test suite: lint, unit tests, then the end-to-end runs on real VMs (tests/e2e), which create
# their own network namespace with libvirtd inside it. Set LVSLAB_E2E=0 to skip the VM tests locally.
source "$(dirname "$0")/lib.sh"
source "$LVSLAB_ROOT/tools/env.sh"
cd "$LVSLAB_ROOT"
py=.lvslab/venv/bin/python
step "ruff" .lvslab/venv/bin/ruff check --quiet .
targets=(tests/unit)
[ "${LVSLAB_E2E:-1}" = 0 ] || targets+=(tests/e2e)
t0=$SECONDS
set +e
"$py" -m pytest -q -p no:cacheprovider -o console_output_style=classic --durations=12 "${targets[@]}" "$@"
rc=$?
set -e
log "test suite finished in $((SECONDS - t0)) s (exit $rc)"
exit $rc
