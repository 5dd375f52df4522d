# make benchmark: set up if needed, run the default suite, render its report.
# make test:      set up if needed, run the tests.
PYTHON := .venv/bin/python
SUITE ?= suites/smoke.toml
SUITE_NAME = $(basename $(notdir $(SUITE)))

.PHONY: setup benchmark run report test clean

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

clean:
	rm -rf reports/out .pytest_cache
