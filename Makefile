# Two commands on a fresh machine: `make reproduce` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# Set-up: pip takes torch (the CPU build from this machine's wheel directory on machines without an NVIDIA
# driver; uv does not look there), then uv installs the rest: it downloads in parallel and compiles the bytecode
# on every core (pip then uv: 99 s; pip alone: 171 s, on this 2-core machine with a cold cache). Machines with
# an NVIDIA driver let pip resolve the CUDA build from the `torch>=2.4` range.
TORCH_CPU_SPEC ?= torch==2.13.0
HAS_NVIDIA := $(shell command -v nvidia-smi >/dev/null 2>&1 && echo yes)

.PHONY: setup reproduce test test-all clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "lisa-bench needs Python >= 3.11, found " + sys.version.split()[0]'
	$(PYTHON) -m venv $(VENV)
ifneq ($(HAS_NVIDIA),yes)
	$(PY) -m pip install -q uv $(TORCH_CPU_SPEC)
else
	$(PY) -m pip install -q uv 'torch>=2.4'
endif
	$(VENV)/bin/uv pip install --python $(PY) -q --compile-bytecode -e '.[test]'
	touch $@

reproduce: setup
	$(VENV)/bin/lisa-bench reproduce --cores all

# one pytest worker per core (pytest-xdist); a test module stays on one worker, so its fixtures run once, and
# modules start in the order tests/conftest.py gives them (the longest first), not by their number of tests
TEST_WORKERS ?= auto

PYTEST = HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=25

# every test but the `extended` variants (another test covers their code path): within 10 minutes on 2 cores
test: setup
	$(PYTEST) -m "not extended"

# every test
test-all: setup
	$(PYTEST)

clean:
	rm -rf $(VENV) build *.egg-info
