# Sygaldry — one command runs the gateway (make run), one passes the tests (make test).
GO        ?= go
BIN       := bin
DEV_IMAGE ?= sygaldry/zephyr:dev

.PHONY: all build run test test-short fuzz-short check bench depgraph clean

all: build

build:
	$(GO) build -trimpath -o $(BIN)/sygaldry-gateway ./cmd/gateway
	$(GO) build -trimpath -o $(BIN)/sygctl ./cmd/sygctl
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w' -o $(BIN)/sygaldry-agent ./cmd/agent

# Starts the gateway on 127.0.0.1:2222 for project "zephyr", admitting your
# ~/.ssh/*.pub keys, with a Debian dev image built locally (no registry needed).
run: build
	DEV_IMAGE=$(DEV_IMAGE) bash scripts/dev-run.sh

check:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...

# Unit and integration tests: the real Docker engine and the real OpenSSH
# client. Needs root, a running engine, and the packages .ci/run installs.
test: check build
	$(GO) test -count=1 -timeout 45m ./...
	$(MAKE) fuzz-short

# A short run of each go test -fuzz target (payload decoders, config
# parser, name rules); go test above already ran their seed corpora.
fuzz-short:
	GO=$(GO) bash scripts/fuzz-short.sh

test-short: build
	$(GO) test -count=1 -short ./...

bench: build
	$(GO) test -run '^$$' -bench . -benchtime 3x ./gateway/... ./agent/...
	bash scripts/bench-vs-sshd.sh

depgraph:
	$(GO) run ./cmd/spack-depgraph -o pkg/zephyr/DEPENDENCY_GRAPH.md pkg/zephyr/spack.lock

clean:
	rm -rf $(BIN) run
