# Shortcuts for the scripts; the scripts are the source of truth.
.PHONY: test bench proto proto-check serve

test:        ## everything CI runs
	scripts/test.sh

bench:       ## hot-path benchmarks, rewrites docs/performance.md
	scripts/bench.sh

proto:       ## regenerate protobuf code
	scripts/genproto.sh

proto-check: ## fail if the committed generated code is stale
	scripts/genproto.sh --check

serve:       ## the identity runtime on its embedded default
	go run ./cmd/provider-host serve
