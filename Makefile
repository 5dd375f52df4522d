# make benchmark: set up if needed, run the default suite, render its report (reports/out/<suite>/index.html).
# make test:      set up if needed, run the tests.
# make check:     the CI memory gate: the ci_memory suite and the traced 7B estimates against
#                 their committed baselines (results/baselines/); exit 1 when any figure rose.
# make bench-optim: GaLore optimizer step time and memory, ours vs galore-torch (BENCH_SIZE=small).
# make gpu-check:  every GPU-CHECKS.md figure on one CUDA device in 8 minutes (DRY=1: the plan only).
PYTHON := .venv/bin/python
SUITE ?= suites/smoke.toml
SUITE_NAME = $(basename $(notdir $(SUITE)))

.PHONY: setup benchmark run report test check check-update bench-optim gpu-check clean

# The environment is rebuilt only when the pinned requirements change. pip would compile every
# module to bytecode on one core (a minute here); compileall does it on every core. A few files
# are for later Pythons (torch's py312_intrinsics) and do not compile: as under pip, not a failure.
.venv/ready: requirements.txt
	python3 -m venv .venv
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --no-compile -r requirements.txt
	$(PYTHON) -m compileall -q -j 0 .venv/lib > /dev/null || true
	touch $@

setup: .venv/ready

# The report renders even when a run failed (it shows the failure); the exit status is the run's.
benchmark: setup
	status=0; $(PYTHON) harness.py run $(SUITE) || status=$$?; \
	$(PYTHON) harness.py report results/$(SUITE_NAME).jsonl && exit $$status

run: setup
	$(PYTHON) harness.py run $(SUITE)

report: setup
	$(PYTHON) harness.py report results/$(SUITE_NAME).jsonl

# Three test processes on the two cores (many tests wait on processes of their own), each torch
# on one thread: tiny models train faster so than with threads fighting for the cores.
TEST_WORKERS ?= 3
test: setup
	OMP_NUM_THREADS=1 $(PYTHON) -m pytest -q -n $(TEST_WORKERS)

# The gate's two halves run side by side (their figures are bytes, not times), from scratch:
# stale results from an earlier checkout must never be compared.
CHECK_RUNS = results/ci_memory.jsonl
CHECK_TRACED = results/ci_traced_7b.jsonl
CHECK_SETS = --baseline results/baselines/ci_memory.json
TRACED_SETS = --baseline results/baselines/ci_traced_7b.json

# A run that does not finish ok still leaves its record: the comparison names it (its status row).
# One torch thread: the traced half has the other core, and the tracker's bytes do not depend on it.
$(CHECK_RUNS): setup
	rm -f $@
	OMP_NUM_THREADS=1 $(PYTHON) harness.py run suites/ci_memory.toml --results $@ --no-progress || test -s $@

# Every registered method's 7B traced estimate (BF16, batch 1, seq 256); one FSDP2 rank of four
# for 8-bit GaLore; and the tiny Qwen2 and Gemma 2 stand-ins under bf16-mixed for the methods that
# place themselves by the architecture.
# One process (--then): torch and the rest imported once, not three times.
$(CHECK_TRACED): setup
	rm -f $@
	$(PYTHON) harness.py estimate --size 7b --seq 256 --batch 1 --dtype bfloat16 --method all \
		--records $@ --suite ci_traced_7b \
		--then estimate --size 7b --seq 256 --batch 1 --dtype bfloat16 --method galore8bit \
		--nproc 4 --sharding fsdp2 --records $@ --suite ci_traced_7b \
		--then estimate --sizes tiny-qwen2,tiny-gemma2 --seq 256 --batch 1 --precision bf16-mixed \
		--method full --method lora --method galore --method adam_mini --method muon --method badam \
		--records $@ --suite ci_traced_7b > /dev/null

.PHONY: $(CHECK_RUNS) $(CHECK_TRACED)

check: setup
	$(MAKE) --no-print-directory -j2 $(CHECK_RUNS) $(CHECK_TRACED)
	$(PYTHON) harness.py check $(CHECK_RUNS) $(CHECK_SETS) --then check $(CHECK_TRACED) $(TRACED_SETS)

# After a deliberate change: rerun both halves and rewrite the baselines, saying what changed.
check-update: setup
	$(MAKE) --no-print-directory -j2 $(CHECK_RUNS) $(CHECK_TRACED)
	$(PYTHON) harness.py check $(CHECK_RUNS) $(CHECK_SETS) --update --then check $(CHECK_TRACED) $(TRACED_SETS) --update

BENCH_SIZE ?= small
bench-optim: setup
	$(PYTHON) -m benchmarks.galore_optim --size $(BENCH_SIZE)

# make gpu-check: every figure of ../shared/GPU-CHECKS.md on one CUDA device in at most 8 minutes,
# each part time-boxed; records, reports and summary.md in reports/out/gpu_check/.
# make gpu-check DRY=1: the plan only (every cell with its time box and predicted time), any host.
gpu-check: setup
	$(PYTHON) -m benchmarks.gpu_check $(if $(DRY),--plan-only,)

clean:
	rm -rf reports/out .pytest_cache

# The paper's suites, on a GPU host. Hub data by default; local copies from the command line:
#   make paper-llama DATA=/data/c4/en TOKENIZER=/models/t5-base
#   make paper-glue GLUE=/data/glue MODEL=/models/roberta-base
LLAMA_SETS = $(if $(DATA),--set data.corpus=local --set data.path=$(DATA)) $(if $(TOKENIZER),--set data.tokenizer=$(TOKENIZER))
GLUE_SETS = $(if $(GLUE),--set data.path=$(GLUE)) $(if $(MODEL),--set data.checkpoint=$(MODEL))

.PHONY: paper-llama paper-llama-7b paper-glue

paper-llama: setup
	$(PYTHON) harness.py run suites/llama_c4.toml $(LLAMA_SETS)
	$(PYTHON) harness.py report results/llama_c4.jsonl

paper-llama-7b: setup
	$(PYTHON) harness.py run suites/llama_7b_memory.toml
	$(PYTHON) harness.py report results/llama_7b_memory.jsonl

paper-glue: setup
	$(PYTHON) harness.py run suites/roberta_glue.toml $(GLUE_SETS)
	$(PYTHON) harness.py report results/roberta_glue.jsonl
