"""Every malformed suite, option or --set value stops `harness.py run` before any run, with
exit 2 and one line naming the file, the key and what is accepted."""

import re
from pathlib import Path

import pytest
import torch

from harness import main
from suites.load import load_suite
from training.preflight import PreflightError, check_setting, preflight
from workloads.hub import hub_reachable

BASE = """
[defaults]
steps = 4
batch_size = 2
seq_len = 16
device = "cpu"
[[workloads]]
name = "llama"
size = "tiny"
[[methods]]
name = "full"
"""
GLUE = BASE.replace('name = "llama"', 'name = "roberta_glue"').replace(
    'size = "tiny"', 'size = "tiny"\ndata = { task = "synthetic-classification" }')


def method(text: str) -> str:
    return BASE.replace('[[methods]]\nname = "full"\n', f"[[methods]]\n{text}\n")


CASES = {
    "not toml": ("[defaults\n", [], "not valid TOML"),
    "unknown top-level key": ("[run]\n" + BASE, [], "run is not a known key; accepted: name, description, seeds"),
    "seeds not a list": ("seeds = 3\n" + BASE, [], "seeds = 3 must be a non-empty list of integers"),
    "repeated seed": ("seeds = [0, 1, 0]\n" + BASE, [], "seeds = [0, 1, 0] repeats 0; each seed runs once"),
    "no workloads": (BASE.split("[[workloads]]")[0] + '[[methods]]\nname = "full"\n', [],
                     "[[workloads]] is missing or empty"),
    "unknown workload": (BASE.replace('name = "llama"', 'name = "gpt"'), [],
                         "workloads[0].name = 'gpt' is not known; accepted: llama, roberta_glue"),
    "unknown size": (BASE.replace('size = "tiny"', 'size = "3b"'), [], "workloads[0].size = '3b' is not known"),
    "unknown method": (method('name = "sgd"'), [], "methods[0].name = 'sgd' is not known; accepted: full,"),
    "unknown dtype": (BASE.replace('device = "cpu"', 'device = "cpu"\ndtype = "float16"'), [],
                      "defaults.dtype = 'float16' is not known; accepted: float32, bfloat16"),
    "unknown device": (BASE.replace('device = "cpu"', 'device = "tpu"'), [],
                       "defaults.device = 'tpu' is not known; accepted: auto, cpu, cuda, cuda:N"),
    "zero lr": (BASE.replace("steps = 4", "steps = 4\nlr = 0"), [], "defaults.lr = 0 is out of range; accepted: a number > 0"),
    "warm-up past the run": (BASE.replace("steps = 4", "steps = 4\nwarmup_fraction = 5"), [],
                             "defaults.warmup_fraction = 5 is out of range; accepted: a number from 0 to 1"),
    "an infinite lr": (BASE.replace("steps = 4", "steps = 4\nlr = inf"), [],
                       "defaults.lr = inf is not finite; accepted: a number"),
    "a device with an index that is no number": (BASE.replace('device = "cpu"', 'device = "cpu:banana"'), [],
                                                 "defaults.device = 'cpu:banana' is not known"),
    "ranks the batch does not divide over": (BASE.replace("steps = 4", "steps = 4\nnproc = 4"), [],
                                             "full on llama-tiny: batch_size = 2 must be a multiple of the world size"),
    "--set a negative clip": (BASE, ["--set", "grad_clip=-1"],
                              "command line: --set grad_clip = -1 is out of range; accepted: a number >= 0"),
    "checkpoints every -1 steps": (BASE, ["--set", "checkpoint_every=-1"],
                                   "--set checkpoint_every = -1 is out of range; accepted: an integer >= 0"),
    "evaluating -1 batches": (BASE, ["--set", "eval_batches=-1"],
                              "--set eval_batches = -1 is out of range; accepted: an integer >= 0"),
    "an auto device with an index": (BASE.replace('device = "cpu"', 'device = "auto:1"'), [],
                                     "defaults.device = 'auto:1' is not known; accepted: auto, cpu, cuda, cuda:N"),
    "--set data not a table": (BASE, ["--set", "data=3"], "command line: --set data = 3 must be a table"),
    "a causal sequence of one token": (BASE.replace("seq_len = 16", "seq_len = 1"), [],
                                       "full on llama-tiny: seq_len = 1: a causal LM predicts each token from those "
                                       "before it, so a sequence needs at least 2 tokens; accepted: 2 or more"),
    "no step left to time": (BASE.replace("steps = 4", "steps = 4\ntiming_warmup_steps = 4"), [],
                             "full on llama-tiny: timing_warmup_steps = 4 leaves none of the 4 steps timed"),
    "a batch above a finite split": (GLUE.replace("batch_size = 2", "batch_size = 2000"), [],
                                     "full on roberta_glue-tiny: batch_size = 2000 is larger than the 1024 training "
                                     "examples of synthetic-classification; accepted: 1 to 1024"),
    "a LoRA rank of 0": (method('name = "lora"\noptions = { rank = 0 }'), [],
                         "options.rank must be a positive integer, got 0"),
    "a negative GaLore scale": (method('name = "galore"\noptions = { scale = -1.0 }'), [],
                                "options.scale = -1.0 scales every projected update; accepted: a number above 0"),
    "a dropout of 1": (method('name = "lora"\noptions = { dropout = 1.0 }'), [],
                       "options.dropout = 1.0; accepted: a probability in [0, 1)"),
    "batch as text": (BASE.replace("batch_size = 2", 'batch_size = "2"'), [], "defaults.batch_size = '2' must be an integer"),
    "options not a table": (method('name = "lora"\noptions = 8'), [], "methods[0].options = 8 must be a table"),
    "unknown option": (method('name = "lora"\noptions = { rnak = 8 }'), [],
                       "methods[0].options.rnak is not a known option; accepted: rank, alpha"),
    "option of the wrong type": (method('name = "galore"\noptions = { scale = "high" }'), [],
                                 "methods[0].options.scale = 'high' must be a number"),
    "unknown proj_type": (method('name = "galore"\noptions = { proj_type = "diagonal" }'), [],
                          "options.proj_type 'diagonal' is not known; accepted: std, reverse_std, left, right, full"),
    "pruning ratio above 1": (method('name = "relora"\noptions = { pruning_ratio = 1.5 }'), [],
                              "options.pruning_ratio must be in [0, 1], got 1.5"),
    "sizes not in the suite": (method('name = "lora"\nsizes = ["7b"]'), [],
                               "methods[0].sizes: '7b' is no workload size here; accepted: tiny"),
    "size_options not in the suite": (method('name = "lora"\nsize_options = { 7b = { rank = 4 } }'), [],
                                      "methods[0].size_options.7b is no workload size here; accepted: tiny"),
    "label shared at one size": (BASE + '[[methods]]\nname = "lora"\nlabel = "full"\n', [],
                                 "methods[1].label 'full' is also methods[0]'s at size tiny"),
    "unknown data key": (BASE.replace('size = "tiny"', 'size = "tiny"\ndata = { corpsu = "c4" }'), [],
                         "workloads[0].data.corpsu is not a known option; accepted: corpus,"),
    "unknown corpus": (BASE.replace('size = "tiny"', 'size = "tiny"\ndata = { corpus = "wiki" }'), [],
                       "workloads[0].data.corpus 'wiki' is not known; accepted: markov, c4, local"),
    "unknown GLUE task": (GLUE.replace("synthetic-classification", "colaa"), [],
                          "workloads[0].data.task 'colaa' is not known; accepted: cola, sst2,"),
    "missing GLUE task": (GLUE.replace('data = { task = "synthetic-classification" }', ""), [],
                          "workloads[0].data.task is required: a string"),
    "--set unknown key": (BASE, ["--set", "stepz=3"], "command line: --set stepz is not a known key"),
    "--set wrong type": (BASE, ["--set", "steps=many"], "command line: --set steps = 'many' must be an integer"),
    "--set unknown data key": (BASE, ["--set", "data.corpsu=c4"], "--set data.corpsu is not a known option"),
    "--set without =": (BASE, ["--set", "steps"], "--set 'steps': expected key=value"),
    "layer-wise with clipping": (method('name = "galore8bit_layerwise"\ngrad_clip = 1.0'), [],
                                 "galore8bit_layerwise on llama-tiny: method galore8bit_layerwise: grad_clip = 1.0 "
                                 "cannot be honoured by layer-wise updates"),
    "targets that match nothing": (method('name = "low_rank"\noptions = { target_modules = ["attn"] }'), [],
                                   "low_rank on llama-tiny: options.target_modules ('attn',) matched no Linear layer"),
    "warm start past the end": (method('name = "relora"\noptions = { warm_start_steps = 10 }'), [],
                                "relora on llama-tiny: options.warm_start_steps (10) must be below steps (4)"),
    "rank above a weight's side": (method('name = "galore8bit_layerwise"\noptions = { rank = 100 }'), [],
                                   "galore8bit_layerwise on llama-tiny: options.rank = 100 exceeds the smaller side "
                                   "of a 64x64 weight it projects; accepted: 1..64"),
    "missing local data": (BASE.replace('size = "tiny"', 'size = "tiny"\ndata = { corpus = "local", path = "/no/c4" }'), [],
                           "full on llama-tiny: data.path = '/no/c4' does not exist"),
    "cuda without CUDA": (BASE.replace('device = "cpu"', 'device = "cuda"'), [],
                          "device = 'cuda' (1 runs) but this machine has no CUDA device"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_stops_before_any_run_with_one_line(case, write_suite, tmp_path, capsys):
    if case == "cuda without CUDA" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    text, extra_args, expected = CASES[case]
    path = write_suite(text)
    results = tmp_path / "r.jsonl"
    assert main(["run", str(path), "--results", str(results), *extra_args]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0], err
    assert not results.exists()


def test_every_case_gives_its_own_line():
    assert len(CASES) >= 25 and len({expected for _, _, expected in CASES.values()}) == len(CASES)


@pytest.mark.slow
@pytest.mark.parametrize("path", sorted(str(p) for p in Path("suites").glob("*.toml")))
def test_every_shipped_suite_passes_preflight(path):
    """A shipped suite that a run would refuse (as llama_7b_memory once clipped its layer-wise runs)
    fails here. Suites that read the Hub (C4, GLUE, roberta-base) are refused on a machine that
    cannot reach it, in one line naming the Hub; their methods are still checked, run by run."""
    runs = load_suite(path, {"device": "cpu"}).runs
    for planned in runs:
        check_setting(planned.spec)
    try:
        preflight(path, runs)
    except PreflightError as refused:
        assert not hub_reachable() and ("cannot be reached here" in str(refused) or "local_files_only" in str(refused)
                                        or "could not be loaded" in str(refused)), refused


@pytest.mark.parametrize("flags, expected", [
    (["--run-timeout", "0"], "argument --run-timeout: 0 is out of range; accepted: (0, inf)"),
    (["--run-timeout", "-1"], "argument --run-timeout: -1 is out of range; accepted: (0, inf)"),
])
def test_a_flag_out_of_its_range_is_refused_by_the_parser(flags, expected, write_suite, tmp_path, capsys):
    with pytest.raises(SystemExit) as refused:
        main(["run", str(write_suite(BASE)), "--results", str(tmp_path / "r.jsonl"), *flags])
    assert refused.value.code == 2 and expected in capsys.readouterr().err
    assert not (tmp_path / "r.jsonl").exists()


def test_results_that_cannot_be_written_stop_the_suite_before_any_run(write_suite, tmp_path, capsys):
    (tmp_path / "a file").write_text("")
    assert main(["run", str(write_suite(BASE)), "--results", str(tmp_path / "a file" / "r.jsonl")]) == 2
    assert capsys.readouterr().err.strip() == (f"error: {tmp_path / 'a file' / 'r.jsonl'}: {tmp_path / 'a file'} is "
                                               "a file, not a folder; no record could be written there")


def data_cases(tmp_path) -> dict:
    """Data a run would find missing only at its end (after training: no figures kept), each
    refused before any run."""
    from tests.text_fixtures import make_tokenizer_dir

    tokenizer = make_tokenizer_dir(tmp_path / "tokenizer")
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "train.txt").write_text("the cat sat\n\nthe dog ran\n")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "train.txt").write_text("the cat sat\n")
    (tmp_path / "empty" / "validation.txt").write_text("\n\n")
    (tmp_path / "glue" / "MRPC").mkdir(parents=True)
    (tmp_path / "glue" / "MRPC" / "train.tsv").write_text("Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
                                                        + "1\t1\t2\tthe cat\ta dog\n" * 4)
    text = 'data = {{ corpus = "local", path = "{path}", tokenizer = "{tokenizer}" }}'
    glue = 'data = {{ task = "mrpc", path = "{path}", tokenizer = "{tokenizer}" }}'
    return {
        "no validation file": (BASE, text.format(path=tmp_path / "text", tokenizer=tokenizer),
                               "holds no validation files (named '*validation*'"),
        "an empty validation split": (BASE, text.format(path=tmp_path / "empty", tokenizer=tokenizer),
                                      "the validation split holds no document"),
        "a tokenizer that does not load": (BASE, text.format(path=tmp_path / "text", tokenizer=tmp_path / "text"),
                                           f"data.tokenizer '{tmp_path / 'text'}' could not be loaded"),
        "no GLUE validation split": (GLUE, glue.format(path=tmp_path / "glue", tokenizer=tokenizer),
                                     "holds no mrpc validation split; looked for mrpc/validation-*.parquet"),
    }


@pytest.mark.parametrize("case", ["no validation file", "an empty validation split", "a tokenizer that does not load",
                                  "no GLUE validation split"])
def test_data_a_run_would_miss_at_its_end_is_refused_before_any_run(case, write_suite, tmp_path, capsys):
    base, data, expected = data_cases(tmp_path)[case]
    suite = re.sub(r"data = \{[^}]*\}\n?", "", base).replace('size = "tiny"', f'size = "tiny"\n{data}')
    results = tmp_path / "r.jsonl"
    assert main(["run", str(write_suite(suite)), "--results", str(results)]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: ") and expected in line
    assert not results.exists()
