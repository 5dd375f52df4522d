# make benchmark: set up if needed, run the default suite, render its report.
# make test:      set up if needed, run the tests.
# make bench-optim: GaLore optimizer step time and memory, ours vs galore-torch (BENCH_SIZE=small).
PYTHON := .venv/bin/python
SUITE ?= suites/smoke.toml
SUITE_NAME = $(basename $(notdir $(SUITE)))

.PHONY: setup benchmark run report test bench-optim clean

# The environment is rebuilt only when the pinned requirements change.
.venv/ready: requirements.txt
	python3 -m venv .venv
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

setup: .venv/ready

benchmark: run report

run: setup
	$(PYTHON) harness.py run $(SUITE)

report: setup
	$(PYTHON) harness.py report results/$(SUITE_NAME).jsonl

test: setup
	$(PYTHON) -m pytest -q

BENCH_SIZE ?= small
bench-optim: setup
	$(PYTHON) -m methods.galore_bench --size $(BENCH_SIZE)

clean:
	rm -rf reports/out .pytest_cache
