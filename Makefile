# Two commands for a newcomer: `make demo` and `make test`. Both bootstrap .venv and, on Linux
# without a Vulkan/Metal/D3D12 adapter, install Mesa lavapipe (a CPU Vulkan driver).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Mesa prints errors at every adapter creation without a private XDG_RUNTIME_DIR.
export XDG_RUNTIME_DIR := $(or $(XDG_RUNTIME_DIR),/tmp/hal-xdg-$(shell id -u))

.PHONY: demo test test-default lint bench adapter clean fuzz

demo: adapter
	$(PY) -m hal demo

# Every configuration present on this machine (tests/configurations.py: wgpu-native on the
# default adapter with the whole suite; GL, the Metal and D3D12 adapter profiles and Dawn with
# a subset; the collectives under mpiexec), then the style gates. `make test CONFIGS="gl metal"`
# runs only those; `make test-default` only the whole suite on the default adapter.
CONFIGS ?=
test: adapter
	$(PY) tests/configurations.py $(CONFIGS)
	$(VENV)/bin/ruff check hal tests benchmarks
	$(VENV)/bin/mypy

test-default: adapter
	$(PY) -m pytest

# Long differential fuzzing of the HAL against hal.reference and of the optimised lowering
# against in-order execution (random seeds), and a longer concurrency soak (`make test` runs a
# bounded, seeded share of both).
FUZZ_EXAMPLES ?= 5000
SOAK_SECONDS ?= 90
# The collectives under mpiexec with more ranks than make test's 2 and 3.
MPI_RANKS ?= 2,3,4,5
fuzz: adapter
	HAL_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) HAL_FUZZ_RANDOM=1 HAL_SOAK_SECONDS=$(SOAK_SECONDS) \
		$(PY) -m pytest -s -o timeout=0 \
		tests/test_fuzz.py tests/test_lowering_property.py tests/test_soak.py
	HAL_MPI_RANKS=$(MPI_RANKS) $(PY) -m pytest -o timeout=0 tests/test_collectives.py -k mpiexec

lint: $(STAMP)
	$(VENV)/bin/ruff check hal tests benchmarks
	$(VENV)/bin/ruff format --check hal tests benchmarks
	$(VENV)/bin/mypy

bench: adapter
	$(PY) benchmarks/dispatch_overhead.py --json benchmarks/results/dispatch_overhead.json

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

adapter: $(STAMP)
	@mkdir -p -m 700 $(XDG_RUNTIME_DIR)
	@if [ "$$(uname -s)" = Linux ] && ! $(PY) -m hal devices --check; then \
		echo "no Vulkan adapter: installing Mesa lavapipe (mesa-vulkan-drivers)"; \
		SUDO=; [ "$$(id -u)" -eq 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq mesa-vulkan-drivers; \
	fi
	@$(PY) -m hal devices --brief

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
