# One entry point. `make demo` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.dalv-installed

PIP    := $(PY) -m pip --disable-pip-version-check --no-input
# JupyterLab as root (a container, Colab-like VMs) needs --allow-root; a user does not.
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: setup demo test test-fast lint sync site bench gpu-check lab clean

setup: $(STAMP)

# Re-runs only when pyproject.toml changes; a second `make setup` is a no-op.
# torch first (tools/install_torch.py): CPU-only wheels on a machine without an NVIDIA
# GPU where such a wheel can be had (DALV_TORCH=default skips that). The notebooks' kernel
# is this environment's own `python3` (registered in the venv, never user-wide, so a
# second clone cannot re-point it), and kernels started by this environment's Jupyter
# encrypt their local TCP traffic (CurveZMQ), so ipykernel does not warn at each start.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PY) tools/install_torch.py
	$(PIP) install -q -e ".[all]"
	$(PIP) install -q --no-deps auto-lirpa==0.3
	$(PY) -m ipykernel install --sys-prefix --name python3 \
		--display-name "Python 3 (ipykernel)" >/dev/null 2>&1
	$(PY) -c "import zmq, sys; sys.exit(not zmq.has('curve'))" && \
		mkdir -p $(VENV)/etc/jupyter && \
		cp tools/jupyter_config.json $(VENV)/etc/jupyter/jupyter_config.json || true
	touch $(STAMP)

# JupyterLab from this environment, so the notebooks run this clone's dalv.
lab: setup
	$(VENV)/bin/jupyter lab $(ALLOW_ROOT)

# The demo's report goes to runs/ (not committed), so the clone stays clean; the
# committed reports/demo is rendered by `python -m dalv reproduce --preset demo`.
demo: setup
	$(PY) -m dalv reproduce --preset demo --runs runs/demo --out runs/demo/report

# One pytest worker per core (pytest-xdist), each test file on one worker so that its
# module fixtures (the soundness sweep's cases, the MILPs of test_branch_lps) are built
# once: on 2 cores about 6 min instead of 9.
test: setup lint
	$(PY) -m pytest -q -n auto --dist loadfile --durations=10 tests

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
