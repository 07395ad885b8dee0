# Everything installs into .venv/ at the repo root on first use.
# CONSTRAINTS pins the CPU build of torch that CPU-only machines (and CI) have locally;
# on a GPU machine run e.g. `make demo CONSTRAINTS=` to let pip choose torch freely.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONSTRAINTS ?= constraints/cpu.txt
STAMP := $(VENV)/.installed
DATA ?= data/synthetic
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export RAY_USAGE_STATS_ENABLED := 0
export TOKENIZERS_PARALLELISM := false

.PHONY: install demo test lint bench bench-quick bench-gpu clean

$(STAMP): pyproject.toml $(wildcard constraints/*.txt)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet $(if $(CONSTRAINTS),-c $(CONSTRAINTS)) -e '.[dev,pretrained,mlflow]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	test -f $(DATA)/metatune-synthetic.json || $(BIN)/metatune data synthetic --out $(DATA)
	$(BIN)/metatune data check --dir $(DATA)
	$(BIN)/metatune run --preset smoke --data $(DATA) --name demo --storage $(CURDIR)/results

test: $(STAMP)
	$(BIN)/ruff check trainables tune_jobs tests benchmarks
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest -q --durations=15

lint: $(STAMP)
	$(BIN)/ruff check trainables tune_jobs tests benchmarks
	$(BIN)/lint-imports --no-cache

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run_all

bench-quick: $(STAMP)
	$(BIN)/python -m benchmarks.run_all --quick

bench-gpu: $(STAMP)
	$(BIN)/python -m benchmarks.run_all --only gpu

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
