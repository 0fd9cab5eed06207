# The two commands a newcomer needs: `make demo` and `make test`.
GO ?= go
export COHURON_TEST_BIN ?= $(HOME)/.cache/cohuron-test/bin
FUZZTIME ?= 5s

.PHONY: demo test deps unit fuzz bench verify build clean

demo: ## publish and verify the sample app on a local directory store (no cloud account)
	./scripts/demo.sh

test: deps unit fuzz ## install what the tests need, then run them all (CI runs this)

deps: ## git, unshare, node/npm, PostgreSQL, Docker engine and docker-compose (Debian); MinIO, cosign (Go); PM2, pnpm (npm): installed once, idempotently
	./scripts/install-test-deps.sh

unit:
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 45m ./...

fuzz: ## every fuzz target, briefly
	./scripts/fuzz.sh $(FUZZTIME)

bench: deps ## bundle build vs git archive / tar -czf; agent vs a seed-style redeploy; as ratios
	$(GO) test -run '^$$' -bench . -benchtime 5x ./pkg/gitbundle/
	$(GO) test -run '^$$' -bench BenchmarkAgent -benchtime 1x ./e2e/
	$(GO) test -run '^$$' -bench BenchmarkConverge -benchtime 1x ./e2e/

verify: ## gofmt, vet, go mod tidy, golangci-lint (depguard holds the layering)
	test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	$(GO) mod tidy -diff
	GOBIN=$(COHURON_TEST_BIN) $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v2.15.0
	$(COHURON_TEST_BIN)/golangci-lint run ./...

build:
	mkdir -p bin && $(GO) build -o bin/ ./cmd/...

clean:
	rm -rf bin .demo
