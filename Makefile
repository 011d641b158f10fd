# The two commands of the README:  `make run`  (default campaign end to end)  and  `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= all
# torch is pinned; on a CUDA machine set TORCH_INDEX, e.g. https://download.pytorch.org/whl/cu126
TORCH_INDEX ?=

.PHONY: run test venv lint dry-run plan cluster-up cluster-down install-profile bench clean

# auto-lirpa and pynever go in without their declared dependencies (see requirements/*.txt):
# pip cannot say --no-deps per requirement, hence the second command.
$(BIN)/vfbench-installed: pyproject.toml requirements/lirpa.txt requirements/pynever.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/pip install -q -e '.[dev,marabou,vnnlib2,pynever]'
	$(BIN)/pip install -q --no-deps -r requirements/lirpa.txt -r requirements/pynever.txt
	touch $@

venv: $(BIN)/vfbench-installed

run: venv
	$(BIN)/snakemake --profile profiles/local --cores $(CORES)
	@echo; echo "Tables of the default campaign:"; ls -1 results/default/tables/*
	@echo; cat results/default/tables/summary.md

test: venv
	$(BIN)/python -m pytest -q tests

lint: venv
	$(BIN)/ruff check src scripts tests benchmarks
	$(BIN)/python -m pytest -q tests/unit/config/test_snakemake_lint.py

dry-run: venv
	$(BIN)/snakemake -n --quiet

plan: venv
	$(BIN)/vfbench plan config/config.yaml

cluster-up:
	bash scripts/cluster/up.sh

cluster-down:
	bash scripts/cluster/down.sh

install-profile:
	bash scripts/cluster/install_profile.sh

bench: venv
	$(BIN)/python benchmarks/verify_crown.py

clean:
	rm -rf results/default .snakemake
