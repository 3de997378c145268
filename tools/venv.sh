#!/usr/bin/env bash
# Python virtualenv with the pinned closure (requirements.lock), cached outside the checkout.
source "$(dirname "$0")/lib.sh"
py=${PYTHON:-python3}
key=$(cache_key "$LVSLAB_ROOT/requirements.lock" "$("$py" -c 'import sys; print(sys.version)')")
venv=$LVSLAB_CACHE/venv-$key
if [ ! -x "$venv/bin/python" ] || [ ! -f "$venv/.complete" ]; then
  make_venv() {
    rm -rf "$venv"
    "$py" -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$LVSLAB_ROOT/requirements.lock"
    touch "$venv/.complete"
  }
  step "creating Python virtualenv ($venv)" make_venv
else
  log "python virtualenv: cached ($venv)"
fi
mkdir -p "$LVSLAB_ROOT/.lvslab"
ln -sfn "$venv" "$LVSLAB_ROOT/.lvslab/venv"
