# veil — see README.md. Every target installs what it needs (idempotently).
GO        ?= go
PKGS      ?= ./...
FUZZTIME  ?= 3s
LONGFUZZ  ?= 60s

.PHONY: all build test test-deps vet fuzz fuzz-quick soak lint run bench peers clean

all: build

build:
	$(GO) build -o bin/veil ./cmd/veil

test-deps:
	@bash scripts/test-deps.sh

vet:
	$(GO) vet $(PKGS)

test: test-deps vet
	$(GO) test -race -count=1 -timeout 15m $(PKGS)
	@$(MAKE) --no-print-directory fuzz-quick FUZZTIME=$(FUZZTIME)

# Each fuzz target for a bounded time; `make fuzz` runs them longer.
fuzz-quick:
	@bash scripts/fuzz.sh $(FUZZTIME)

fuzz:
	@bash scripts/fuzz.sh $(LONGFUZZ)

# The reliability suite at its larger size: 300,000 entries and 30 SIGKILLs in the leak scan,
# plus the fault tests (make test runs 100,000 entries and 10 SIGKILLs).
soak: test-deps
	$(GO) test -race -count=1 -v -timeout 60m ./internal/soak/ -args -soak
	$(GO) test -race -count=1 -v -timeout 30m -run TestSeveralHosts ./cmd/veil/ -args -soak

lint: vet
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1)

# The pipeline on its embedded defaults (embedded broker, local key file, Badger store), with
# sample traffic; it keeps running until Ctrl-C. Data goes to ./veil-data.
run: build
	./bin/veil demo

# End to end: 1,000,000 entries (about 4 minutes; BENCH_ENTRIES=200000 is quicker) preloaded on
# a broker in its own process, pass-through vs pipeline, reveal latency, seal µs; the latency
# sweep (open-loop producer at 1k/10k/30k entries/s and up until p99 > 100 ms, each entry timed
# from produce to visible in redacted.* read_committed; ./bin/bench -latency-only runs it alone);
# then the seal micro-benchmark. Results also go to bench/results/latest.json.
BENCH_ENTRIES ?= 1000000
bench:
	$(GO) build -o bin/bench ./bench
	./bin/bench -entries $(BENCH_ENTRIES)
	$(GO) test -run '^$$' -bench 'Seal' -benchmem ./crypto/envelope/

# veil's Transform beside a naive encoding/json round trip and a Benthos v4.60.0 Bloblang mapping
# of the same rules with encrypt_aes("gcm"), on the same sample entries, interleaved (min/median
# ns/entry, allocs/entry, ratios). bench/peers is its own module: veil does not depend on Benthos.
# The first run downloads and builds Benthos (about a minute); later runs use the Go build cache.
# -mod=mod: a dependency veil adds later is picked up through the replace without a manual tidy.
PEERS_ENTRIES ?= 20000
PEERS_ROUNDS  ?= 7
peers:
	cd bench/peers && $(GO) run -mod=mod . -entries $(PEERS_ENTRIES) -rounds $(PEERS_ROUNDS)

clean:
	rm -rf bin
