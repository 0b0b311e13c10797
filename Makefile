# OmniQ build. `make` builds the commands into bin/ and the bundled plugins
# into bin/plugins/, where omniq-runner looks by default.

GO      ?= go
BIN     := bin
# Plugins that work without configuration go where omniq-runner looks;
# those that need a config file (exec, http) go to bin/plugins-available/,
# to be copied into a plugins directory with their config (see their READMEs).
PLUGINS      := echo faults
CONFIGURABLE := exec http
# Static binaries: no cgo threads (whose glibc stacks would count against a
# plugin's memory limit), and they run on any Linux.
export CGO_ENABLED := 0

.PHONY: all build plugins run test check cross bench bench-embedded bench-peers bench-inprocess fuzz proto proto-go proto-python clean chaos chaos-bin chaos-ci

all: build plugins

build:
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ ./cmd/...

plugins:
	@mkdir -p $(BIN)/plugins $(BIN)/plugins-available
	@for p in $(PLUGINS); do echo "$(GO) build -o $(BIN)/plugins/$$p ./plugins/$$p"; $(GO) build -o $(BIN)/plugins/$$p ./plugins/$$p || exit 1; done
	@for p in $(CONFIGURABLE); do echo "$(GO) build -o $(BIN)/plugins-available/$$p ./plugins/$$p"; $(GO) build -o $(BIN)/plugins-available/$$p ./plugins/$$p || exit 1; done

# Runs OmniQ on this machine: embedded NATS on 127.0.0.1:4222, data in
# ./omniq-data, the bundled plugins.
run: all
	./$(BIN)/omniq-runner

# gofmt, go vet, then every test with the race detector.
check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# -timeout 15m: the runner package takes about 4 minutes on a quiet
# 2-core machine and passed 10 (go test's default) on one loaded by other
# work; a hung test still ends the run.
test: check
	CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 15m ./...

# What must build on macOS and Windows: omniq-submit and the Go plugin SDK
# (omniq-runner needs Linux; built for another system it says so and exits
# 2, which is checked to compile too). Nothing is written: -o /dev/null.
# go vet there too, which compiles the tests: those that run a runner or a
# plugin process carry a unix build tag, the others must build everywhere.
CROSS_OS := darwin windows
CROSS_VET := ./cmd/omniq-submit ./internal/submitcmd/... ./internal/natsflags/... ./plugins-sdk/...
cross:
	@for os in $(CROSS_OS); do for pkg in ./cmd/omniq-submit ./cmd/omniq-runner; do \
		echo "GOOS=$$os $(GO) build $$pkg"; GOOS=$$os $(GO) build -o /dev/null $$pkg || exit 1; done; \
		echo "GOOS=$$os $(GO) build ./plugins-sdk/..."; GOOS=$$os $(GO) build ./plugins-sdk/... || exit 1; \
		echo "GOOS=$$os $(GO) vet $(CROSS_VET)"; GOOS=$$os $(GO) vet $(CROSS_VET) || exit 1; done

# The fault suite (docs/reliability.md): real nats-server and omniq-runner
# processes, killed, stopped and crashed under load. `make chaos` runs every
# scenario at full size (a few minutes); `make chaos-ci` a small version
# (under two minutes). CHAOSFLAGS adds omniq-chaos flags (see its -h).
chaos: chaos-bin
	./$(BIN)/omniq-chaos $(CHAOSFLAGS)

chaos-ci: chaos-bin
	./$(BIN)/omniq-chaos --scenarios runner-kill,nats-kill,plugin-crash --tasks 300 --window 10s --runner-kills 2 --server-kills 1 --down 2s --work 100ms --settle 150s $(CHAOSFLAGS)

chaos-bin: all $(BIN)/nats-server
	@mkdir -p $(BIN)/chaos
	$(GO) build -o $(BIN)/chaos/chaoswork ./internal/chaos/chaoswork

# nats-server for the fault suite and the benchmark, built from the module
# cache at the version go.mod requires: nothing is downloaded.
$(BIN)/nats-server: go.mod
	@mkdir -p $(BIN)
	$(GO) build -o $@ github.com/nats-io/nats-server/v2

# Runs each fuzz target for FUZZTIME (go test -fuzz takes one target of one
# package at a time). Their seed corpora in testdata/fuzz/ also run as
# plain tests with `make test`.
FUZZTIME ?= 10s
FUZZ := ./models:FuzzTaskJSON ./models:FuzzAppendJSON ./models:FuzzDecodeTaskJSON ./models:FuzzTaskErrorJSON ./models:FuzzJSONSizeAndTruncate ./models:FuzzDuration \
	./jetstream:FuzzParseTaskMessage ./runner:FuzzBackoff ./internal/runnercmd:FuzzConfigFile
fuzz:
	@for t in $(FUZZ); do pkg=$${t%%:*}; name=$${t##*:}; echo "fuzz $$name ($$pkg) for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; done

# Measures OmniQ as real processes (cmd/omniq-bench): a nats-server with a
# file store (built from go.mod's version), omniq-runner as its own process
# with its plugins, and the plumbing's ceilings on the same server; the
# README's figures come from it.
# Pass flags in BENCH_FLAGS, e.g. BENCH_FLAGS='--json' or
# BENCH_FLAGS='--sections backlog,latency --tasks 5000'.
bench: all $(BIN)/nats-server
	./$(BIN)/omniq-bench --nats-server $(BIN)/nats-server $(BENCH_FLAGS)

# The same, with omniq-runner's embedded nats-server, as make run runs it.
bench-embedded: all
	./$(BIN)/omniq-bench --embedded $(BENCH_FLAGS)

# omniq-bench-peers (bench/peers, its own Go module so OmniQ's does not
# depend on asynq, River, go-redis or pgx): River and asynq measured by
# `omniq-bench --peers river,asynq` in the same run as OmniQ. Installs
# nothing: the peers need Debian's redis-server and postgresql (15) packages,
# e.g. `make bench-peers bench BENCH_FLAGS='--peers river,asynq'`.
bench-peers:
	@mkdir -p $(BIN)
	cd bench/peers && $(GO) build -o $(CURDIR)/$(BIN)/ ./cmd/omniq-bench-peers

# The in-process benchmarks of bench/ (server, client and runner in one Go
# process): for profiling pieces, not figures to quote.
bench-inprocess:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 20000x -count 1 ./bench/...

# Regenerates the plugin protocol's code from plugins-sdk/proto: the Go code
# (needs protoc, protoc-gen-go and protoc-gen-go-grpc on PATH) and the Python
# SDK's stubs (needs protoc and grpc_python_plugin: Debian's
# protobuf-compiler and protobuf-compiler-grpc). Both are committed.
proto: proto-go proto-python

proto-go:
	$(GO) generate ./plugins-sdk

proto-python:
	sh plugins-sdk/python/generate.sh

clean:
	rm -rf $(BIN)
