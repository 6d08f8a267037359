#!/usr/bin/env bash
# Builds the Go-built parts of the local stack from the Go module proxy:
# kube-apiserver, kube-controller-manager, kube-scheduler, kubectl (k8s.io/kubernetes),
# etcd (go.etcd.io/etcd/server/v3), kwok (sigs.k8s.io/kwok) and helm (helm.sh/helm/v3).
#
# Each binary lands in $PONDER_CACHE/bin (default ~/.cache/ponder/bin) next to a stamp
# file naming the version it was built from, so a second run builds nothing.
# Usage: hack/build-go-tools.sh [tool ...]   (default: all)
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.35.4}
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
KWOK_VERSION=${KWOK_VERSION:-v0.7.0}
HELM_VERSION=${HELM_VERSION:-v3.19.5}

CACHE=${PONDER_CACHE:-$HOME/.cache/ponder}
BIN=$CACHE/bin
WORK=$CACHE/gobuild
mkdir -p "$BIN" "$WORK"
export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0

log() { printf '[build-go-tools] %s\n' "$*" >&2; }

fresh() { # fresh NAME VERSION: true when the binary is there and was built from VERSION
  [[ -x "$BIN/$1" && -f "$BIN/.$1.version" && "$(cat "$BIN/.$1.version")" == "$2" ]]
}

stamp() { echo "$2" > "$BIN/.$1.version"; }

wrapper() { # wrapper DIR: an empty module to build other modules' commands from
  rm -rf "$1" && mkdir -p "$1"
  printf 'module ponder.dev/gobuild/%s\n\ngo 1.26\n' "$(basename "$1")" > "$1/go.mod"
}

build_kubernetes() {
  local tools=(kube-apiserver kube-controller-manager kube-scheduler kubectl) missing=()
  for t in "${tools[@]}"; do fresh "$t" "$K8S_VERSION" || missing+=("$t"); done
  [[ ${#missing[@]} -eq 0 ]] && { log "kubernetes $K8S_VERSION: cached"; return; }
  log "kubernetes $K8S_VERSION: building ${missing[*]} (many minutes on a cold cache)"
  local dir=$WORK/kubernetes; wrapper "$dir"; cd "$dir"
  go mod edit -require="k8s.io/kubernetes@$K8S_VERSION"
  # k8s.io/kubernetes points each staging module at ./staging; point them at their releases.
  local gomod minor staging
  gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  minor=${K8S_VERSION#v1.}
  for staging in $(sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging.*#\1#p' "$gomod"); do
    go mod edit -replace="$staging=$staging@v0.$minor"
  done
  local major=1 minor_only=${minor%%.*} date
  date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  local ld="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor_only"
    ld+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$date"
  done
  for t in "${missing[@]}"; do
    log "  go build $t"
    go build -trimpath -ldflags "$ld" -o "$BIN/$t" "k8s.io/kubernetes/cmd/$t"
    stamp "$t" "$K8S_VERSION"
  done
}

build_etcd() {
  fresh etcd "$ETCD_VERSION" && { log "etcd $ETCD_VERSION: cached"; return; }
  log "etcd $ETCD_VERSION: building"
  local dir=$WORK/etcd; wrapper "$dir"; cd "$dir"
  go mod edit -require="go.etcd.io/etcd/server/v3@$ETCD_VERSION"
  for m in api/v3 client/pkg/v3 client/v3 pkg/v3; do
    go mod edit -replace="go.etcd.io/etcd/$m=go.etcd.io/etcd/$m@$ETCD_VERSION"
  done
  go build -trimpath -ldflags "-s -w" -o "$BIN/etcd" go.etcd.io/etcd/server/v3
  stamp etcd "$ETCD_VERSION"
}

build_kwok() {
  fresh kwok "$KWOK_VERSION" && { log "kwok $KWOK_VERSION: cached"; return; }
  log "kwok $KWOK_VERSION: building"
  local dir=$WORK/kwok; wrapper "$dir"; cd "$dir"
  go mod edit -require="sigs.k8s.io/kwok@$KWOK_VERSION"
  go build -trimpath -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION" \
    -o "$BIN/kwok" sigs.k8s.io/kwok/cmd/kwok
  # The default node and pod stages ship inside the module; keep a copy beside the binary.
  local src
  src=$(go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)
  rm -rf "$BIN/kwok-stages" && mkdir -p "$BIN/kwok-stages"
  cp -r "$src/kustomize/stage/." "$BIN/kwok-stages/" && chmod -R u+w "$BIN/kwok-stages"
  stamp kwok "$KWOK_VERSION"
}

build_helm() {
  fresh helm "$HELM_VERSION" && { log "helm $HELM_VERSION: cached"; return; }
  log "helm $HELM_VERSION: building"
  local dir=$WORK/helm; wrapper "$dir"; cd "$dir"
  go mod edit -require="helm.sh/helm/v3@$HELM_VERSION"
  local v=helm.sh/helm/v3/internal/version
  go build -trimpath -ldflags "-s -w -X $v.version=$HELM_VERSION -X $v.gitTreeState=clean" \
    -o "$BIN/helm" helm.sh/helm/v3/cmd/helm
  stamp helm "$HELM_VERSION"
}

targets=("$@")
[[ ${#targets[@]} -eq 0 ]] && targets=(etcd kwok helm kubernetes)
for t in "${targets[@]}"; do
  case $t in
    etcd) build_etcd ;; kwok) build_kwok ;; helm) build_helm ;; kubernetes) build_kubernetes ;;
    *) log "unknown tool: $t"; exit 2 ;;
  esac
done
log "done: $(ls "$BIN" | tr '\n' ' ')"
