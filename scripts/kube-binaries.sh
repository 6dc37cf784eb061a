#!/usr/bin/env bash
# Builds the test control plane (kube-apiserver, kube-controller-manager, etcd) of the Kubernetes version
# pinned in tools/kube/go.mod into $TENANTGATE_KUBE_CACHE/<version>/ (default
# ${XDG_CACHE_HOME:-$HOME/.cache}/tenantgate/kube/<version>/), or reuses what is already there.
# Prints the directory; internal/kubetest finds it the same way (or through KUBEBUILDER_ASSETS).
# A cold build takes several minutes and about 3 GB of memory; it runs under `nice`.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
mod="$root/tools/kube"
version="$(awk '$1 == "k8s.io/kubernetes" { print $2; exit }' <(sed -n '/^require (/,/^)/p' "$mod/go.mod"))"
if [ -z "$version" ]; then
  echo "kube-binaries: no k8s.io/kubernetes version in $mod/go.mod" >&2
  exit 1
fi
cache="${TENANTGATE_KUBE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tenantgate/kube}"
dir="$cache/$version"
bins=(kube-apiserver kube-controller-manager etcd)

complete() {
  for b in "${bins[@]}"; do [ -x "$dir/$b" ] || return 1; done
  # The stamp holds the hash of the go.mod/go.sum the binaries came from, so a changed pin rebuilds.
  [ "$(cat "$dir/.stamp" 2>/dev/null)" = "$(stamp)" ]
}
stamp() { cat "$mod/go.mod" "$mod/go.sum" "$mod/cmd/etcd/main.go" | sha256sum | cut -d' ' -f1; }

if complete; then
  echo "$dir"
  exit 0
fi

mkdir -p "$dir"
tmp="$(mktemp -d "$dir/.build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
echo "kube-binaries: building Kubernetes $version into $dir (cold build: several minutes)" >&2
cd "$mod"
export CGO_ENABLED=0 GOFLAGS="-trimpath -buildvcs=false"
# Without the version stamped in, the API server reports v0.0.0-master and Helm's kubeVersion checks fail.
pkg=k8s.io/component-base/version
minor="${version#v*.}"; minor="${minor%%.*}"
ldflags="-s -w -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
nice -n 19 go build -ldflags "$ldflags" -o "$tmp/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
nice -n 19 go build -ldflags "$ldflags" -o "$tmp/kube-controller-manager" k8s.io/kubernetes/cmd/kube-controller-manager
nice -n 19 go build -ldflags "$ldflags" -o "$tmp/etcd" ./cmd/etcd
for b in "${bins[@]}"; do mv -f "$tmp/$b" "$dir/$b"; done
stamp > "$dir/.stamp"
echo "$dir"
