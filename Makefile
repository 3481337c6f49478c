# Entry points on a fresh machine with only python3 and make:
#   make run       create .venv if missing, install, run the default scenario
#   make test      same set-up, then the whole test suite (the notebooks run on a real kernel)
#   make notebook  same set-up, then Jupyter Lab on notebooks/
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SCENARIO ?= scenarios/demo.toml
OUT    ?= runs/demo

.PHONY: run test bench install notebook clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,notebooks]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/cascade run $(SCENARIO) --out $(OUT)

test: $(STAMP)
	$(BIN)/python -m pytest -q

notebook: $(STAMP)
	$(BIN)/jupyter lab --notebook-dir=notebooks

# make bench BENCH_ARGS="--quick"  (see benchmarks/README.md; writes benchmarks/results/)
bench: $(STAMP)
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

clean:
	rm -rf $(VENV) runs .pytest_cache
