"""GaLore's successors at 7B (BF16, batch 1, seq 256), traced with their own packages beside
full AdamW and GaLore, and each paper's own claim (REFERENCE.md, "Successors") with the ratio
of ours to it, measured the way the claim is stated."""

from core.spec import RunSpec
from core.units import GB
from estimates.paper_numbers import SUCCESSOR_CLAIMS
from estimates.traced import traced_steps

REFERENCES = ("full", "galore")
"""Traced first: the claims are stated against AdamW or GaLore."""
SUCCESSORS = ("apollo", "apollo_mini", "apollo_layerwise", "adam_mini", "fira", "torchao_adamw8bit", "torchao_adamw4bit",
              "muon", "paged_adam8bit", "lomo", "adalomo", "badam", "lisa", "dora", "pissa", "qlora", "q_galore",
              "cpu_offload_adamw")
"""The methods after GaLore, in the order they are shown; those whose paper makes a 7B memory
claim have it in SUCCESSOR_CLAIMS."""


def _peak(method: str, seq_len: int):
    spec = RunSpec(workload="llama", size="7b", method=method, batch_size=1, seq_len=seq_len, dtype="bfloat16",
                   device="cpu", steps=2)
    steps, _ = traced_steps(spec)
    return max(steps, key=lambda s: s.peak_bytes)


def _ours(kind: str, peak, peaks) -> float:
    state = peak.at_peak_bytes["optimizer_state"]
    kept = sum(peak.at_peak_bytes[c] for c in ("trainable_weights", "frozen_weights", "gradients", "optimizer_state"))
    return {
        "peak_gb": peak.peak_bytes / GB,
        "peak_vs_adamw": peak.peak_bytes / peaks["full"].peak_bytes,
        "state_vs_adamw": state / peaks["full"].at_peak_bytes["optimizer_state"],
        "state_vs_galore": state / peaks["galore"].at_peak_bytes["optimizer_state"],
        "weights_grads_state_gb": kept / GB,
    }[kind]


def successors_7b_report(methods=SUCCESSORS, seq_len: int = 256) -> str:
    peaks = {method: _peak(method, seq_len) for method in REFERENCES + tuple(methods)}
    galore = peaks["galore"]
    lines = [
        f"7B, batch 1, seq {seq_len}, BF16; ours traced with each method's defaults (CUDA assumptions as in "
        "`estimate`), GB = 10^9 bytes; each claim is in its paper's own setting",
        "| method | peak GB | state GB | peak / GaLore's | state / GaLore's | paper's claim | measures | claim | ours | ours / claim |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for method, peak in peaks.items():
        state = peak.at_peak_bytes["optimizer_state"]
        row = (f"| {method} | {peak.peak_bytes / GB:.2f} | {state / GB:.2f} | {peak.peak_bytes / galore.peak_bytes:.2f} "
               f"| {state / galore.at_peak_bytes['optimizer_state']:.2f} |")
        if method not in SUCCESSOR_CLAIMS:
            lines.append(row + ("" if method in REFERENCES else " no 7B memory claim") + " | | | | |")
            continue
        claim, kind, figure = SUCCESSOR_CLAIMS[method]
        ours = _ours(kind, peak, peaks)
        if figure is None:
            lines.append(row + f" {claim} | {kind} | no figure | {ours:.3f} | - |")
        else:
            lines.append(row + f" {claim} | {kind} | {figure:.3f} | {ours:.3f} | {ours / figure:.2f} |")
    return "\n".join(lines)
