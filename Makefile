# One bootstrap for every target: a fresh machine needs only python3 and make.
# The venv is rebuilt only when pyproject.toml changes (the stamp file tracks it).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export RAY_USAGE_STATS_ENABLED := 0
export PYTHONUNBUFFERED := 1

.PHONY: install demo test check lint bench gpu-check browser clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,lint,tracking]'
	$(BIN)/python -c "import torch, torchvision, ray; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'ray', ray.__version__)"
	touch $(STAMP)

## The main job on the embedded default: local Ray, local files, generated data.
demo: $(STAMP)
	$(BIN)/genart demo

## The whole test suite (what CI runs).
test: $(STAMP) browser
	$(BIN)/pytest -q -rs tests

## Debian's Chromium for the playground browser test (skipped with a reason if it can't install).
browser:
	@if ! command -v chromium >/dev/null 2>&1; then \
	  echo "installing Debian's chromium for the browser test"; \
	  (apt-get install -y -q chromium || (apt-get update -q && apt-get install -y -q chromium)) \
	    >/dev/null 2>&1 || echo "chromium could not be installed: the browser test will be skipped"; \
	fi

## Lint + the fast unit tests (no Ray), under a minute.
check: $(STAMP) lint
	$(BIN)/pytest -q -m "not ray and not slow" tests

lint: $(STAMP)
	$(BIN)/ruff check genart tests jobs benchmarks
	$(BIN)/ruff format --check genart tests jobs benchmarks

## Benchmarks: each prints a table and writes JSON under bench-results/; then docs/benchmarks.md
## is regenerated from those and the committed results (also after a failed benchmark).
bench: $(STAMP)
	$(BIN)/python -m benchmarks.run --out bench-results; status=$$?; \
	$(BIN)/python -m benchmarks.report --results bench-results benchmarks/results/*/ \
	  --out docs/benchmarks.md && exit $$status

## The GPU check for a lent GPU (docs/benchmarks.md): tests/gpu and the quick benchmarks in at
## most 8 minutes, JSON in benchmarks/results/<gpu>-<date>/ (RESULTS=DIR: DIR/<gpu>-<date>/).
## DEVICE=cpu: the tiny dry run (under bench-results/) that the test suite runs.
DEVICE ?= cuda
gpu-check: $(STAMP)
	$(BIN)/python -m benchmarks.gpu_check --device $(DEVICE) $(if $(RESULTS),--results $(RESULTS))

clean:
	rm -rf $(VENV) runs out bench-results
