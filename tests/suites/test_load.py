import pytest

from suites.load import SuiteError, load_suite, parse_overrides

GRID = """
    name = "grid"
    seeds = [0, 1]
    [defaults]
    steps = 5
    lr = 0.002
    [[workloads]]
    name = "llama"
    size = "tiny"
    [[methods]]
    name = "full"
    [[methods]]
    name = "lora"
    label = "lora_r4"
    options = { rank = 4 }
    lr = 0.01
"""


def test_grid_expands_workloads_times_methods_times_seeds(write_suite):
    suite = load_suite(write_suite(GRID))
    assert [(r.label, r.spec.seed) for r in suite.runs] == [
        ("full", 0), ("full", 1), ("lora_r4", 0), ("lora_r4", 1)
    ]
    lora = suite.runs[2].spec
    assert lora.method_options == {"rank": 4} and lora.lr == 0.01 and lora.steps == 5
    assert suite.runs[0].spec.lr == 0.002


def test_run_ids_are_distinct_and_stable(write_suite):
    first = [r.spec.run_id for r in load_suite(write_suite(GRID)).runs]
    again = [r.spec.run_id for r in load_suite(write_suite(GRID, "copy.toml")).runs]
    assert len(set(first)) == 4
    assert first == again


def test_overrides_win_and_merge_data(write_suite):
    overrides = parse_overrides(["steps=2", "data.branching=4", "dtype=bfloat16"])
    suite = load_suite(write_suite(GRID), overrides)
    spec = suite.runs[2].spec
    assert (spec.steps, spec.dtype, spec.data, spec.lr) == (2, "bfloat16", {"branching": 4}, 0.01)


@pytest.mark.parametrize(
    "change, expected",
    [
        (('name = "full"', 'name = "sgd"'), "methods[0].name = 'sgd' is not known; accepted: full, adam8bit, lora"),
        (('size = "tiny"', 'size = "huge"'), "workloads[0].size = 'huge' is not known; accepted: tiny"),
        (('name = "llama"', 'name = "bert"'), "workloads[0].name = 'bert' is not known; accepted: llama"),
        (("steps = 5", 'steps = "five"'), "defaults.steps = 'five' must be an integer"),
        (("steps = 5", "steps = 0"), "defaults.steps = 0 is out of range; accepted: an integer >= 1"),
        (("steps = 5", "stepz = 5"), "defaults.stepz is not a known key; accepted:"),
        (("rank = 4", "rnk = 4"), "methods[1].options.rnk is not a known option; accepted: rank, alpha, dropout,"),
        (("rank = 4", 'rank = "four"'), "methods[1].options.rank = 'four' must be an integer"),
        (("rank = 4", "dropout = true"), "methods[1].options.dropout = True must be a number"),
        (("lr = 0.002", 'lr = 0.002\n    data = { corpsu = "c4" }'),
         "defaults.data.corpsu is not a known option; accepted: corpus, path, validation_files, validation_fraction,"),
        (('size = "tiny"', 'size = "tiny"\n    data = { corpsu = "c4" }'),
         "workloads[0].data.corpsu is not a known option; accepted: corpus, path,"),
        (('size = "tiny"', 'size = "tiny"\n    data = { pack = "yes" }'), "workloads[0].data.pack = 'yes' must be a boolean"),
        (('size = "tiny"', 'size = "tiny"\n    data = { corpus = "wiki" }'),
         "workloads[0].data.corpus 'wiki' is not known; accepted: markov, c4, local"),
        (('size = "tiny"', 'size = "tiny"\n    data = { corpus = "local" }'), "workloads[0].data.corpus 'local' needs data.path"),
        (('name = "llama"\n    size = "tiny"', 'name = "roberta_glue"\n    size = "tiny"'),
         "workloads[0].data.task is required: a string"),
        (('label = "lora_r4"', 'label = "lora_r4"\n    size_options = { small = { rank = 8 } }'),
         "methods[1].size_options.small is no workload size here; accepted: tiny"),
        (('size = "tiny"', ""), "workloads[0].size is missing; accepted: tiny"),
    ],
)
def test_bad_input_names_file_key_and_accepted_values(write_suite, change, expected):
    path = write_suite(GRID.replace(*change))
    with pytest.raises(SuiteError) as error:
        load_suite(path)
    message = str(error.value)
    assert message.startswith(f"{path}: ")
    assert expected in message
    assert "\n" not in message


def test_missing_methods_table_is_refused(write_suite):
    path = write_suite(GRID.split("[[methods]]")[0])
    with pytest.raises(SuiteError, match=r"\[\[methods\]\] is missing"):
        load_suite(path)


def test_bad_override_is_refused():
    with pytest.raises(SuiteError, match="--set steps = 'x' must be an integer"):
        parse_overrides(["steps=x"])


def test_method_sizes_pair_only_with_those_sizes(write_suite):
    text = GRID.replace('size = "tiny"', 'size = "tiny"\n    [[workloads]]\n    name = "llama"\n    size = "small"')
    text = text.replace('label = "lora_r4"', 'label = "lora_r4"\n    sizes = ["small"]')
    suite = load_suite(write_suite(text))
    assert [(r.label, r.spec.size) for r in suite.runs if r.spec.seed == 0] == [
        ("full", "tiny"), ("full", "small"), ("lora_r4", "small")
    ]


def test_method_sizes_must_name_a_workload_size_of_the_suite(write_suite):
    text = GRID.replace('label = "lora_r4"', 'label = "lora_r4"\n    sizes = ["60m"]')
    with pytest.raises(SuiteError, match=r"methods\[1\].sizes: '60m' is no workload size here; accepted: tiny"):
        load_suite(write_suite(text))


def test_defaults_data_merges_with_a_workloads_data_and_set_wins(write_suite):
    text = GRID.replace("lr = 0.002", 'lr = 0.002\n    data = { branching = 4, vocab = 64 }')
    text = text.replace('size = "tiny"', 'size = "tiny"\n    data = { vocab = 128 }')
    suite = load_suite(write_suite(text), parse_overrides(["data.chain_seed=7"]))
    assert suite.runs[0].spec.data == {"branching": 4, "vocab": 128, "chain_seed": 7}


def test_set_data_is_checked_against_the_workloads_options(write_suite):
    path = write_suite(GRID)
    with pytest.raises(SuiteError, match=r"--set data.corpsu is not a known option; accepted: corpus, .* \(workload llama\)"):
        load_suite(path, parse_overrides(["data.corpsu=c4"]))


def test_size_options_give_each_size_its_own_options(write_suite):
    text = GRID.replace('size = "tiny"', 'size = "tiny"\n    [[workloads]]\n    name = "llama"\n    size = "small"')
    text = text.replace("options = { rank = 4 }", "options = { rank = 4, alpha = 16 }\n    size_options = { small = { rank = 64 } }")
    suite = load_suite(write_suite(text))
    lora = {r.spec.size: r.spec.method_options for r in suite.runs if r.label == "lora_r4" and r.spec.seed == 0}
    assert lora == {"tiny": {"rank": 4, "alpha": 16}, "small": {"rank": 64, "alpha": 16}}


def test_size_options_are_checked_like_options(write_suite):
    text = GRID.replace("options = { rank = 4 }", 'options = { rank = 4 }\n    size_options = { tiny = { rank = "big" } }')
    with pytest.raises(SuiteError, match=r"methods\[1\].options.rank = 'big' must be an integer"):
        load_suite(write_suite(text))
