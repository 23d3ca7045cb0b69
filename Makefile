# shoal: make deps | build | test | race | fuzz | bench | demo | lint | docs
#
# Every target that needs system packages depends on deps, so `make demo`
# and `make test` work on a fresh Debian 12 machine run as root.

SHELL := /bin/bash
export PATH := $(PATH):/usr/local/go/bin
GO ?= go
BIN := bin/shoal
HUGEPAGES ?= 1024
DEB_PACKAGES := libdpdk-dev dpdk pkg-config gcc make iproute2 nftables ethtool curl wrk haproxy nginx-light iputils-ping \
	chromium fonts-dejavu-core docker.io docker-compose debootstrap
GO_SOURCES := $(shell find . -name '*.go' -o -name '*.c' -o -name '*.h' | grep -v '^./bin/')

.PHONY: deps build test race fuzz bench bench-http demo lint docs image clean

# deps installs what is missing (Debian packages, as root) and reserves
# hugepages; without them DPDK falls back to --no-huge at about half speed,
# which works, so a failed reservation is a warning, not an error.
deps:
	@./scripts/deps.sh $(HUGEPAGES) $(DEB_PACKAGES)

build: deps $(BIN)

$(BIN): $(GO_SOURCES) go.mod go.sum
	$(GO) build -o $(BIN) ./cmd/shoal

# CGO_PKGS are the only packages that may link DPDK: the binding, the data
# plane, the node wiring, the binary, the data-plane benchmark, the lab's
# end-to-end tests and the container test (which run the real binary).
# Every other package builds and passes its tests with CGO_ENABLED=0.
CGO_PKGS := cgo|dataplane|node|cmd/shoal|bench/dpbench|lab/e2e|docker
PURE_PKGS = $(shell $(GO) list ./... | grep -Ev '/shoal/($(CGO_PKGS))$$')

# test runs vet, the pure packages' tests without cgo, and every test with
# the race detector. The lab tests need root, hugepages or --no-huge, and
# namespaces; elsewhere they skip with a reason. Tests keep their artefacts
# (the status page's screenshots) under bin/test-artifacts/_artifacts/.
ARTIFACTS := $(CURDIR)/bin/test-artifacts
test: build
	$(GO) vet ./...
	CGO_ENABLED=0 $(GO) vet $(PURE_PKGS)
	@bad=$$($(GO) list -deps $(PURE_PKGS) | grep -E '/shoal/(cgo|dataplane|node)$$' || true); \
	if [ -n "$$bad" ]; then echo "pure packages depend on $$bad (it links DPDK)"; exit 1; fi
	CGO_ENABLED=0 $(GO) test -count=1 -short $(PURE_PKGS)
	mkdir -p $(ARTIFACTS)
	$(GO) test -race -count=1 -timeout 25m -artifacts -outputdir $(ARTIFACTS) ./...

race: test

fuzz: deps
	$(GO) test -run XXX -fuzz FuzzClassifiersAgree -fuzztime 120s ./dataplane/
	$(GO) test -run XXX -fuzz FuzzHTTPHead -fuzztime 30s ./handoff/peek/
	$(GO) test -run XXX -fuzz FuzzClientHello -fuzztime 30s ./handoff/peek/
	$(GO) test -run XXX -fuzz FuzzOpen -fuzztime 30s ./handoff/wire/

bench: build
	$(BIN) bench dataplane

# bench-http compares shoal with a central HAProxy and the plain kernel
# path in the lab (about 90 s); it writes bench/results/http-DATE.{json,png}.
bench-http: build
	$(BIN) bench http

demo: build
	$(BIN) demo

lint: deps
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# image builds shoal:latest for Docker (docker/README.md): a debootstrapped
# Debian 12 base with the DPDK runtime libraries, built once (about 1.5
# minutes) and cached, then the binary on top (seconds). It needs a running
# Docker engine (dockerd).
image: build
	./scripts/image.sh shoal:latest

# docs regenerates the CLI reference from the command definitions: the man
# page and docs/cli.md (TestDocsUpToDate fails when they are stale).
# Install: cp docs/shoal.1 /usr/local/share/man/man1/; shoal completion bash
# > /etc/bash_completion.d/shoal.
docs: $(BIN)
	$(BIN) docs man > docs/shoal.1
	$(BIN) docs markdown > docs/cli.md

clean:
	rm -rf bin
