# The two commands a newcomer needs: `make demo` and `make test`.
GO ?= go
export COHURON_TEST_BIN ?= $(HOME)/.cache/cohuron-test/bin
FUZZTIME ?= 5s
# Where tests and fuzzing record what they proved (see internal/reliability).
export COHURON_RELIABILITY_OUT ?= $(CURDIR)/.reliability
# make reliability: the proving-ground tests, and how long each fuzz target runs.
RELIABILITY_TESTS ?= TestCrashAtEveryPoint|TestFullCrash|TestHostileStore|TestStoreFaults|TestResourceFaults|TestHostClockFarOff|TestThresholdCoSigning|TestKeyRotationNoWindow
RELIABILITY_FUZZTIME ?= 4m

.PHONY: demo test deps unit fuzz report reliability bench verify build clean

demo: ## publish and verify the sample app on a local directory store (no cloud account)
	./scripts/demo.sh

test: deps unit fuzz report ## install what the tests need, then run them all (CI runs this)

deps: ## git, unshare, node/npm, PostgreSQL, Docker engine and docker-compose (Debian); MinIO, cosign (Go); PM2, pnpm (npm): installed once, idempotently
	./scripts/install-test-deps.sh

unit:
	rm -f $(COHURON_RELIABILITY_OUT)/cases-*.jsonl $(COHURON_RELIABILITY_OUT)/fuzz.jsonl
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 45m ./...

fuzz: ## every fuzz target, briefly
	./scripts/fuzz.sh $(FUZZTIME)

report: ## the reliability figures of this run, from what the tests recorded (.reliability/RELIABILITY.md)
	$(GO) run ./internal/reliability/cmd/report -in $(COHURON_RELIABILITY_OUT) -out $(COHURON_RELIABILITY_OUT)/RELIABILITY.md
	@grep -E '^- ' $(COHURON_RELIABILITY_OUT)/RELIABILITY.md | head -8

reliability: deps ## the proving-ground tests and a longer fuzz run, then docs/RELIABILITY.md generated from them
	rm -f $(COHURON_RELIABILITY_OUT)/cases-*.jsonl $(COHURON_RELIABILITY_OUT)/fuzz.jsonl
	$(GO) test -count=1 -timeout 60m -run '$(RELIABILITY_TESTS)' ./e2e/ ./pkg/...
	FUZZPARALLEL=1 ./scripts/fuzz.sh $(RELIABILITY_FUZZTIME)
	$(GO) run ./internal/reliability/cmd/report -in $(COHURON_RELIABILITY_OUT) -out docs/RELIABILITY.md

bench: deps ## bundle build vs git archive / tar -czf; agent vs a seed-style redeploy; the real app vs the Lambda deployer; a declarative column add vs db-import.sh; as ratios
	$(GO) test -run '^$$' -bench . -benchtime 5x ./pkg/gitbundle/
	$(GO) test -run '^$$' -bench BenchmarkAgent -benchtime 1x ./e2e/
	$(GO) test -run '^$$' -bench BenchmarkConverge -benchtime 1x ./e2e/
	$(GO) test -run '^$$' -bench BenchmarkRealApp -benchtime 1x -timeout 60m ./e2e/realapp/
	$(GO) test -run '^$$' -bench BenchmarkColumnAdd -benchtime 3x -timeout 20m ./pkg/schema/declare/

verify: ## gofmt, vet, go mod tidy, golangci-lint (depguard holds the layering)
	test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	$(GO) mod tidy -diff
	GOBIN=$(COHURON_TEST_BIN) $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v2.15.0
	$(COHURON_TEST_BIN)/golangci-lint run ./...

build:
	mkdir -p bin && $(GO) build -o bin/ ./cmd/...

clean:
	rm -rf bin .demo .reliability
