# shoal: make deps | build | test | race | fuzz | bench | demo | lint
#
# Every target that needs system packages depends on deps, so `make demo`
# and `make test` work on a fresh Debian 12 machine run as root.

SHELL := /bin/bash
export PATH := $(PATH):/usr/local/go/bin
GO ?= go
BIN := bin/shoal
HUGEPAGES ?= 1024
DEB_PACKAGES := libdpdk-dev dpdk pkg-config gcc make iproute2 nftables ethtool curl wrk iputils-ping
GO_SOURCES := $(shell find . -name '*.go' -o -name '*.c' -o -name '*.h' | grep -v '^./bin/')

.PHONY: deps build test race fuzz bench demo lint clean

# deps installs what is missing (Debian packages, as root) and reserves
# hugepages; without them DPDK falls back to --no-huge at about half speed,
# which works, so a failed reservation is a warning, not an error.
deps:
	@./scripts/deps.sh $(HUGEPAGES) $(DEB_PACKAGES)

build: deps $(BIN)

$(BIN): $(GO_SOURCES) go.mod go.sum
	$(GO) build -o $(BIN) ./cmd/shoal

# test runs vet and every test with the race detector. The lab tests need
# root, hugepages or --no-huge, and namespaces; elsewhere they skip with a
# reason.
test: build
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 25m ./...

race: test

fuzz: deps
	$(GO) test -run XXX -fuzz FuzzClassifiersAgree -fuzztime 120s ./dataplane/

bench: build
	$(BIN) bench dataplane

demo: build
	$(BIN) demo

lint: deps
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

clean:
	rm -rf bin
