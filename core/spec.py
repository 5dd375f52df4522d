"""The run spec: plain data naming one training run, validating itself, and its id.

Whoever builds a spec -- a suite file, --set, `harness.py estimate`, a test -- gets the same
checks: every field's type and range, and the fields that must agree (the ranks and the batch),
each refused in one line naming the field and what it accepts. What needs the registries
(a method's or workload's name and options, a size) is checked a layer up, by
training/preflight.py.
"""

import hashlib
import json
import math
import re
import typing
from dataclasses import asdict, dataclass, field, fields

import torch

from core.options import OptionError, check_value
from core.precision import DTYPE_ALIASES, PRECISION_ALIASES, PRECISION_OF_DTYPE, PRECISIONS, Precision, precision_name

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
"""The parameter dtypes a run or estimate may name, and their torch dtypes (DTYPE_ALIASES: other
spellings, stored as these)."""
DEVICES = ("auto", "cpu", "cuda")
"""The device names a run may give; "cuda:N" picks one GPU."""
SHARDINGS = ("none", "fsdp2")
"""How a run on several processes holds its model: "none" (DistributedDataParallel: every rank
a whole copy) or "fsdp2" (torch.distributed.fsdp.fully_shard: each rank a shard)."""
CONVENTIONS = ("reference", "hf")
"""Whose training conventions a run follows where they differ (the README's table "Conventions:
ours and Hugging Face's"): "reference" (the GaLore reference's, the suite's default) or "hf"
(transformers' Trainer's: weight decay, GaLore's and APOLLO's optimizers, target modules)."""


class SpecError(OptionError):
    """A run spec that cannot run as written; the message names the field and what it accepts."""


def resolve_device(name: str) -> torch.device:
    """The torch device for a spec's device name ("auto": cuda when available)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@dataclass(frozen=True)
class RunSpec:
    """Everything that decides what one run does; its hash is the run's id."""

    workload: str
    """Registered workload name, e.g. "llama"."""
    size: str
    """Model config name within the workload (workloads/sizes.toml), e.g. "tiny", "60m"."""
    method: str
    """Registered method name, e.g. "full", "lora"."""
    method_options: dict = field(default_factory=dict)
    """Options of the method (its own dataclass validates them), e.g. {"rank": 8}."""
    data: dict = field(default_factory=dict)
    """Options of the workload's data, e.g. {"corpus": "markov"}."""
    seed: int = 0
    """Seeds model init, data order and dropout."""
    steps: int = 20
    """Optimizer steps."""
    batch_size: int = 8
    """Sequences per micro-batch, over all ranks."""
    grad_accum: int = 1
    """Micro-batches per optimizer step."""
    seq_len: int = 64
    """Tokens per sequence."""
    lr: float = 1e-3
    """Peak learning rate."""
    warmup_fraction: float = 0.1
    """Fraction of steps of linear lr warm-up before the cosine decay to 10% of peak."""
    weight_decay: float = 0.0
    """Decoupled weight decay."""
    grad_clip: float = 0.0
    """Max gradient norm; 0 means no clipping."""
    timing_warmup_steps: int = 3
    """Leading steps left out of step time and tokens/s (allocator and kernel warm-up)."""
    eval_batches: int = 4
    """Held-out batches evaluated after training; 0 skips evaluation."""
    dtype: str = "float32"
    """Parameter dtype: one of DTYPES or DTYPE_ALIASES; with no precision, the pure policy of that
    dtype (bfloat16: bf16-true, float32: 32-true)."""
    device: str = "auto"
    """One of DEVICES: "cpu", "cuda" (or "cuda:N"), or "auto" (cuda when available)."""
    activation_checkpointing: bool = False
    """Recompute each decoder layer's forward in the backward instead of keeping its
    activations (transformers' activation_checkpointing_enable)."""
    checkpoint_every: int = 0
    """Optimizer steps between checkpoints of the run (0: none); a killed run resumes from its
    last one (training/checkpoints.py)."""
    nproc: int = 1
    """Processes (ranks) per node; above 1 the run is launched with torchrun and trains data-
    parallel. batch_size stays the global micro-batch: each rank takes batch_size / world size
    of its sequences (training/parallel.py)."""
    nnodes: int = 1
    """Nodes the run spans (torchrun --nnodes); above 1 needs rdzv_endpoint."""
    rdzv_endpoint: str = ""
    """host:port of the rendezvous for a multi-node run (torchrun --rdzv-endpoint)."""
    sharding: str = "none"
    """One of SHARDINGS."""
    conventions: str = "reference"
    """One of CONVENTIONS: "hf" trains as transformers' Trainer would (no weight decay on norms
    and biases, GaLore and APOLLO built as its galore_adamw and apollo_adamw, target modules
    matched as its optim_target_modules); "reference" as the GaLore reference does."""

    precision: str = ""
    """One of core/precision.py's PRECISIONS ("bf16-true", "bf16-mixed", "32-true", "16-mixed"), or
    a dtype naming its pure policy; "" takes dtype's. A pure policy is stored as its dtype, so
    that a run has one id however it was named."""

    def __post_init__(self):
        for name in FIELD_TYPES:
            check_field(name, getattr(self, name))
        self._settle_precision()
        self._check_world()

    def _settle_precision(self):
        """dtype and precision in their one canonical form, or a SpecError where they disagree."""
        object.__setattr__(self, "dtype", DTYPE_ALIASES.get(self.dtype, self.dtype))
        precision = precision_name(self.precision)
        if not precision:
            return
        weights = next(name for name, dtype in DTYPES.items() if dtype == PRECISIONS[precision].weight_dtype)
        if self.dtype != weights and self.dtype != "float32":  # float32: dtype's default, left out
            raise SpecError(f"precision = {self.precision!r} keeps {weights} weights and dtype = {self.dtype!r} "
                            f"contradicts it; accepted: dtype {weights}, or dtype left out")
        if PRECISIONS[precision].grad_scaler and self.checkpoint_every:
            raise SpecError(f"precision = {self.precision!r} with checkpoint_every = {self.checkpoint_every}: "
                            "checkpoints do not hold the GradScaler's scale yet; accepted: checkpoint_every = 0")
        pure = PRECISION_OF_DTYPE.get(weights) == precision
        object.__setattr__(self, "dtype", weights)
        object.__setattr__(self, "precision", "" if pure else precision)

    @property
    def policy(self) -> Precision:
        """The precision policy the run trains under."""
        return PRECISIONS[self.precision or PRECISION_OF_DTYPE[self.dtype]]

    def _check_world(self):
        """The fields that must agree for the ranks to be set up as asked."""
        world = self.world_size
        if self.batch_size % world:
            raise SpecError(f"batch_size = {self.batch_size} must be a multiple of the world size nproc x nnodes = "
                            f"{world}: batch_size is the global micro-batch, split evenly over the ranks")
        if self.sharding == "fsdp2" and world == 1:
            raise SpecError('sharding = "fsdp2" needs more than one rank: set nproc (and nnodes) so that '
                            "nproc x nnodes > 1")
        if self.nnodes > 1 and not self.rdzv_endpoint:
            raise SpecError(f"nnodes = {self.nnodes} needs rdzv_endpoint (host:port of the rendezvous, as "
                            "torchrun's --rdzv-endpoint)")
        if world > 1 and self.checkpoint_every:
            raise SpecError(f"checkpoint_every = {self.checkpoint_every} with {world} ranks: checkpoints are written "
                            "by one process only so far; accepted: 0")

    def to_json(self) -> dict:
        """The spec as JSON, leaving out fields added after record schema v2 while they hold
        their default: the run id hashes this JSON, so specs that do not use a newer field keep
        the id (and the committed CI baselines) they had before it existed."""
        values = asdict(self)
        for name, default in FIELDS_ADDED_AFTER_V2.items():
            if values[name] == default:
                del values[name]
        return values

    @property
    def world_size(self) -> int:
        """Ranks the run trains on: nproc on each of nnodes nodes."""
        return self.nproc * self.nnodes

    @property
    def run_id(self) -> str:
        """The hash of the spec's JSON; a run on several ranks adds "-wN", its world size, so that
        the id says at a glance that its figures are per rank."""
        canonical = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        digest = hashlib.sha256(canonical.encode()).hexdigest()[:16]
        return digest if self.world_size == 1 else f"{digest}-w{self.world_size}"


FIELDS_ADDED_AFTER_V2 = {
    "activation_checkpointing": False,
    "checkpoint_every": 0,
    "nproc": 1,
    "nnodes": 1,
    "rdzv_endpoint": "",
    "sharding": "none",
    "conventions": "reference",
    "precision": "",
}
"""Fields added to RunSpec after record schema v2, with their defaults (see RunSpec.to_json)."""

FIELD_TYPES = {f.name: typing.get_type_hints(RunSpec)[f.name] for f in fields(RunSpec)}
"""Each field's annotation: what type check_field accepts."""
AT_LEAST = {"seed": 0, "steps": 1, "batch_size": 1, "grad_accum": 1, "seq_len": 1, "timing_warmup_steps": 0,
            "eval_batches": 0, "checkpoint_every": 0, "nproc": 1, "nnodes": 1, "weight_decay": 0, "grad_clip": 0}
"""The lowest value of each bounded numeric field."""
ABOVE_ZERO = ("lr",)
FRACTIONS = ("warmup_fraction",)
"""Fields that must lie in [0, 1]."""
CHOICES = {"dtype": (*DTYPES, *DTYPE_ALIASES), "sharding": SHARDINGS, "conventions": CONVENTIONS,
           "precision": (*PRECISIONS, *PRECISION_ALIASES)}
NAMES = ("workload", "size", "method")
DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")


def _number_kind(name: str) -> str:
    return "an integer" if FIELD_TYPES[name] is int else "a number"


def check_field(name: str, value):
    """A SpecError naming the field unless `value` is of its type and in its range."""
    if name not in FIELD_TYPES:
        raise SpecError(f"{name} is not a known key; accepted: {', '.join(FIELD_TYPES)}")
    try:
        check_value(FIELD_TYPES[name], name, value)
    except OptionError as error:
        raise SpecError(str(error)) from None
    if isinstance(value, float) and not math.isfinite(value):
        raise SpecError(f"{name} = {value!r} is not finite; accepted: {_number_kind(name)}")
    if name in AT_LEAST and value < AT_LEAST[name]:
        raise SpecError(f"{name} = {value!r} is out of range; accepted: {_number_kind(name)} >= {AT_LEAST[name]}")
    if name in ABOVE_ZERO and value <= 0:
        raise SpecError(f"{name} = {value!r} is out of range; accepted: {_number_kind(name)} > 0")
    if name in FRACTIONS and not 0 <= value <= 1:
        raise SpecError(f"{name} = {value!r} is out of range; accepted: a number from 0 to 1")
    if name in CHOICES and value not in CHOICES[name] and not (name == "precision" and value == ""):
        raise SpecError(f"{name} = {value!r} is not known; accepted: {', '.join(CHOICES[name])}")
    if name == "device" and not DEVICE_PATTERN.fullmatch(value):
        raise SpecError(f"device = {value!r} is not known; accepted: {', '.join(DEVICES)}, cuda:N")
    if name in NAMES and not value:
        raise SpecError(f"{name} is empty; it must name one")
