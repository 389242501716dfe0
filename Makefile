# Shortcuts for the scripts; the scripts are the source of truth.
.PHONY: test bench load proto proto-check serve

test:        ## everything CI runs
	scripts/test.sh

bench:       ## hot-path benchmarks, rewrites docs/performance.md
	scripts/bench.sh

load:        ## load generator at 1k/10k/100k sessions and on 1-2 replicas, rewrites docs/performance.md
	scripts/loadtest.sh

proto:       ## regenerate protobuf code
	scripts/genproto.sh

proto-check: ## fail if the committed generated code is stale
	scripts/genproto.sh --check

serve:       ## the identity runtime on its embedded default
	go run ./cmd/provider-host serve
