# One entry point. `make demo` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.dalv-installed

.PHONY: setup demo test test-fast lint sync site bench gpu-check clean

setup: $(STAMP)

# Re-runs only when pyproject.toml changes; a second `make setup` is a no-op.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[all]"
	$(PY) -m pip install -q --no-deps auto-lirpa==0.3
	$(PY) -m ipykernel install --user --name dalv --display-name "Python (dalv)" >/dev/null
	touch $(STAMP)

# The demo's report goes to runs/ (not committed), so the clone stays clean; the
# committed reports/demo is rendered by `python -m dalv reproduce --preset demo`.
demo: setup
	$(PY) -m dalv reproduce --preset demo --runs runs/demo --out runs/demo/report

test: setup lint
	$(PY) -m pytest -q --durations=10 tests

# ruff lint and format check; the notebooks' paired .py sources are linted too.
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Rewrite each notebook from its paired .py source (keeps the notebook's cell ids).
sync: setup
	$(VENV)/bin/jupytext --update --to ipynb notebooks/[0-9]*.py

# Execute every chapter at its teaching setting into docs/site/ (minutes).
site: setup
	$(PY) docs/build_site.py

test-fast: setup
	$(PY) -m pytest -q -x tests

bench: setup
	$(PY) benchmarks/bench_cycle.py

# The prepared device check (<= 8 min on one GPU): CPU and CUDA side by side, written to
# reports/benchmarks/gpu.{txt,csv}. Without a GPU it runs the CPU half and says so.
gpu-check: setup
	$(PY) benchmarks/gpu_check.py

clean:
	rm -rf $(VENV) runs .pytest_cache
