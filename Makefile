# Sygaldry — one command runs the gateway (make run), one passes the tests (make test).
GO        ?= go
BIN       := bin
DEV_IMAGE ?= sygaldry/zephyr:dev
# go-nvml's cgo prologue wraps NVML functions its header marks deprecated;
# without this every fresh build of package gpu prints a page of warnings.
export CGO_CFLAGS ?= -O2 -g -Wno-deprecated-declarations

.PHONY: all build run test test-short test-race test-k8s fuzz-short check bench depgraph gpu-check k8s-cluster clean

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
	$(MAKE) test-race
	$(MAKE) fuzz-short
	$(MAKE) test-k8s

# The data plane's Docker-free tier (in-process agent, fake backends) under
# the race detector.
test-race:
	$(GO) test -count=1 -race -short -timeout 15m ./gateway/ ./agent/ ./link/ ./internal/fdpass/ ./kube/

# The Kubernetes backend end to end: starts the test cluster of test/k8s
# (its first build takes 5-30 minutes, later ones come from Go's cache), runs
# ./kube/ against it with SYGALDRY_K8S_E2E=1, and stops it. A cluster that
# cannot start fails this target.
test-k8s: build
	GO=$(GO) bash test/k8s/e2e.sh

# A short run of each go test -fuzz target (payload decoders, config
# parser, name rules); go test above already ran their seed corpora.
fuzz-short:
	GO=$(GO) bash scripts/fuzz-short.sh

# The Docker-free tier only (testenv.Docker skips under -short): about a
# minute, for fast feedback. CI runs make test.
test-short: build
	$(GO) test -count=1 -short ./...

# Go benchmarks, then one table of ratios against OpenSSH sshd on loopback
# (scripts/bench.sh; BENCH_SIZE_MB, BENCH_RUNS, BENCH_IDLE, ...), which it
# also appends to bench/RESULTS.md.
bench: build
	$(GO) test -run '^$$' -bench . -benchtime 3x ./gateway/... ./agent/...
	bash scripts/bench.sh

# The checks that need real GPUs, prepared here for a GPU machine with no Go,
# Docker or network: out/gpu-check/ gets the NVML test binary (cgo: it
# dlopens libnvidia-ml, and needs a glibc as new as this machine's), the
# script that runs it, and the CUDA validation scripts. Copy the directory
# over and run `bash gpu-check.sh` there.
gpu-check:
	rm -rf out/gpu-check
	mkdir -p out/gpu-check/validation
	CGO_ENABLED=1 $(GO) test -c -trimpath -o out/gpu-check/gpu.test ./gpu
	cp scripts/gpu-check.sh out/gpu-check/
	cp container/validation/validate_cuda.sh container/validation/validate_torch.py container/validation/validate_jax.py out/gpu-check/validation/
	@echo "out/gpu-check: copy it to a GPU machine and run: bash gpu-check.sh"

# A real single-node Kubernetes 1.34 on loopback for the kubernetes backend's
# tests (test/k8s/README.md): built from Go's cache after the first time,
# started, and waited for until its node is Ready; it prints KUBECONFIG=...
# `bash test/k8s/cluster.sh down` stops it.
k8s-cluster:
	bash test/k8s/cluster.sh up

depgraph:
	$(GO) run ./cmd/spack-depgraph -o pkg/zephyr/DEPENDENCY_GRAPH.md pkg/zephyr/spack.lock

clean:
	rm -rf $(BIN) run out
