"""BAdam, block-coordinate Adam (Luo et al., 2024), with the badam package's BlockOptimizer.

The parameters are cut into blocks: each repeated layer is one, and the parameters outside the
layers are either two more blocks (those before the layers, the embeddings, and those after,
final norm and LM head or classifier: the package's include_embedding and include_lm_head) or
always trained (its active_modules). One block trains at a time, switched every switch_every
steps; the others are frozen (requires_grad False). AdamW steps a float32 copy of the active
block's weights that the package makes at each switch (param.clone().float(), a copy even of
float32 weights) and copies back into the model after each step; at a switch it drops the
AdamW state and those copies and makes the new block's.

What we wrap, minimally, and why:
- The package keeps the AdamW state on its base optimizer, not on the BlockOptimizer the loop
  holds, so `state` here reads through to it; it also lists each float32 copy, as
  "float32_weight", beside its AdamW state: the copy is held by the optimizer, as the
  paper's 2M + 16M/D counts it (copy, moments and the float32 gradient per active element),
  so the tracker counts it as optimizer state.
- Its AdamW groups are its own: the bias group's weight decay 0 is overwritten by the base
  optimizer's defaults, and its norm test compares parameters with module classes, so every
  tensor is decayed at the spec's weight decay, whatever `conventions` (left as the package has it).
- It prints the trainable prefixes at every switch (switch_trainable_params defaults its
  verbose to 1 whatever the optimizer's verbose) and warns that float32 weights cost memory
  (it expects bf16); both are silenced, the copy being counted and documented.
"""

import io
import warnings
from contextlib import redirect_stdout
from dataclasses import dataclass

from badam import BlockOptimizer

from methods.base import Method, Training, adamw, warmup_cosine_schedule, weight_decay_groups
from methods.blocks import outside_parameters, refuse_what_switching_breaks, repeated_layers

SWITCH_MODES = ("descending", "ascending", "random", "fixed")
OUTSIDE_LAYERS = ("blocks", "active")


@dataclass(frozen=True)
class BadamOptions:
    switch_every: int = 50
    """Optimizer steps between block switches (the paper's K); at least 1. The package's first
    block gets one step fewer (it switches after its step count + 1 is a multiple of K)."""
    switch_mode: str = "descending"
    """Block order: "descending" (last block first, the paper's), "ascending", "random" (a new
    random order of all blocks each round, from torch's seeded RNG) or "fixed" (the first block only)."""
    outside_layers: str = "blocks"
    """The parameters outside the repeated layers: "blocks" (those before the layers one more
    block, those after another, so one block's state at a time) or "active" (always trained,
    their state kept throughout)."""

    def __post_init__(self):
        if self.switch_every < 1:
            raise ValueError(f"options.switch_every must be >= 1, got {self.switch_every}")
        if self.switch_mode not in SWITCH_MODES:
            raise ValueError(f"options.switch_mode {self.switch_mode!r} is not known; accepted: "
                             f"{', '.join(SWITCH_MODES)}")
        if self.outside_layers not in OUTSIDE_LAYERS:
            raise ValueError(f"options.outside_layers {self.outside_layers!r} is not known; accepted: "
                             f"{', '.join(OUTSIDE_LAYERS)}")


class QuietBlockOptimizer(BlockOptimizer):
    """badam's BlockOptimizer, its prints and float32 warning silenced, its state readable:
    `state` maps each parameter of the active block to its float32 copy and the base AdamW's
    state of that copy (the same dict AdamW fills in place), rebuilt at each switch."""

    def __init__(self, *args, **kwargs):
        with redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="BAdam expect model to be loaded in fp16/bf16")
            super().__init__(*args, **kwargs)

    def switch_trainable_params(self, verbose=None):
        with redirect_stdout(io.StringIO()):
            super().switch_trainable_params(verbose=self.verbose if verbose is None else verbose)
        self.state = {
            self.param_idx2lp[index]: {"float32_weight": copy, "adamw": self.base_optimizer.state[copy]}
            for index, copy in self.param_idx2hp.items()
        }


def block_prefixes(model, outside_layers: str) -> tuple[list[list[str]], list[str]]:
    """(blocks, always active): the package's prefix lists, matched as substrings of parameter
    names. A layer's prefix ends in "." so that layer 1 does not match layer 10."""
    name, layers = repeated_layers(model)
    blocks = [[f"{name}.{index}."] for index in range(len(layers))]
    before, after = outside_parameters(model)
    if outside_layers == "active":
        return blocks, before + after
    return [block for block in (before, *blocks, after) if block], []


def prepare(model, spec, options: BadamOptions, workload) -> Training:
    refuse_what_switching_breaks(spec, "badam")
    blocks, always_active = block_prefixes(model, options.outside_layers)
    optimizer = QuietBlockOptimizer(
        base_optimizer=adamw(weight_decay_groups(model, list(model.parameters()), spec), spec),
        named_parameters_list=list(model.named_parameters()),
        block_prefix_list=blocks,
        switch_block_every=options.switch_every,
        switch_mode=options.switch_mode,
        active_modules=always_active,
        verbose=0,
    )
    return Training(model=model, optimizer=optimizer, scheduler=warmup_cosine_schedule(optimizer, spec))


METHOD = Method("badam", prepare, BadamOptions,
                "BAdam (badam): Adam on one block of layers at a time, switched every switch_every steps")
