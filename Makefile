# Tenantgate. `make test` is the test command CI runs; `make bench` prints the benchmark table.
GO       ?= go
PKGS     ?= ./...
BENCHTIME ?= 1s

.PHONY: build test lint bench fmt
build:
	$(GO) build -o bin/tenantgate ./cmd/tenantgate

test:
	$(GO) test -count=1 -timeout 9m $(PKGS)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	staticcheck $(PKGS)

bench:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) $(PKGS)

# The rate limiter side by side with the reference service (envoyproxy/ratelimit, built at a pinned
# version by scripts/reference-ratelimit.sh) and a no-op server, in one run.
.PHONY: bench-reference
bench-reference:
	ref="$$(bash scripts/reference-ratelimit.sh)" && TG_REFERENCE_RATELIMIT="$$ref" \
	  $(GO) test ./ratelimit -run '^$$' -bench ShouldRateLimitReference -benchtime 20000x -count 3

fmt:
	gofmt -w $$(git ls-files '*.go')

# The Kubernetes and chart tests (internal/kubetest) need a test control plane and helm. kube-binaries
# builds kube-apiserver, kube-controller-manager and etcd of the version pinned in tools/kube/go.mod into
# ~/.cache/tenantgate/kube/<version>/, or reuses them; helm installs the pinned Helm with go install.
HELM_VERSION ?= v3.22.0
# What Helm's own release build stamps in: its version, and the Kubernetes version of its client-go
# (v0.37 -> 1.37) that `helm template` and `helm lint` assume; unstamped, they assume 1.20.
HELM_LDFLAGS = -X helm.sh/helm/v3/internal/version.version=$(HELM_VERSION) -X helm.sh/helm/v3/internal/version.metadata= \
	$(foreach p,pkg/lint/rules pkg/chartutil,-X helm.sh/helm/v3/$(p).k8sVersionMajor=1 -X helm.sh/helm/v3/$(p).k8sVersionMinor=37)
.PHONY: kube-binaries helm
kube-binaries:
	bash scripts/kube-binaries.sh

helm:
	@v=$$(helm version --template '{{.Version}}' 2>/dev/null || true); \
	if [ "$$v" != "$(HELM_VERSION)" ]; then GOFLAGS= nice -n 19 $(GO) install -ldflags '$(HELM_LDFLAGS)' helm.sh/helm/v3/cmd/helm@$(HELM_VERSION); fi
