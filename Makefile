# concord's developer commands. `make test` is the one CI runs.

GO        ?= go
BIN       ?= bin
GOBIN     := $(shell $(GO) env GOPATH)/bin
BUF       := $(GOBIN)/buf
FUZZTIME  ?= 30s
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X github.com/concord-dev/concord/internal/cli.Version=$(VERSION)

.PHONY: all build run test test-short test-raft lint gen check-generated tools fuzz robustness robustness-limit bench bench-kv bench-locks bench-ids clean

all: lint test

## build: the concord binary in ./bin
build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/concord ./cmd/concord

## run: a single embedded member, data in ./concord-data
run:
	$(GO) run ./cmd/concord server

## test: every test of every module, with the race detector (what CI runs)
test: test-raft
	$(GO) test -race -timeout 25m ./...
	cd client && $(GO) test -race ./...
	cd api && $(GO) test -race ./...
	cd bench && $(GO) test ./...

# Upstream tests that fail on unpatched hashicorp/raft v1.8.0 too, left out:
# - TestRaft_ProtocolVersion_Upgrade_2_3 is flaky upstream (failed 5 of 15
#   runs of the unpatched module here, 2026-11-26; 6 of 15 on the patched
#   copy): a follower on protocol 2 sometimes misses the new configuration
#   within the test's 5 s.
# - TestFileSS_BadPerm expects a directory without permissions to be
#   refused, which root is not: it fails whenever the suite runs as root.
RAFT_FLAKY := TestRaft_ProtocolVersion_Upgrade_2_3
RAFT_SKIP  := -skip '^($(RAFT_FLAKY)$(if $(filter 0,$(shell id -u)),|TestFileSS_BadPerm,))$$'

## test-raft: hashicorp/raft's own suite, on concord's patched copy (third_party/raft)
test-raft:
	cd third_party/raft && $(GO) test -timeout 15m $(RAFT_SKIP) .

## test-short: the same without the multi-process and fault-injection suites
test-short:
	$(GO) test -race -short ./...
	cd client && $(GO) test -race -short ./...
	cd api && $(GO) test -race -short ./...

## lint: formatting and vet in every module
lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$unformatted" ]; then echo "gofmt:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	cd client && $(GO) vet ./...
	cd api && $(GO) vet ./...
	cd third_party/raft && $(GO) vet .
	if [ -f bench/go.mod ]; then cd bench && $(GO) vet ./...; fi

## tools: the local code generators (buf and its plugins, from the Go module proxy)
tools:
	@test -x $(BUF) || $(GO) install github.com/bufbuild/buf/cmd/buf@v1.75.0
	@test -x $(GOBIN)/protoc-gen-go || $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
	@test -x $(GOBIN)/protoc-gen-connect-go || $(GO) install connectrpc.com/connect/cmd/protoc-gen-connect-go@v1.21.1
	@test -x $(GOBIN)/protoc-gen-go-vtproto || $(GO) install github.com/planetscale/vtprotobuf/cmd/protoc-gen-go-vtproto@v0.6.0

## gen: regenerate the protobuf and Connect code
gen: tools
	PATH=$(GOBIN):$$PATH $(BUF) lint
	PATH=$(GOBIN):$$PATH $(BUF) generate

## check-generated: fail if the committed generated code is stale
check-generated: gen
	@git diff --exit-code -- api internal/gen || (echo "generated code is stale: run make gen and commit"; exit 1)

## fuzz: run every fuzz target for FUZZTIME each
fuzz:
	$(GO) test ./internal/fsm -run '^$$' -fuzz FuzzApplyCommand -fuzztime $(FUZZTIME)
	$(GO) test ./internal/fsm -run '^$$' -fuzz FuzzRestore -fuzztime $(FUZZTIME)
	$(GO) test ./internal/server -run '^$$' -fuzz FuzzValidateTxn -fuzztime $(FUZZTIME)
	$(GO) test ./internal/server -run '^$$' -fuzz FuzzValidatePut -fuzztime $(FUZZTIME)
	$(GO) test ./internal/server -run '^$$' -fuzz FuzzAcquireCheckAgreesWithStateMachine -fuzztime $(FUZZTIME)
	$(GO) test ./internal/raftlog -run '^$$' -fuzz FuzzDecodeRecord -fuzztime $(FUZZTIME)
	$(GO) test ./internal/raftlog -run '^$$' -fuzz FuzzOpenNewestSegment -fuzztime $(FUZZTIME)
	cd third_party/raft && $(GO) test . -run '^$$' -fuzz FuzzBinaryAppendRequest -fuzztime $(FUZZTIME)
	cd third_party/raft && $(GO) test . -run '^$$' -fuzz FuzzBinaryAppendResponse -fuzztime $(FUZZTIME)
	cd api && $(GO) test ./vtcodec -run '^$$' -fuzz FuzzUnmarshalAgreesWithProto -fuzztime $(FUZZTIME)
	cd api && $(GO) test ./batchwire -run '^$$' -fuzz FuzzReader -fuzztime $(FUZZTIME)
	$(GO) test ./internal/peer -run '^$$' -fuzz FuzzHandshake -fuzztime $(FUZZTIME)

## robustness: the long fault-injection campaign (see docs/robustness.md)
robustness:
	CONCORD_ROBUSTNESS_LONG=1 $(GO) test ./tests/robustness -run TestLongCampaign -timeout 4h -v

## robustness-limit: the lock table held to a small --max-locks under faults, seeds 1-10, 2 minutes each
robustness-limit:
	CONCORD_ROBUSTNESS_LIMIT_SEEDS=1,2,3,4,5,6,7,8,9,10 CONCORD_ROBUSTNESS_DURATION=2m $(GO) test ./tests/robustness -run TestLockLimitCampaign -timeout 2h -v

## bench: concord side by side with its peers, all three suites (see docs/benchmarks.md)
bench: bench-kv bench-locks bench-ids

## bench-kv: key-value puts and linearizable gets against etcd
bench-kv:
	cd bench && $(GO) run ./cmd/kvbench

## bench-locks: mutex cycles and hot-key handoffs against etcd and redsync on Redis
bench-locks:
	cd bench && $(GO) run ./cmd/lockbench

## bench-ids: snowflake, segments and NextIDs against sonyflake, bwmarrin, uuid and Redis INCR
bench-ids:
	cd bench && $(GO) run ./cmd/idbench

clean:
	rm -rf $(BIN)
