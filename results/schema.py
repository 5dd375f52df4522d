"""The run record: one JSON object per run, defined here once for every writer and reader.

Bytes are bytes, times are seconds, rates are per second; names carry the unit where it is
not obvious. `schema_version` says which layout a record was written in: records of older
layouts are brought up to this one when read (`upgrade`), so every reader sees one shape.
"""

from dataclasses import asdict, dataclass, field, fields

from core.spec import RunSpec
from core.statuses import RecordKind, Status

SCHEMA_VERSION = 3
"""1: records before the schema was typed (no schema_version; GLUE metrics loose in metrics,
data.model for a checkpoint). 2: typed. 3: this layout, with `setting`, the typed fields the
spec's option tables resolve to."""
MEMORY_CATEGORIES = ("trainable_weights", "frozen_weights", "gradients", "optimizer_state", "activations", "other")
"""The keys of a tracker breakdown (meters/tracker.py says what falls in each)."""
TASK_METRIC_NAMES = ("accuracy", "f1", "matthews_correlation", "pearson", "spearman", "mismatched_accuracy")
"""The names a fine-tuning task's metrics may have (workloads/glue_metrics.py: each task has one or two)."""


class RecordError(ValueError):
    """A record that does not fit the schema; the message names the field."""


def _of(cls, *parts):
    """An instance of `cls` from typed parts whose fields are all fields of `cls`: each part's
    class fixes what it holds, so no figure can go missing on the way without an error."""
    return cls(**{f.name: getattr(part, f.name) for part in parts for f in fields(part)})


@dataclass
class Throughput:
    """Speed over the timed steps, what meters/timing.py measures (None: no step was timed)."""

    timed_steps: int | None = None
    """Steps timed: all but the timing warm-up steps."""
    tokens_per_s: float | None = None
    """Non-padding tokens per second over the timed steps, over all ranks."""
    step_time_mean_s: float | None = None
    """Mean seconds per optimizer step over the timed steps."""
    step_time_p50_s: float | None = None
    """Median seconds per optimizer step over the timed steps."""
    step_time_p90_s: float | None = None
    """90th percentile of seconds per optimizer step over the timed steps."""


@dataclass
class Evaluation:
    """Held-out figures after training, what a workload's evaluate() returns (None: the workload
    has no such figure, or evaluation was skipped)."""

    eval_loss: float | None = None
    """Held-out loss after training (pre-training: token-weighted over eval_tokens)."""
    perplexity: float | None = None
    """exp(eval_loss), for language modelling."""
    eval_tokens: int | None = None
    """Predicted tokens the held-out loss averages over, for language modelling."""
    task_score: float | None = None
    """A fine-tuning task's score: its GLUE metric, or the mean of its two (MRPC, QQP, STS-B)."""
    task_metrics: dict[str, float] = field(default_factory=dict)
    """A fine-tuning task's metrics by name (TASK_METRIC_NAMES)."""


@dataclass
class Metrics(Evaluation, Throughput):
    """What a run reached and how fast; every figure None where the run or workload has none."""

    loss_curve: list[float] = field(default_factory=list)
    """Training loss of every optimizer step (mean over its micro-batches and ranks), in nats per
    token or the task's loss unit."""
    final_loss: float | None = None
    """The last step's training loss."""
    loss_floor: float | None = None
    """The lowest loss achievable on the data, where known (the generated corpus's entropy rate)."""
    final_loss_above_floor: float | None = None
    """final_loss minus loss_floor."""
    uniform_loss: float | None = None
    """The loss of predicting every token or class with equal probability (ln of the count):
    where a model that learnt nothing sits; None for regression."""

    @classmethod
    def of(cls, losses: list[float], floor: float | None, uniform: float | None, throughput: Throughput,
           evaluation: Evaluation) -> "Metrics":
        metrics = _of(cls, throughput, evaluation)
        metrics.loss_curve, metrics.final_loss, metrics.loss_floor, metrics.uniform_loss = losses, losses[-1], floor, uniform
        metrics.final_loss_above_floor = None if floor is None else losses[-1] - floor
        return metrics


@dataclass
class TrackerFigures:
    """What the live-tensor tracker measured over the tracked (timing warm-up) steps
    (meters/tracker.py): exact on every device; None without tracked steps."""

    tracker_peak_bytes: int | None = None
    """Peak of live tensor bytes over the tracked steps."""
    tracker_peak_step: int | None = None
    """The tracked step (0-based) in which that peak fell."""
    tracker_at_peak_bytes: dict[str, int] | None = None
    """Live bytes by MEMORY_CATEGORIES at the peak."""
    tracker_at_step_end_bytes: dict[str, int] | None = None
    """Live bytes by MEMORY_CATEGORIES at the end of the last tracked step (the steady state)."""
    tracker_steady_peak_bytes: int | None = None
    """Highest peak of the tracked steps that were not refresh steps (None: all were, or the
    record predates the field)."""
    tracker_refresh_peak_bytes: int | None = None
    """Highest peak of the tracked refresh steps, where a method recomputes part of its state
    (GaLore's projectors from an SVD every update_proj_gap steps, step 0 included); None for
    methods without such steps, and for records that predate the field."""


@dataclass
class StateFigures:
    """Weights and optimizer state at the end of training (meters/memory.py)."""

    trainable_weight_bytes: int | None = None
    """Parameters with requires_grad, at the end of training."""
    frozen_weight_bytes: int | None = None
    """Parameters without requires_grad (LoRA's base weights), at the end of training."""
    optimizer_state_bytes: int | None = None
    """Everything reachable from optimizer.state (moments, projectors, 8-bit scales and maps),
    each storage once, at the end of training."""


@dataclass
class DeviceFigures:
    """The process's and the device's own counters (meters/memory.py); None where absent."""

    process_peak_rss_bytes: int | None = None
    """The worker process's peak resident set, Python and torch libraries included."""
    cuda_max_allocated_bytes: int | None = None
    """torch.cuda.max_memory_allocated over the run (CUDA only)."""
    cuda_max_reserved_bytes: int | None = None
    """torch.cuda.max_memory_reserved over the run (CUDA only)."""
    nvml_process_bytes: int | None = None
    """GPU memory NVML attributes to the worker at the end, CUDA context included (CUDA only)."""


BY_RANK = ("tracker_peak_bytes", "process_peak_rss_bytes", "cuda_max_allocated_bytes")
"""The figures a run on several ranks also records for every rank (Memory's *_by_rank)."""


@dataclass
class Memory(TrackerFigures, StateFigures, DeviceFigures):
    """Memory figures in bytes; None where the device or run has no such counter. A run on
    several ranks records each rank's peaks in the *_by_rank lists (rank 0 first) and, in every
    other field, the figures of the rank with the highest tracker peak: the maximum over ranks."""

    tracker_peak_bytes_by_rank: list[int | None] | None = None
    """tracker_peak_bytes of each rank, rank 0 first (None: one process)."""
    process_peak_rss_bytes_by_rank: list[int] | None = None
    """process_peak_rss_bytes of each rank, rank 0 first (None: one process)."""
    cuda_max_allocated_bytes_by_rank: list[int | None] | None = None
    """cuda_max_allocated_bytes of each rank, rank 0 first (None: one process)."""

    @classmethod
    def of(cls, tracker: TrackerFigures = TrackerFigures(), state: StateFigures = StateFigures(),
           device: DeviceFigures = DeviceFigures()) -> "Memory":
        """One process's figures from what its meters returned."""
        return _of(cls, tracker, state, device)

    @classmethod
    def across_ranks(cls, per_rank: list["Memory"]) -> "Memory":
        """The figures of a run on several ranks: those of the rank with the highest tracker peak
        (the figures of one rank belong together), plus each rank's BY_RANK figures."""
        highest = max(per_rank, key=lambda memory: memory.tracker_peak_bytes or 0)
        combined = cls(**asdict(highest))
        for name in BY_RANK:
            setattr(combined, f"{name}_by_rank", [getattr(memory, name) for memory in per_rank])
        return combined

    @property
    def weights_and_state_bytes(self) -> int | None:
        """Weights (trainable and frozen) plus optimizer state: the paper's memory estimate."""
        parts = (self.trainable_weight_bytes, self.frozen_weight_bytes, self.optimizer_state_bytes)
        return None if all(part is None for part in parts) else sum(part or 0 for part in parts)


@dataclass
class Setting:
    """What the spec's free option tables resolve to, typed, as the run used them: the fields
    reports key rows on (training/setting.py fills it where a record is made)."""

    task: str | None = None
    """The fine-tuning task (a GLUE task, or a synthetic one); None for pre-training."""
    corpus: str | None = None
    """The pre-training corpus ("markov", "c4", "local"); None for fine-tuning."""
    rank: int | None = None
    """A low-rank method's rank as it ran (a size's default rank resolved); None for full-rank
    methods, and in records before schema v3 where the spec left the rank to its default."""


@dataclass
class Environment:
    """Where a run happened: what its figures depend on besides the spec."""

    python: str | None = None
    """Python version."""
    packages: dict[str, str | None] = field(default_factory=dict)
    """Installed version of each package figures depend on (None: not installed)."""
    cuda: str | None = None
    """CUDA version torch was built with (None: a CPU build)."""
    driver: str | None = None
    """NVIDIA driver version, from NVML (None: no NVML)."""
    device_type: str | None = None
    """"cpu" or "cuda"."""
    device_name: str | None = None
    """The GPU's name, or the CPU's."""
    host: str | None = None
    """Host name."""
    cpu_count: int | None = None
    """The host's logical CPUs, os.cpu_count() (None: unknown, or an older record)."""
    load_average_1m: float | None = None
    """The host's 1-minute load average (os.getloadavg) as the run started (None: unavailable, or an older record)."""
    git_commit: str | None = None
    """The suite's git commit (None: not a git checkout)."""
    git_dirty: bool | None = None
    """Whether tracked files differed from that commit."""


@dataclass
class Record:
    """One run or one estimate: what was asked (spec), what happened (status) and what was
    measured or estimated."""

    run_id: str
    """The spec's hash (core/spec.py); resume skips ids already finished."""
    suite: str
    """The suite's name."""
    label: str
    """How reports name the method row: the method name unless the suite gives a label."""
    spec: RunSpec
    """Everything that decided what the run did."""
    status: Status
    """How it ended (core/statuses.py)."""
    error: str | None = None
    """For a run that did not finish ok: the exception's type and message."""
    traceback: str | None = None
    """For a run that raised: the last frames of its traceback."""
    started_at: str | None = None
    """When the worker started, ISO 8601 in UTC."""
    wall_s: float | None = None
    """Seconds from the worker's start to its end, process start and imports included."""
    metrics: Metrics = field(default_factory=Metrics)
    """Loss, throughput and evaluation figures."""
    memory: Memory = field(default_factory=Memory)
    """Memory figures."""
    environment: Environment = field(default_factory=Environment)
    """Versions, device and code state."""
    world_size: int = 1
    """Ranks the run trained on (spec nproc x nnodes); memory figures are per rank."""
    kind: RecordKind = RecordKind.RUN
    """What it holds: a run, trained and measured; or a traced estimate, the spec's first steps
    traced on fake tensors (estimates/traced.py), where only memory.tracker_* is filled, and the
    figures are estimates, never to be mixed with measured ones."""
    setting: Setting = field(default_factory=Setting)
    """The typed fields the spec's option tables resolved to: what report rows are keyed by."""
    notes: list[str] = field(default_factory=list)
    """For an estimate: the assumptions and substitutions it applied; for a run: what met it on the
    way (a checkpoint that could not be loaded, set aside)."""
    schema_version: int = SCHEMA_VERSION
    """The layout this record was written in (see SCHEMA_VERSION)."""

    def __post_init__(self):
        self.status = _member(Status, self.status, "status")
        self.kind = _member(RecordKind, self.kind, "kind")

    @property
    def workload_name(self) -> str:
        """Workload and size, plus the task where one workload runs several (GLUE): "llama-tiny"."""
        task = self.setting.task
        return f"{self.spec.workload}-{self.spec.size}" + (f" {task}" if task else "")

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, values: dict) -> "Record":
        """A record read back from JSON, of this or an older layout; RecordError names what
        does not fit."""
        values = upgrade(values)
        parts = {"spec": RunSpec, "metrics": Metrics, "memory": Memory, "environment": Environment,
                 "setting": Setting}
        typed = dict(values)
        for name, part in parts.items():
            if name in values:
                typed[name] = _build(part, values[name] or {}, name)
        return _build(cls, typed, "record")


def _build(dataclass_type, values: dict, where: str):
    if not isinstance(values, dict):
        raise RecordError(f"{where} is {type(values).__name__}, not an object")
    known = {f.name for f in fields(dataclass_type)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise RecordError(f"{where}.{unknown[0]} is not a field of the record schema v{SCHEMA_VERSION}")
    try:
        return dataclass_type(**values)
    except (TypeError, ValueError) as error:  # a RunSpec refuses what it cannot run
        raise RecordError(f"{where}: {error}") from None


def _member(enum, value, name: str):
    try:
        return enum(value)
    except ValueError:
        raise RecordError(f"{name} {value!r} is not known; accepted: {', '.join(enum)}") from None


GLUE_METRIC_NAMES_V1 = ("accuracy", "f1", "matthews_correlation", "pearson", "spearman")


def upgrade(values: dict) -> dict:
    """A record's JSON in this layout, from any earlier one."""
    version = values.get("schema_version", 1)
    if version > SCHEMA_VERSION:
        raise RecordError(f"schema_version {version} is newer than this code's {SCHEMA_VERSION}; update the code")
    if version == 1:
        values = _upgrade_from_1(values)
    if version <= 2:
        values = _upgrade_from_2(values)
    return values


def _upgrade_from_1(values: dict) -> dict:
    metrics = dict(values.get("metrics") or {})
    task_metrics = {name: metrics.pop(name) for name in GLUE_METRIC_NAMES_V1 if name in metrics}
    if "score" in metrics:
        metrics["task_score"] = metrics.pop("score")
    if task_metrics:
        metrics["task_metrics"] = task_metrics
    spec = dict(values.get("spec") or {})
    data = dict(spec.get("data") or {})
    if "model" in data:
        data["checkpoint"] = data.pop("model")
    spec["data"] = data
    return {**values, "metrics": metrics, "spec": spec, "schema_version": 2}


def _upgrade_from_2(values: dict) -> dict:
    # Records before v3 carry no typed setting: it is read off the spec's tables as written, the
    # one place that looks into them (a rank left to its size's default stays None).
    spec = values.get("spec") or {}
    data, options = spec.get("data") or {}, spec.get("method_options") or {}
    setting = {"task": data.get("task"), "corpus": data.get("corpus"), "rank": options.get("rank")}
    return {**values, "setting": setting, "schema_version": SCHEMA_VERSION}
