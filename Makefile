# The two commands: `make demo` and `make test`. Both create .venv and install the project.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The CPU build of torch that lies on this machine's disk; a range that admits newer releases
# would pull a multi-gigabyte CUDA build.
TORCH_PIN ?= torch==2.13.0

.PHONY: demo test test-fast install lint format docs bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip 2>&1 | grep -v "is ignored" || true
	$(BIN)/python -m pip install --quiet "$(TORCH_PIN)" 2>&1 | grep -v "is ignored" || true
	$(BIN)/python -m pip install --quiet -e ".[dev,docs]" 2>&1 | grep -v "is ignored" || true
	$(BIN)/python -c "import torch, torchquad, spacetime_nets, grids"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m spacetime_nets demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q

# the everyday check while editing: everything but the tests marked slow (notebooks, docs
# build, the probe, subprocess and multi-process runs), about a minute on two cores
test-fast: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

docs: $(STAMP)
	$(BIN)/python -m mkdocs build --strict -d site

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[bench]" "$(TORCH_PIN)" 2>&1 | grep -v "is ignored" || true
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) site runs .pytest_cache build *.egg-info
