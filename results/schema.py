"""The run record: one JSON object per run, defined here once for every writer and reader.

Bytes are bytes, times are seconds, rates are per second; names carry the unit where it is
not obvious. `schema_version` says which layout a record was written in: records of older
layouts are brought up to this one when read (`upgrade`), so every reader sees one shape.
"""

from dataclasses import asdict, dataclass, field, fields

from suites.spec import RunSpec

SCHEMA_VERSION = 2
"""1: records before the schema was typed (no schema_version; GLUE metrics loose in metrics,
data.model for a checkpoint). 2: this layout."""
KINDS = ("run", "traced_estimate")
STATUSES = ("ok", "oom", "nan", "diverged", "timeout", "killed", "error")
"""ok; oom: out of memory (an OutOfMemoryError, or the kernel's OOM killer); nan: a non-finite
loss; diverged: the loss rose well above its start, or fell and came back to the uniform-
prediction level; timeout: ran past --run-timeout; killed: ended by a signal from outside;
error: anything else that raised."""
FINISHED = ("ok", "oom", "nan", "diverged", "timeout")
"""Outcomes that re-running the same spec would repeat, so resume skips them (timeouts are
retried with --retry-timeouts); `killed` and `error` runs are retried."""
MEMORY_CATEGORIES = ("trainable_weights", "frozen_weights", "gradients", "optimizer_state", "activations", "other")
"""The keys of a tracker breakdown (meters/tracker.py says what falls in each)."""


class RecordError(ValueError):
    """A record that does not fit the schema; the message names the field."""


@dataclass
class Metrics:
    """What a run reached and how fast; every figure None where the run or workload has none."""

    loss_curve: list[float] = field(default_factory=list)
    """Training loss of every optimizer step (mean over its micro-batches), in nats per token or
    the task's loss unit."""
    final_loss: float | None = None
    """The last step's training loss."""
    loss_floor: float | None = None
    """The lowest loss achievable on the data, where known (the generated corpus's entropy rate)."""
    final_loss_above_floor: float | None = None
    """final_loss minus loss_floor."""
    timed_steps: int | None = None
    """Steps timed: all but the timing warm-up steps."""
    tokens_per_s: float | None = None
    """Non-padding tokens per second over the timed steps."""
    step_time_mean_s: float | None = None
    """Mean seconds per optimizer step over the timed steps."""
    step_time_p50_s: float | None = None
    """Median seconds per optimizer step over the timed steps."""
    step_time_p90_s: float | None = None
    """90th percentile of seconds per optimizer step over the timed steps."""
    uniform_loss: float | None = None
    """The loss of predicting every token or class with equal probability (ln of the count):
    where a model that learnt nothing sits; None for regression."""
    eval_loss: float | None = None
    """Held-out loss after training (pre-training: token-weighted over eval_tokens)."""
    perplexity: float | None = None
    """exp(eval_loss), for language modelling."""
    eval_tokens: int | None = None
    """Predicted tokens the held-out loss averages over, for language modelling."""
    task_score: float | None = None
    """A fine-tuning task's score: its GLUE metric, or the mean of its two (MRPC, QQP, STS-B)."""
    task_metrics: dict[str, float] = field(default_factory=dict)
    """A fine-tuning task's metrics by name (accuracy, f1, matthews_correlation, pearson, spearman)."""


@dataclass
class Memory:
    """Memory figures in bytes; None where the device or run has no such counter. A run on
    several ranks records each rank's peaks in the *_by_rank lists (rank 0 first) and, in every
    other field, the figures of the rank with the highest tracker peak: the maximum over ranks."""

    tracker_peak_bytes: int | None = None
    """Peak of live tensor bytes over the tracked (timing warm-up) steps: exact on every device."""
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
    trainable_weight_bytes: int | None = None
    """Parameters with requires_grad, at the end of training."""
    frozen_weight_bytes: int | None = None
    """Parameters without requires_grad (LoRA's base weights), at the end of training."""
    optimizer_state_bytes: int | None = None
    """Everything reachable from optimizer.state (moments, projectors, 8-bit scales and maps),
    each storage once, at the end of training."""
    process_peak_rss_bytes: int | None = None
    """The worker process's peak resident set, Python and torch libraries included."""
    cuda_max_allocated_bytes: int | None = None
    """torch.cuda.max_memory_allocated over the run (CUDA only)."""
    cuda_max_reserved_bytes: int | None = None
    """torch.cuda.max_memory_reserved over the run (CUDA only)."""
    nvml_process_bytes: int | None = None
    """GPU memory NVML attributes to the worker at the end, CUDA context included (CUDA only)."""
    tracker_peak_bytes_by_rank: list[int | None] | None = None
    """tracker_peak_bytes of each rank, rank 0 first (None: one process)."""
    process_peak_rss_bytes_by_rank: list[int] | None = None
    """process_peak_rss_bytes of each rank, rank 0 first (None: one process)."""
    cuda_max_allocated_bytes_by_rank: list[int | None] | None = None
    """cuda_max_allocated_bytes of each rank, rank 0 first (None: one process)."""

    @property
    def weights_and_state_bytes(self) -> int | None:
        """Weights (trainable and frozen) plus optimizer state: the paper's memory estimate."""
        parts = (self.trainable_weight_bytes, self.frozen_weight_bytes, self.optimizer_state_bytes)
        return None if all(part is None for part in parts) else sum(part or 0 for part in parts)


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
    git_commit: str | None = None
    """The suite's git commit (None: not a git checkout)."""
    git_dirty: bool | None = None
    """Whether tracked files differed from that commit."""


@dataclass
class Record:
    """One run or one estimate: what was asked (spec), what happened (status) and what was
    measured or estimated."""

    run_id: str
    """The spec's hash (suites/spec.py); resume skips ids already finished."""
    suite: str
    """The suite's name."""
    label: str
    """How reports name the method row: the method name unless the suite gives a label."""
    spec: RunSpec
    """Everything that decided what the run did."""
    status: str
    """One of STATUSES."""
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
    kind: str = "run"
    """One of KINDS. "run": trained and measured. "traced_estimate": the spec's first steps
    traced on fake tensors (estimates/traced.py); only memory.tracker_* is filled, and the
    figures are estimates, never to be mixed with measured ones."""
    notes: list[str] = field(default_factory=list)
    """For an estimate: the assumptions and substitutions it applied."""
    schema_version: int = SCHEMA_VERSION
    """The layout this record was written in (see SCHEMA_VERSION)."""

    def __post_init__(self):
        if self.status not in STATUSES:
            raise RecordError(f"status {self.status!r} is not known; accepted: {', '.join(STATUSES)}")
        if self.kind not in KINDS:
            raise RecordError(f"kind {self.kind!r} is not known; accepted: {', '.join(KINDS)}")

    @property
    def workload_name(self) -> str:
        """Workload and size, plus the task where one workload runs several (GLUE): "llama-tiny"."""
        task = self.spec.data.get("task")
        return f"{self.spec.workload}-{self.spec.size}" + (f" {task}" if task else "")

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, values: dict) -> "Record":
        """A record read back from JSON, of this or an older layout; RecordError names what
        does not fit."""
        values = upgrade(values)
        parts = {"spec": RunSpec, "metrics": Metrics, "memory": Memory, "environment": Environment}
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
    except TypeError as error:
        raise RecordError(f"{where}: {error}") from None


GLUE_METRIC_NAMES_V1 = ("accuracy", "f1", "matthews_correlation", "pearson", "spearman")


def upgrade(values: dict) -> dict:
    """A record's JSON in this layout, from any earlier one."""
    version = values.get("schema_version", 1)
    if version > SCHEMA_VERSION:
        raise RecordError(f"schema_version {version} is newer than this code's {SCHEMA_VERSION}; update the code")
    if version == 1:
        values = _upgrade_from_1(values)
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
    return {**values, "metrics": metrics, "spec": spec, "schema_version": SCHEMA_VERSION}
