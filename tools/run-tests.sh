#!/usr/bin/env bash
# The whole test suite: lint, unit tests, then the end-to-end runs on real VMs (tests/e2e), which create
# their own network namespace with libvirtd inside it. Set LVSLAB_E2E=0 to skip the VM tests locally.
#
# With the VM tests, the unit tests run beside them at nice 10 (their own pytest, basetemp under .lvslab/):
# the guests' emulation keeps most of its CPU (nice 10: a tenth of a contended core, so a unit test's own
# subprocess timeouts hold), the unit tests mostly use what the labs leave idle (verification waits),
# and their ~90 s no longer add to the run. Their output follows the e2e output; the exit status is the worse.
source "$(dirname "$0")/lib.sh"
source "$LVSLAB_ROOT/tools/env.sh"
cd "$LVSLAB_ROOT"
py=.lvslab/venv/bin/python
pytest_args=(-q -p no:cacheprovider -o console_output_style=classic --durations=12)
step "ruff" .lvslab/venv/bin/ruff check --quiet .
t0=$SECONDS
set +e
if [ "${LVSLAB_E2E:-1}" = 0 ]; then
  "$py" -m pytest "${pytest_args[@]}" tests/unit "$@"
  rc=$?
else
  unit_log=$(mktemp)
  rm -rf .lvslab/pytest-unit
  nice -n 10 "$py" -m pytest "${pytest_args[@]}" --basetemp=.lvslab/pytest-unit tests/unit "$@" >"$unit_log" 2>&1 &
  unit_pid=$!
  "$py" -m pytest "${pytest_args[@]}" tests/e2e "$@"
  e2e_rc=$?
  wait "$unit_pid"
  unit_rc=$?
  log "unit tests (run beside the e2e tests):"
  cat "$unit_log"
  rm -f "$unit_log"
  # 5: no test collected (a -k that selects only one kind); the run fails only if neither ran anything.
  if [ "$unit_rc" = 5 ] && [ "$e2e_rc" = 5 ]; then rc=5
  elif [ "$unit_rc" = 5 ]; then rc=$e2e_rc
  elif [ "$e2e_rc" = 5 ]; then rc=$unit_rc
  else rc=$(( unit_rc > e2e_rc ? unit_rc : e2e_rc ))
  fi
fi
set -e
log "test suite finished in $((SECONDS - t0)) s (exit $rc)"
exit $rc
