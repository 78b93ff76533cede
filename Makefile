# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_ROOT ?= outputs/demo

.PHONY: install test test-fast demo bench bench-deps bench-gpu clean system-deps

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip

# torch first: `torch==2.13.0` is the CPU wheel on these machines; the project range admits it.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install torch==2.13.0
	$(BIN)/pip install -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# System packages the tests use for real (ffmpeg, SLURM, munge). Best effort: needs root and apt.
system-deps:
	@bash .ci/system-deps.sh

test: install system-deps
	bash .ci/pytest.sh

test-fast: install
	$(BIN)/python -m pytest -m "not slow and not slurm and not browser" -q

demo: install
	$(BIN)/python -m mck demo root=$(DEMO_ROOT)

bench: install
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

# Baselines the benchmarks compare against (never dependencies of mck): aniposelib for bench_refine.py.
# --no-deps: its opencv-contrib-python would overwrite the venv's cv2; it needs numba and toml besides what mck has.
bench-deps: install
	$(BIN)/pip install --no-deps 'aniposelib==0.8.*'
	$(BIN)/pip install numba toml

# Everything a session's cost depends on, one table, < 5 min on one GPU (on a CPU: add ARGS=--smoke).
bench-gpu: install
	$(BIN)/python -m benchmarks.gpu $(ARGS)

clean:
	rm -rf $(VENV) outputs/runs outputs/sweeps
