#!/usr/bin/env bash
# One-command set-up of everything `make test` and `make demo` need, idempotent and cached
# outside the repository (PONDER_CACHE, default ~/.cache/ponder):
#   1. Debian packages: prometheus (+ promtool), iproute2;
#   2. the project's virtualenv .venv: the product, its dev and tools extras, and the local
#      stack (localstack/pyproject.toml), editable (uv, wheels cached in ~/.cache/uv);
#   3. Triton Inference Server from the nvidia-pytriton wheel, in its own virtualenv (it pins
#      numpy<2), with the python-backend stub that matches this interpreter;
#   4. the Go-built Kubernetes binaries, etcd, kwok and helm (hack/build-go-tools.sh).
# Usage: hack/setup.sh [apt|python|triton|go ...]   (default: all, in that order)
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE=${PONDER_CACHE:-$HOME/.cache/ponder}
PYTHON=${PYTHON:-python3.11}
PYTRITON_VERSION=${PYTRITON_VERSION:-0.7.0}
mkdir -p "$CACHE"
log() { printf '[setup] %s\n' "$*" >&2; }
timed() { local t0=$SECONDS; "$@"; log "$1: $((SECONDS - t0)) s"; }

setup_apt() {
  local missing=()
  command -v prometheus >/dev/null || missing+=(prometheus)
  command -v promtool >/dev/null || missing+=(prometheus)
  command -v ip >/dev/null || missing+=(iproute2)
  command -v chromium >/dev/null || missing+=(chromium)  # renders the cost report's HTML
  [[ ${#missing[@]} -eq 0 ]] && { log "debian packages: present"; return; }
  log "debian packages: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

uv_bin() {
  if [[ ! -x "$CACHE/uv/bin/uv" ]]; then
    "$PYTHON" -m venv "$CACHE/uv" && "$CACHE/uv/bin/pip" install -q uv
  fi
  echo "$CACHE/uv/bin/uv"
}

setup_python() {
  local uv stamp want
  uv=$(uv_bin)
  want=$(cat pyproject.toml localstack/pyproject.toml | sha256sum | cut -c1-16)
  stamp=.venv/.ponder-deps
  if [[ -x .venv/bin/python && -f $stamp && "$(cat $stamp)" == "$want" ]]; then
    log "virtualenv .venv: up to date"; return
  fi
  log "virtualenv .venv: installing the project and its dependencies"
  [[ -x .venv/bin/python ]] || "$uv" venv -q --python "$PYTHON" .venv
  # The product with its dev tools and the tools extra, and the local stack (its own
  # distribution, never in the product's wheel), both editable.
  VIRTUAL_ENV=$PWD/.venv "$uv" pip install -q -e '.[dev,tools]' -e ./localstack
  echo "$want" > $stamp
}

setup_triton() {
  local venv=$CACHE/triton-venv pkg
  if [[ ! -f "$venv/.pytriton-$PYTRITON_VERSION" ]]; then
    log "triton: installing nvidia-pytriton $PYTRITON_VERSION"
    local uv; uv=$(uv_bin)
    [[ -x "$venv/bin/python" ]] || "$uv" venv -q --python "$PYTHON" "$venv"
    VIRTUAL_ENV=$venv "$uv" pip install -q "nvidia-pytriton==$PYTRITON_VERSION"
    touch "$venv/.pytriton-$PYTRITON_VERSION"
  fi
  pkg=$("$venv/bin/python" -c 'import pytriton, os; print(os.path.dirname(pytriton.__file__))')
  local pyver stub dest
  pyver=$("$venv/bin/python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
  stub=$pkg/tritonserver/python_backend_stubs/$pyver/triton_python_backend_stub
  dest=$pkg/tritonserver/backends/python/triton_python_backend_stub
  [[ -f $stub ]] || { log "triton: no python-backend stub for Python $pyver in $pkg"; exit 1; }
  cmp -s "$stub" "$dest" 2>/dev/null || cp "$stub" "$dest"
  ln -sfn "$pkg/tritonserver" "$CACHE/tritonserver"
  log "triton: $CACHE/tritonserver/bin/tritonserver"
}

setup_go() { hack/build-go-tools.sh; }

steps=("$@")
[[ ${#steps[@]} -eq 0 ]] && steps=(apt python triton go)
for s in "${steps[@]}"; do
  case $s in
    apt) timed setup_apt ;; python) timed setup_python ;; triton) timed setup_triton ;;
    go) timed setup_go ;; *) log "unknown step: $s"; exit 2 ;;
  esac
done
