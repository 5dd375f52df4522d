"""Paged 8-bit AdamW: bitsandbytes' PagedAdamW8bit, the optimizer most fine-tuning recipes pick.

Its states are adam8bit's (blockwise 8-bit moments for tensors of at least 4096 elements, with a
float32 absmax per block and the shared quantization maps; float32 moments below). What paging
adds, on CUDA only: the states of tensors of at least 1e5 elements are allocated in CUDA unified
memory (cudaMallocManaged, bitsandbytes' get_paged) outside torch's caching allocator, and the
driver may move them to host memory when the GPU runs short, prefetching each before its update.

On CPU, bitsandbytes 0.50 pages nothing: Optimizer8bit.get_state_buffer allocates every state as
an ordinary tensor there (it warns "Paged optimizers are not supported on CPU"), so a CPU run is
an adam8bit run, and its record says so in `notes`.
"""

import warnings

import bitsandbytes

from methods.base import Method, NoOptions, Training, warmup_cosine_schedule, weight_decay_groups

NOTES = {
    "cpu": ("paged_adam8bit on CPU: bitsandbytes pages nothing on CPU (every state is an ordinary tensor), so this "
            "run is adam8bit's: the same 8-bit states, the same updates",),
    "cuda": ("paged_adam8bit: the states of tensors of at least 1e5 elements are in CUDA unified memory, outside "
             "torch's allocator: torch.cuda.max_memory_allocated leaves them out, the tracker counts them in full (as "
             "host-side tensors, which they are to torch); the driver may page them out under memory pressure",),
    "traced": ("paged_adam8bit: paged states counted as device bytes, resident on the GPU until the driver pages "
               "them out under memory pressure (the trace runs on CPU, where bitsandbytes pages nothing, and so "
               "allocates them as adam8bit does)",),
}
"""What each kind of record says about paging (Method.notes)."""

# bitsandbytes warns of it on every CPU run; the record's note says it once, where it is read.
warnings.filterwarnings("ignore", message="Paged optimizers are not supported on CPU")


def prepare(model, spec, options, workload) -> Training:
    groups = weight_decay_groups(model, list(model.parameters()), spec)
    optimizer = bitsandbytes.optim.PagedAdamW8bit(groups, lr=spec.lr, weight_decay=spec.weight_decay)
    return Training(model=model, optimizer=optimizer, scheduler=warmup_cosine_schedule(optimizer, spec))


METHOD = Method("paged_adam8bit", prepare, NoOptions,
                "bitsandbytes PagedAdamW8bit (8-bit moments in CUDA unified memory; on CPU it is adam8bit)", notes=lambda where: NOTES.get(where, ()), fsdp2=True)
