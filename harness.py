"""The one entry point: run a suite, report its results, list what exists, show the environment.

    python harness.py run suites/smoke.toml
    python harness.py run suites/llama_c4.toml --launcher slurm --partition gpu --gpus-per-job 1 --time-limit 240
    python harness.py report results/smoke.jsonl
    python harness.py check results/ci_memory.jsonl --baseline results/baselines/ci_memory.json
    python harness.py list
    python harness.py env
    python harness.py estimate --paper-table
    python harness.py estimate --size 7b --method galore8bit_layerwise --batch 1 --seq 2048 --dtype bfloat16
    python harness.py estimate --paper-7b
    python harness.py estimate --successors-7b
    python harness.py estimate --grid --sizes 60m,130m,350m,1b,7b --method all --seq 256 --records results/grid.jsonl
    python harness.py estimate --fit 24GB --size 7b --seq 256 --method all --checkpointing both
    python harness.py check A.jsonl --baseline A.json --then check B.jsonl --baseline B.json

--then runs several commands in one process, one after another: torch and the rest are imported once.
"""

import argparse
import gc
import json
import math
import os
import sys
from dataclasses import asdict
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent
RESULTS_DIR = REPO_ROOT / "results"


def command_run(args) -> int:
    from core.statuses import Status
    from launchers import LAUNCHERS, refuse_flags_of_others
    from launchers.base import RunSettings, SuiteStopped
    from launchers.suite_runner import run_suite
    from results.records import RecordNotWritten, ResultsLocked
    from suites.load import load_suite, parse_overrides
    from training.preflight import preflight

    launcher = LAUNCHERS[args.launcher]
    refuse_flags_of_others(launcher, args)
    suite = load_suite(args.suite, parse_overrides(args.set))
    results_path = Path(args.results or RESULTS_DIR / f"{Path(args.suite).stem}.jsonl")
    if args.dry_run:
        for planned in suite.runs:
            print(planned.spec.run_id, planned.label, json.dumps(planned.spec.to_json(), sort_keys=True))
        return 0
    settings = RunSettings(progress=not args.no_progress, timeout_s=args.run_timeout, retry_timeouts=args.retry_timeouts)
    session = launcher.start(launcher.options_from(suite.launcher_options.get(launcher.name), args), results_path,
                             settings)
    preflight(args.suite, suite.runs)
    session.check(suite.runs)
    try:
        records = run_suite(session, suite, results_path, settings)
    except ResultsLocked as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except RecordNotWritten as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except SuiteStopped as stopped:
        print(stopped, file=sys.stderr)
        return 128 + stopped.signal_number
    failed = [r for r in records if r.status != Status.OK]
    print(f"{len(records) - len(failed)} ok, {len(failed)} not ok; records in {results_path}")
    return 1 if failed else 0


def command_report(args) -> int:
    from reports.render import render_report

    report_path = render_report([Path(path) for path in args.results], args.out, args.baseline)
    print(f"{report_path}\n{report_path.parent / 'index.html'}\n{report_path.parent / 'summary.csv'}")
    return 0


def command_check(args) -> int:
    from results import baseline as gate
    from results.records import read_records

    results_path, baseline_path = Path(args.results), Path(args.baseline)
    if not results_path.is_file():
        raise gate.BaselineError(f"{results_path}: no such results file")
    records = read_records(results_path)
    if not records:
        raise gate.BaselineError(f"{results_path}: holds no run records")
    previous = gate.read_baseline(baseline_path) if baseline_path.exists() or not args.update else None
    if args.update:
        updated = gate.baseline_from(records, previous)
        updated.tolerance = args.tolerance if args.tolerance is not None else updated.tolerance
        updated.loss_tolerance = args.loss_tolerance if args.loss_tolerance is not None else updated.loss_tolerance
        changed = []
        if previous is not None:
            changed = [row for row in gate.compare(records, previous, 0.0, 0.0) if row.verdict != "same"]
            print(gate.format_comparisons(changed) if changed else "no figure changed")
        gate.write_baseline(baseline_path, updated)
        print(f"{baseline_path}: written from {results_path}: {len(updated.runs)} runs, {len(changed)} changes")
        return 0
    tolerance = previous.tolerance if args.tolerance is None else args.tolerance
    loss_tolerance = previous.loss_tolerance if args.loss_tolerance is None else args.loss_tolerance
    if not gate.runs_in_common(records, previous):
        raise gate.BaselineError(f"{results_path}: no runs in common with {baseline_path}")
    rows = gate.compare(records, previous, tolerance, loss_tolerance)
    print(f"{results_path} against {baseline_path}: a byte figure fails above +{tolerance:.1%}, "
          f"the final loss above +{loss_tolerance:.1%}")
    for note in gate.version_notes(records, previous):
        print(f"note: versions differ, so bytes may move: {note}")
    print(gate.format_comparisons(rows))
    counts = {verdict: sum(row.verdict == verdict for row in rows) for verdict in gate.VERDICTS}
    print(", ".join(f"{count} {verdict}" for verdict, count in counts.items()))
    return 1 if any(row.verdict in gate.FAILING_VERDICTS for row in rows) else 0


def command_list(args) -> int:
    from core.options import describe_options
    from launchers import LAUNCHERS
    from methods import METHODS, REGISTERED
    from methods.licenses import method_licenses
    from suites.load import SuiteError, load_suite
    from workloads import WORKLOADS, parameter_count
    from workloads.sizes import HF_CONFIG_WORKLOADS, model_sizes, size_default

    print("methods:")
    for name, method in METHODS.items():
        options = describe_options(method.options)
        print(f"  {name:24} {method.summary}  [{method_licenses(REGISTERED[name].packages)}]"
              + (f"  [options: {options}]" if options else ""))
    print("workloads:")
    for name, workload in WORKLOADS.items():
        print(f"  {name:24} sizes: {', '.join(model_sizes(name))}  [data: {describe_options(workload.data_options)}]")
        for size in model_sizes(name) if name in HF_CONFIG_WORKLOADS else ():
            count = parameter_count(name, size)
            print(f"    {size:22} {count / 1e9:6.3f}B parameters ({count:,})  "
                  f"GaLore rank {size_default(name, size, 'galore_rank')}")
    print("launchers:")
    for name, launcher in LAUNCHERS.items():
        options = describe_options(launcher.options)
        print(f"  {name:24} {launcher.summary}" + (f"  [launcher.{name}: {options}]" if options else ""))
    print("suites:")
    for path in sorted((REPO_ROOT / "suites").glob("*.toml")):
        try:
            suite = load_suite(path)
            print(f"  {path.relative_to(REPO_ROOT)!s:24} {len(suite.runs)} runs  {suite.description}")
        except SuiteError as error:
            print(f"  {path.relative_to(REPO_ROOT)!s:24} invalid: {error}")
    return 0


def command_env(args) -> int:
    from core.spec import resolve_device
    from launchers.packages import recorded_packages
    from meters.environment import environment

    print(json.dumps(asdict(environment(resolve_device(args.device), recorded_packages())), indent=2))
    return 0


def command_estimate(args) -> int:
    from core.targets import load
    from estimates import MODES, EstimateRequest

    mode = MODES[args.mode]
    if not mode.takes_specs:
        print(load(mode.target)())
        return 0
    request = EstimateRequest(records=Path(args.records) if args.records else None, suite=args.suite, jobs=args.jobs,
                              values=args.mode_values, full_trace=args.full_trace)
    return load(mode.target)(estimate_specs(args, mode), request)


def estimate_specs(args, mode) -> list:
    """The estimate's specs (checkpointing x sizes x methods), each built and preflighted as a
    suite's run is, before the first (slow) trace."""
    from core.spec import RunSpec
    from estimates.fake_ranks import refuse_untraceable
    from methods import METHODS, preload
    from suites.load import parse_assignment
    from training.preflight import check_run

    methods = list(METHODS) if args.method == ["all"] else args.method or ["full"]
    for method in methods:
        if method not in METHODS:
            raise ValueError(f"--method {method!r} is not registered; accepted: all, {', '.join(METHODS)}")
    sizes = args.sizes.split(",") if args.sizes else list(mode.default_sizes) or [args.size]
    options = dict(parse_assignment(assignment, "--option") for assignment in args.option)
    data = dict(parse_assignment(assignment, "--data") for assignment in args.data)
    checkpointing = {"no": [False], "yes": [True], "both": [False, True]}[args.checkpointing]
    precisions = args.precision.split(",")
    specs = [
        RunSpec(
            workload=args.workload, size=size, method=method, method_options=options, data=data,
            batch_size=args.batch * args.nproc, seq_len=args.seq, grad_accum=args.grad_accum,
            dtype=args.dtype or ("float32" if precision else "bfloat16"), precision=precision, device="cpu",
            steps=args.steps, activation_checkpointing=checkpointed, nproc=args.nproc,
            sharding=args.sharding,
        )
        for precision in precisions
        for checkpointed in checkpointing
        for size in sizes
        for method in methods
    ]
    for spec in {spec.run_id: spec for spec in specs}.values():
        refuse_untraceable(spec)
        check_run(spec)
    preload(methods)  # here, not in each process forked from here (searches, probes)
    # Everything imported stays alive: frozen, the collections that follow (BAdam's gc.collect at
    # every block switch, in every probe and search process forked from here) walk only the
    # traces' objects, not the imported modules' (as preflight does for a suite's runs). The
    # checks' meta models are collected first, or frozen they would never be.
    gc.collect()
    gc.freeze()
    return specs


class _ModeValue(argparse.Action):
    """An estimate mode's flag that takes a value (repeatable): the mode, and one more value."""

    def __call__(self, parser, namespace, value, option_string=None):
        namespace.mode = self.const
        namespace.mode_values = [*namespace.mode_values, value]


def build_parser() -> argparse.ArgumentParser:
    from core.options import at_least, number_in
    from core.precision import DTYPE_ALIASES, PRECISION_ALIASES
    from core.spec import DTYPES, SHARDINGS
    from estimates import MODES
    from launchers import LAUNCHERS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run a suite's grid, appending one record per run")
    run.add_argument("suite", help="suite file, e.g. suites/smoke.toml")
    run.add_argument("--results", help="results file (default results/<suite file stem>.jsonl)")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a run-spec field for every run, e.g. steps=10 or data.path=/data/c4")
    run.add_argument("--dry-run", action="store_true", help="print the run specs and their ids, run nothing")
    run.add_argument("--no-progress", action="store_true", help="no per-step progress bars")
    run.add_argument("--run-timeout", type=number_in(0, math.inf, low_included=False), metavar="SECONDS",
                     help="stop a run after this long (above 0) and record it as timeout")
    run.add_argument("--retry-timeouts", action="store_true", help="run again the runs recorded as timeout")
    run.add_argument("--launcher", choices=list(LAUNCHERS), default="local",
                     help="how the runs are started: " + "; ".join(f"{name}: {launcher.summary}"
                                                                   for name, launcher in LAUNCHERS.items()))
    for launcher in LAUNCHERS.values():
        launcher.add_flags(run)
    run.set_defaults(handler=command_run)

    report = commands.add_parser("report", help="render results files to index.html, report.md and summary.csv")
    report.add_argument("results", nargs="+",
                        help="results files, e.g. results/smoke.jsonl (runs and traced estimates may be mixed)")
    report.add_argument("--out", help="output folder (default reports/out/<first results file stem>)")
    report.add_argument("--baseline", default="full", help="the method label deltas are against (default full)")
    report.set_defaults(handler=command_report)

    check = commands.add_parser(
        "check", help="compare a results file's memory figures with a baseline: exit 1 when any rose"
    )
    check.add_argument("results", help="results file, e.g. results/ci_memory.jsonl")
    check.add_argument("--baseline", required=True, help="baseline file, e.g. results/baselines/ci_memory.json")
    check.add_argument("--tolerance", type=number_in(0, 1), metavar="FRACTION",
                       help="relative rise of a byte figure that fails, in [0, 1) (default: the baseline's, 0.01 when "
                       "new)")
    check.add_argument("--loss-tolerance", type=number_in(0, 1), metavar="FRACTION",
                       help="relative rise of a final loss that fails, in [0, 1) (default: the baseline's, 0.02 when "
                       "new)")
    check.add_argument("--update", action="store_true", help="rewrite the baseline from the results, saying what changed")
    check.set_defaults(handler=command_check)

    listing = commands.add_parser("list", help="list methods, workloads and suites")
    listing.set_defaults(handler=command_list)

    env = commands.add_parser("env", help="print the environment record runs carry")
    env.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    env.set_defaults(handler=command_env)

    estimate = commands.add_parser(
        "estimate", help="memory estimates: the paper's analytic table, traced steps at any size, the paper's 7B figures"
    )
    which = estimate.add_mutually_exclusive_group()
    for mode in (mode for mode in MODES.values() if not mode.default):
        if mode.metavar:
            which.add_argument(f"--{mode.name}", metavar=mode.metavar, action=_ModeValue, const=mode.name, help=mode.help)
        else:
            which.add_argument(f"--{mode.name}", dest="mode", action="store_const", const=mode.name, help=mode.help)
    estimate.set_defaults(mode=next(name for name, mode in MODES.items() if mode.default), mode_values=[])
    estimate.add_argument("--workload", default="llama", help="registered workload (default llama)")
    estimate.add_argument("--size", default="7b", help="model size: one of workloads/sizes.toml, a shipped config "
                          "(workloads/configs: llama3.1-8b, qwen2.5-7b, ...) or the path of a config.json (default 7b)")
    estimate.add_argument("--method", action="append", default=[],
                          help="registered method, repeatable, or all (default full)")
    estimate.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                          help="a method option, e.g. rank=1024")
    estimate.add_argument("--data", action="append", default=[], metavar="KEY=VALUE",
                          help="a workload data option, e.g. task=sst2 for roberta_glue")
    estimate.add_argument("--batch", type=int, default=1,
                          help="sequences per micro-batch, per rank with --nproc (default 1; at least 1)")
    estimate.add_argument("--seq", type=int, default=2048, help="tokens per sequence (default 2048; at least 1)")
    estimate.add_argument("--grad-accum", type=int, default=1, help="micro-batches per step (default 1; at least 1)")
    estimate.add_argument("--dtype", choices=[*DTYPES, *DTYPE_ALIASES],
                          help="parameter dtype, naming its pure precision (default bfloat16 without --precision)")
    estimate.add_argument("--precision", default="",
                          help="precision policy, or several comma-separated: bf16-true (the paper's pure BF16), "
                          "bf16-mixed (FP32 weights and optimizer state, BF16 autocast), 32-true, 16-mixed (FP16 "
                          f"autocast and a GradScaler); {', '.join(PRECISION_ALIASES)} name their pure policy "
                          "(default: --dtype's)")
    estimate.add_argument("--nproc", type=at_least(1), default=1,
                          help="ranks the model is sharded over, with --sharding fsdp2: figures are per rank (default 1)")
    estimate.add_argument("--sharding", choices=list(SHARDINGS), default="none",
                          help="how several ranks hold the model: fsdp2 (traced per rank) or none (default)")
    estimate.add_argument("--steps", type=int, default=2,
                          help="steps traced (default 2: the first creates the optimizer state)")
    estimate.add_argument("--sizes", help="comma-separated model sizes, instead of --size (--grid's default: "
                          + ",".join(MODES["grid"].default_sizes) + ")")
    estimate.add_argument("--checkpointing", nargs="?", const="yes", default="no", choices=["no", "yes", "both"],
                          help="trace with activation checkpointing (yes), without (no, default) or both")
    estimate.add_argument("--jobs", type=at_least(1), default=os.cpu_count(),
                          help="methods searched or traced at once by --fit and --grid, one process each (default: "
                          "the CPU count)")
    estimate.add_argument("--full-trace", action="store_true",
                          help="trace the whole model (the traced estimate and --fit); by default a decoder is traced "
                          "at 2, 3 and 4 blocks and every figure extrapolated, where they are exactly affine")
    estimate.add_argument("--records", help="append one estimate record per method to this results file")
    estimate.add_argument("--suite", default="estimate", help="the suite name the records carry (default estimate)")
    estimate.set_defaults(handler=command_estimate)
    return parser


THEN = "--then"
"""Between two commands: both run in this one process, one after the other (imports paid once)."""


def main(argv=None) -> int:
    """Every command's flags are checked before the first runs; each runs even when one before it
    failed, and the exit status is the highest."""
    argv = sys.argv[1:] if argv is None else list(argv)
    commands = [[]]
    for word in argv:
        if word == THEN:
            commands.append([])
        else:
            commands[-1].append(word)
    if len(commands) > 1 and not all(commands):
        print(f"error: {THEN} stands between two commands, e.g. check A --baseline B {THEN} check C --baseline D",
              file=sys.stderr)
        return 2
    return max([_handled(args) for args in [build_parser().parse_args(command) for command in commands]])


def _handled(args) -> int:
    try:
        return args.handler(args)
    # Bad input of every kind (suites.load's SuiteError, preflight's, options', the gate's) is a
    # ValueError: caught as one, so that no command imports the suite loader (and with it torch,
    # transformers and every workload) only to name its error.
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
