#!/usr/bin/env bash
# Idempotent setup from a fresh Debian 12 machine (root, no GPU, no Docker engine).
#
# Why the venv is made from /usr/bin/python3.11: tritonserver's Python-backend
# stub links Debian's libpython3.11 and takes sys.prefix from the python3 first
# on PATH; a venv made from another 3.11 build breaks imports inside models.
#
# A stamp file records the hash of every input of the install; when nothing
# changed, a second run only checks and exits in well under a second.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
BASE_PYTHON="${BASE_PYTHON:-/usr/bin/python3.11}"
STAMP="$VENV/.setup-stamp"
# Serving needs the first three; the rest are real peers the tests run: nginx (balancer),
# prometheus/promtool (monitoring), nats-server (queue workers), chromium (report check);
# gettext-base (envsubst), openssl and curl: the balancer's config, test certificates, docker/ready.sh.
APT_PACKAGES=(libb64-0d libpython3.11 python3.11-venv nginx prometheus nats-server chromium gettext-base openssl curl)

log() { printf '[setup] %s\n' "$*"; }

inputs_hash() {
  cat "$ROOT/requirements/"*.txt "$ROOT/constraints.txt" "$ROOT/pyproject.toml" \
      "$ROOT/client/pyproject.toml" "$ROOT/scripts/setup.sh" 2>/dev/null | sha256sum | cut -d' ' -f1
}

install_apt_packages() {
  local missing=()
  for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if ((${#missing[@]})); then
    log "apt: installing ${missing[*]}"
    # Packages install only; the tests start these servers themselves on free ports,
    # so keep Debian's maintainer scripts from starting system services (exit 101).
    local policy=/usr/sbin/policy-rc.d created_policy=0
    if [[ ! -e $policy ]]; then
      printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created_policy=1
    fi
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
      --no-install-recommends "${missing[@]}" >/dev/null
    if ((created_policy)); then rm -f "$policy"; fi
  fi
}

create_venv() {
  if [[ -x "$VENV/bin/python" ]] && grep -q "^home = /usr/bin" "$VENV/pyvenv.cfg" 2>/dev/null; then
    return
  fi
  log "creating $VENV from $BASE_PYTHON"
  rm -rf "$VENV"
  "$BASE_PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip wheel setuptools
}

install_python_packages() {
  local pip=("$VENV/bin/pip" install -q -c "$ROOT/constraints.txt")
  log "pip: torch (CPU build from local disk)"
  "${pip[@]}" torch==2.13.0
  log "pip: runtime and dev requirements"
  "${pip[@]}" -r "$ROOT/requirements/runtime.txt" -r "$ROOT/requirements/dev.txt"
  log "pip: deepspeed (built against the installed torch)"
  "${pip[@]}" --no-build-isolation deepspeed
  # genai-perf's perf-analyzer dependency resolves to a placeholder on PyPI;
  # it uses the perf_analyzer that tritonclient installs instead.
  log "pip: genai-perf (without its placeholder perf-analyzer dependency)"
  "$VENV/bin/pip" install -q --no-deps -c "$ROOT/constraints.txt" genai-perf
  log "pip: this project and its client distribution (editable)"
  # setuptools' editable build prints pages of warnings; keep them unless it fails.
  # The server first: reinstalling it removes what an older single distribution
  # installed for the client (its ds-triton-client script), which the client then owns.
  local log="$VENV/.editable-install.log"
  "$VENV/bin/pip" install -q --no-deps --no-build-isolation -e "$ROOT" >"$log" 2>&1 || { cat "$log"; return 1; }
  "$VENV/bin/pip" install -q --no-deps --no-build-isolation -e "$ROOT/client" >>"$log" 2>&1 || { cat "$log"; return 1; }
}

main() {
  install_apt_packages
  create_venv
  local want
  want="$(inputs_hash)"
  if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
    log "up to date ($VENV)"
  else
    install_python_packages
    echo "$want" >"$STAMP"
  fi
  # Cheap and idempotent: makes the offline default checkpoints if missing.
  "$VENV/bin/python" "$ROOT/scripts/make_tiny_models.py" --quiet
  log "ready: $VENV"
}

main "$@"
