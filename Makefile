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

fmt:
	gofmt -w $$(git ls-files '*.go')
