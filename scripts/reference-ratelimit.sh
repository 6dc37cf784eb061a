#!/usr/bin/env bash
# Builds the reference rate-limit service, envoyproxy/ratelimit (src/service_cmd), at the version
# pinned below into $TENANTGATE_REFERENCE_CACHE/ratelimit-<version> (default
# ${XDG_CACHE_HOME:-$HOME/.cache}/tenantgate/reference/), or reuses the binary already there, and
# prints its path. BenchmarkShouldRateLimitReference (ratelimit/reference_bench_test.go) runs it:
#
#	TG_REFERENCE_RATELIMIT="$(bash scripts/reference-ratelimit.sh)" \
#	  go test ./ratelimit -run '^$' -bench ShouldRateLimitReference -benchtime 20000x
#
# The version is a pseudo-version because upstream tags rarely; pinning it keeps the comparison
# against the same code from run to run. It is built in its own module (a copy of the downloaded
# source, with its own go.mod and go.sum), never in ours, so our go.mod is untouched.
set -euo pipefail
module=github.com/envoyproxy/ratelimit
version=v1.4.1-0.20260122083618-3fb702589d36
cache="${TENANTGATE_REFERENCE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tenantgate/reference}"
bin="$cache/ratelimit-$version"

fail() {
  echo "reference-ratelimit: $*" >&2
  exit 1
}

if [ -x "$bin" ]; then
  echo "$bin"
  exit 0
fi
command -v go >/dev/null || fail "go is not on PATH"

mkdir -p "$cache"
tmp="$(mktemp -d "$cache/.build.XXXXXX")"
trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT
# GOTOOLCHAIN=local: build with the installed Go (its go.mod asks for 1.25.6, which newer Go accepts)
# rather than downloading another toolchain. Run outside our module so that our go.mod plays no part.
export GOTOOLCHAIN=local GOFLAGS="-mod=mod -trimpath -buildvcs=false" CGO_ENABLED=0
cd "$tmp"
if ! info="$(go mod download -json "$module@$version")"; then
  fail "go mod download $module@$version failed: $info"
fi
src="$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' <<<"$info")"
[ -n "$src" ] && [ -d "$src" ] || fail "go mod download gave no source directory for $module@$version: $info"

echo "reference-ratelimit: building $module@$version into $bin" >&2
# The module cache is read-only, and a build may need to write go.sum lines: build in a copy.
cp -R "$src" "$tmp/src"
chmod -R u+w "$tmp/src"
(cd "$tmp/src" && nice -n 19 go build -o "$tmp/ratelimit" ./src/service_cmd) ||
  fail "go build of $module@$version (./src/service_cmd) failed"
mv -f "$tmp/ratelimit" "$bin"
echo "$bin"
